"""Checks on a submitted job that its schema cannot express: duplicates and the size limit."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from app.jobs.schemas import FieldProblem, JDCloudJobCreate, JobCreate
from app.providers.registry import spec

# Enough to show the pattern of a mistake without echoing a 100k-line payload back.
MAX_PROBLEMS = 20


def _duplicates(field: str, values: Sequence[str]) -> list[FieldProblem]:
    if len(set(values)) == len(values):  # the common case, ten times faster than the walk
        return []
    problems: list[FieldProblem] = []
    seen: set[str] = set()
    for i, value in enumerate(values):
        if value in seen:
            problems.append(
                FieldProblem(field=f"{field}[{i}]", value=value, message="duplicate ID")
            )
            if len(problems) >= MAX_PROBLEMS:
                break
        seen.add(value)
    return problems


def validate_job(
    request: JobCreate | JDCloudJobCreate,
    *,
    max_instances: int,
    accounts: Collection[str] | None = None,
) -> list[FieldProblem]:
    """Every problem with the request, field by field; empty when it may be accepted.
    `accounts`: the provider's account names (None: not checked)."""
    problems: list[FieldProblem] = []
    if accounts is not None and request.account not in accounts:
        problems.append(
            FieldProblem(
                field="account",
                value=request.account,
                message=f"no {request.provider} account of that name; known: {sorted(accounts)}",
            )
        )
    if len(request.instance_ids) > max_instances:
        problems.append(
            FieldProblem(
                field="instance_ids",
                value=len(request.instance_ids),
                message=f"at most {max_instances} instances per job",
            )
        )
    provider = spec(request.provider)
    if request.region not in provider.regions:
        problems.append(
            FieldProblem(
                field="region",
                value=request.region,
                message=f"not a region where {provider.name} offers {provider.bind_action}",
            )
        )
    for p in provider.validate_targets(request.instance_ids)[:MAX_PROBLEMS]:
        problems.append(
            FieldProblem(field=f"instance_ids[{p.index}]", value=p.value, message=p.message)
        )
    problems += _duplicates("instance_ids", request.instance_ids)
    problems += _duplicates("key_ids", request.key_ids)
    return problems
