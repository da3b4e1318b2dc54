"""Submission checks name the field and the value."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.jobs.schemas import JobCreate
from app.jobs.validation import validate_job


def job(**over: object) -> JobCreate:
    body: dict[str, object] = {
        "provider": "tencent",
        "region": "ap-guangzhou",
        "instance_ids": ["ins-r8hr2upy", "ins-3e56fg78"],
        "key_ids": ["skey-3glfot13"],
    }
    body.update(over)
    return JobCreate.model_validate(body)


def test_a_good_job_has_no_problems() -> None:
    assert validate_job(job(), max_instances=10) == []


def test_duplicate_ids_are_named_with_their_index() -> None:
    problems = validate_job(
        job(instance_ids=["ins-r8hr2upy", "ins-3e56fg78", "ins-r8hr2upy"]), max_instances=10
    )
    assert [(p.field, p.value, p.message) for p in problems] == [
        ("instance_ids[2]", "ins-r8hr2upy", "duplicate ID")
    ]


def test_malformed_ids_and_unknown_regions_fail_the_schema() -> None:
    with pytest.raises(ValidationError) as info:
        job(region="mars-1", instance_ids=["ins-r8hr2upy", "ins-1122"], key_ids=["skey-1122"])
    where = {(tuple(e["loc"]), e["input"]) for e in info.value.errors()}
    assert where == {
        (("region",), "mars-1"),
        (("instance_ids", 1), "ins-1122"),
        (("key_ids", 0), "skey-1122"),
    }


def test_instance_limit() -> None:
    ids = [f"ins-{i:08d}" for i in range(11)]
    problems = validate_job(job(instance_ids=ids), max_instances=10)
    assert problems[0].field == "instance_ids" and problems[0].value == 11
