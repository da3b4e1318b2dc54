"""JD Cloud jobs through the HTTP API: what is accepted, what is refused and how it is named."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.runtime import Runtime
from app.store.models import Job, Target
from tests.integration.test_api import count

BODY: dict[str, Any] = {
    "provider": "jdcloud",
    "region": "cn-north-1",
    "instance_ids": ["i-abcdefgh12", "i-zzzzzzzz99"],
    "key_name": "ops-2026",
    "password_auth": "no",
}


def test_a_jd_job_is_stored_and_read_back_like_a_tencent_one(
    client: TestClient, rt: Runtime
) -> None:
    r = client.post("/v1/jobs", json={**BODY, "replace": True})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    view = client.get(f"/v1/jobs/{job_id}").json()
    assert (view["provider"], view["region"], view["key_ids"]) == (
        "jdcloud",
        "cn-north-1",
        ["ops-2026"],
    )
    assert view["total"] == 2 and view["counts"]["pending"] == 2
    items = client.get(f"/v1/jobs/{job_id}/instances").json()["items"]
    assert [i["instance_id"] for i in items] == BODY["instance_ids"]
    with rt.sessions() as s:
        job = s.get(Job, job_id)
        assert job is not None
        assert job.options == {"password_auth": "no", "replace": True}
        assert job.batch_size > 1  # JD answers per instance, so one call carries a batch
        assert all(t.previous_key is None for t in s.scalars(select(Target)))


@pytest.mark.parametrize(
    ("change", "field", "value"),
    [
        ({"region": "cn-moon-1"}, "region", "cn-moon-1"),
        ({"region": "ap-guangzhou"}, "region", "ap-guangzhou"),
        ({"instance_ids": ["i-abcdefgh12", "i-short"]}, "instance_ids[1]", "i-short"),
        ({"instance_ids": ["i-abcdefgh12", "ins-r8hr2upy"]}, "instance_ids[1]", "ins-r8hr2upy"),
        ({"instance_ids": ["i-abcdefgh12", "i-abcdefgh12"]}, "instance_ids[1]", "i-abcdefgh12"),
        ({"instance_ids": []}, "instance_ids", []),
        ({"password_auth": "maybe"}, "password_auth", "maybe"),
        ({"password_auth": None}, "password_auth", None),
        ({"key_name": "no spaces please"}, "key_name", "no spaces please"),
        ({"key_ids": ["skey-3glfot13"]}, "key_ids", ["skey-3glfot13"]),
        ({"force_stop": True}, "force_stop", True),
        ({"replace": "sometimes"}, "replace", "sometimes"),
        ({"account": "nobody"}, "account", "nobody"),
    ],
)
def test_bad_jd_input_is_a_422_naming_field_and_value(
    client: TestClient, rt: Runtime, change: dict[str, Any], field: str, value: Any
) -> None:
    body = {k: v for k, v in {**BODY, **change}.items() if v is not None}
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_request"
    details = error["details"]
    assert any(d["field"] == field for d in details), details
    if value is not None:
        assert any(d["value"] == value for d in details if d["field"] == field), details
    assert error["message"].startswith(details[0]["field"])
    assert count(rt, Job) == 0 and count(rt, Target) == 0


def test_provider_missing_or_unknown_names_provider(client: TestClient) -> None:
    for body, value in (({**BODY, "provider": "aws"}, "aws"), ({**BODY, "provider": None}, None)):
        if value is None:
            body.pop("provider")
        r = client.post("/v1/jobs", json=body)
        assert r.status_code == 422
        (detail,) = r.json()["error"]["details"]
        assert detail["field"] == "provider" and detail["value"] == value
