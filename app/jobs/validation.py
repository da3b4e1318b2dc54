"""Checks on a submitted job that go beyond its shape: ID formats, regions, duplicates."""

from __future__ import annotations

import re
from collections.abc import Iterable

from app.jobs.schemas import FieldProblem, JobCreate
from app.providers.tencent.regions import REGIONS as TENCENT_REGIONS

TENCENT_INSTANCE_ID = re.compile(r"ins-[0-9a-z]{8}")
TENCENT_KEY_ID = re.compile(r"skey-[0-9a-z]{8}")
# Enough to show the pattern of a mistake without echoing a 100k-line payload back.
MAX_PROBLEMS = 20


def _check_ids(
    field: str, values: Iterable[str], pattern: re.Pattern[str], example: str
) -> list[FieldProblem]:
    problems: list[FieldProblem] = []
    seen: set[str] = set()
    for i, value in enumerate(values):
        if not pattern.fullmatch(value):
            problems.append(
                FieldProblem(
                    field=f"{field}[{i}]", value=value, message=f"not an ID like {example}"
                )
            )
        elif value in seen:
            problems.append(
                FieldProblem(field=f"{field}[{i}]", value=value, message="duplicate ID")
            )
        seen.add(value)
        if len(problems) >= MAX_PROBLEMS:
            break
    return problems


def validate_job(request: JobCreate, *, max_instances: int) -> list[FieldProblem]:
    """Every problem with the request, field by field; empty when it may be accepted."""
    problems: list[FieldProblem] = []
    if len(request.instance_ids) > max_instances:
        problems.append(
            FieldProblem(
                field="instance_ids",
                value=len(request.instance_ids),
                message=f"at most {max_instances} instances per job",
            )
        )
    if request.region not in TENCENT_REGIONS:
        problems.append(
            FieldProblem(
                field="region",
                value=request.region,
                message="not a region where AssociateInstancesKeyPairs is offered",
            )
        )
    problems += _check_ids(
        "instance_ids", request.instance_ids, TENCENT_INSTANCE_ID, "ins-r8hr2upy"
    )
    problems += _check_ids("key_ids", request.key_ids, TENCENT_KEY_ID, "skey-3glfot13")
    return problems
