"""The HTTP API against real PostgreSQL and Redis: auth, validation, submission, reads."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.auth.tokens import create_token, revoke_token
from app.jobs.schemas import JobCreate
from app.jobs.submit import fingerprint
from app.runtime import Runtime
from app.store import idempotency
from app.store.db import transaction, utcnow
from app.store.models import ApiToken, Job, Target

BODY = {
    "provider": "tencent",
    "region": "ap-guangzhou",
    "instance_ids": ["ins-r8hr2upy", "ins-3e56fg78", "ins-1e4r6y8i"],
    "key_ids": ["skey-3glfot13"],
}


def count(rt: Runtime, model: type) -> int:
    with rt.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_every_route_needs_a_token(client: TestClient) -> None:
    anon = TestClient(client.app)
    for method, path in [
        ("POST", "/v1/jobs"),
        ("GET", "/v1/jobs/x"),
        ("GET", "/v1/jobs/x/instances"),
    ]:
        r = anon.request(method, path, json=BODY)
        assert r.status_code == 401, (method, path)
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.json()["error"]["code"] == "unauthenticated"
    bad = anon.get("/v1/jobs/x", headers={"Authorization": "Bearer kb_nope"})
    assert bad.status_code == 401


def test_revoked_and_read_only_tokens(client: TestClient, rt: Runtime) -> None:
    reader = create_token(rt.sessions, name="reader", scopes=("jobs:read",))
    r = client.post("/v1/jobs", json=BODY, headers={"Authorization": f"Bearer {reader}"})
    assert r.status_code == 403 and "jobs:write" in r.json()["error"]["message"]
    assert revoke_token(rt.sessions, name="reader")
    r = client.get("/v1/jobs/x", headers={"Authorization": f"Bearer {reader}"})
    assert r.status_code == 401


def test_a_tenant_token_sees_only_its_tenant_s_jobs(client: TestClient, rt: Runtime) -> None:
    def as_(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    acme = create_token(rt.sessions, name="acme-ci", tenant="acme")
    umbrella = create_token(rt.sessions, name="umbrella-ci", tenant="umbrella")
    job = client.post("/v1/jobs", json=BODY, headers=as_(acme)).json()["id"]

    assert client.get(f"/v1/jobs/{job}", headers=as_(acme)).status_code == 200
    for path in (f"/v1/jobs/{job}", f"/v1/jobs/{job}/instances"):
        other = client.get(path, headers=as_(umbrella))
        # Exactly what a job that does not exist answers: nothing to learn by probing ids.
        assert other.status_code == 404, path
        assert other.json()["error"] == {
            "code": "not_found",
            "message": f"no job {job!r}",
            "details": [],
        }
    # A token without a tenant is an operator's: it sees every job.
    assert client.get(f"/v1/jobs/{job}").status_code == 200
    with rt.sessions() as s:
        row = s.get(Job, job)
        assert row is not None and (row.tenant, row.submitted_by, row.source) == (
            "acme",
            "acme-ci",
            "api",
        )


def test_tenant_names_are_checked(rt: Runtime) -> None:
    with pytest.raises(ValueError, match="tenant"):
        create_token(rt.sessions, name="x", tenant="a b")


def test_submit_writes_the_job_and_every_target(client: TestClient, rt: Runtime) -> None:
    r = client.post("/v1/jobs", json=BODY)
    assert r.status_code == 202, r.text
    created = r.json()
    assert created["state"] == "queued" and created["total"] == 3
    job = client.get(f"/v1/jobs/{created['id']}").json()
    assert job["counts"] == {
        "pending": 3,
        "running": 0,
        "retrying": 0,
        "succeeded": 0,
        "failed": 0,
        "cancelled": 0,
    }
    assert job["power_policy"] == "refuse" and job["finished_at"] is None
    assert job["submitted_by"].startswith("test-") and job["source"] == "api"
    page = client.get(f"/v1/jobs/{created['id']}/instances", params={"limit": 2}).json()
    assert [i["instance_id"] for i in page["items"]] == BODY["instance_ids"][:2]
    assert page["items"][0] == {
        "instance_id": "ins-r8hr2upy",
        "state": "pending",
        "attempts": 0,
        "error_code": None,
        "error_message": None,
        "request_id": None,
        "verify_request_id": None,
        "previous_key": None,
    }
    rest = client.get(
        f"/v1/jobs/{created['id']}/instances", params={"cursor": page["next_cursor"]}
    ).json()
    assert [i["instance_id"] for i in rest["items"]] == BODY["instance_ids"][2:]
    assert rest["next_cursor"] is None
    assert count(rt, Target) == 3


def test_status_carries_an_etag_and_answers_304(client: TestClient) -> None:
    job_id = client.post("/v1/jobs", json=BODY).json()["id"]
    first = client.get(f"/v1/jobs/{job_id}")
    etag = first.headers["etag"]
    again = client.get(f"/v1/jobs/{job_id}", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.headers["etag"] == etag and again.content == b""


def test_bad_input_is_a_422_naming_field_and_value_and_writes_nothing(
    client: TestClient, rt: Runtime
) -> None:
    cases = [
        ({**BODY, "instance_ids": ["ins-r8hr2upy", "ins-1122"]}, "instance_ids[1]", "ins-1122"),
        (
            {**BODY, "instance_ids": ["ins-r8hr2upy", "ins-r8hr2upy"]},
            "instance_ids[1]",
            "ins-r8hr2upy",
        ),
        ({**BODY, "region": "mars-north-1"}, "region", "mars-north-1"),
        ({**BODY, "key_ids": ["skey-1"]}, "key_ids[0]", "skey-1"),
        ({**BODY, "key_ids": []}, "key_ids", []),
        ({**BODY, "instance_ids": []}, "instance_ids", []),
        ({**BODY, "provider": "aws"}, "provider", "aws"),
        ({**BODY, "force_stop": "maybe"}, "force_stop", "maybe"),
        ({**BODY, "colour": "blue"}, "colour", "blue"),
        ({**BODY, "key_ids": [f"skey-{i:08d}" for i in range(101)]}, "key_ids", None),
    ]
    for body, field, value in cases:
        r = client.post("/v1/jobs", json=body)
        assert r.status_code == 422, (field, r.text)
        details = r.json()["error"]["details"]
        assert any(d["field"] == field for d in details), (field, details)
        if value is not None:
            assert any(d["value"] == value for d in details if d["field"] == field), details
    r = client.post("/v1/jobs", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    assert count(rt, Job) == 0 and count(rt, Target) == 0


def test_unknown_job_and_bad_cursor(client: TestClient) -> None:
    assert client.get("/v1/jobs/nope").status_code == 404
    job_id = client.post("/v1/jobs", json=BODY).json()["id"]
    r = client.get(f"/v1/jobs/{job_id}/instances", params={"cursor": "abc"})
    assert r.status_code == 422 and "cursor" in r.json()["error"]["message"]
    r = client.get(f"/v1/jobs/{job_id}/instances", params={"state": "bogus"})
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "state"


def test_a_large_job_is_accepted_in_one_piece(client: TestClient, rt: Runtime) -> None:
    ids = [f"ins-{i:08x}" for i in range(20_000)]
    r = client.post("/v1/jobs", json={**BODY, "instance_ids": ids})
    assert r.status_code == 202 and r.json()["total"] == 20_000
    assert count(rt, Target) == 20_000


def test_idempotency_key_returns_the_same_job_and_refuses_another_body(
    client: TestClient, rt: Runtime
) -> None:
    headers = {"Idempotency-Key": "rotation-2026-11-23"}
    first = client.post("/v1/jobs", json=BODY, headers=headers)
    again = client.post("/v1/jobs", json=BODY, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    other = client.post("/v1/jobs", json={**BODY, "force_stop": True}, headers=headers)
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert count(rt, Job) == 1
    # Another key, or no key, is another job.
    assert (
        client.post("/v1/jobs", json=BODY, headers={"Idempotency-Key": "k2"}).json()["id"]
        != (first.json()["id"])
    )
    assert count(rt, Job) == 2


def test_idempotency_key_in_flight_is_a_409(client: TestClient, rt: Runtime, token: str) -> None:
    # What a first request looks like between reserving its key and committing its job.
    with rt.sessions() as s:
        name = s.scalars(select(ApiToken.name)).one()  # the fixture's token is the only one
    with transaction(rt.sessions) as s:
        idempotency.claim_key(
            s,
            owner=name,
            key="busy",
            fingerprint=fingerprint(JobCreate.model_validate(BODY)),
            now=utcnow(),
        )
    r = client.post("/v1/jobs", json=BODY, headers={"Idempotency-Key": "busy"})
    assert r.status_code == 409 and r.headers["retry-after"] == "1"
    assert count(rt, Job) == 0


def test_invalid_body_does_not_burn_the_key(client: TestClient) -> None:
    headers = {"Idempotency-Key": "k-invalid"}
    assert client.post("/v1/jobs", json={**BODY, "region": "x"}, headers=headers).status_code == 422
    assert client.post("/v1/jobs", json=BODY, headers=headers).status_code == 202


def test_an_oversized_body_is_a_413_and_writes_nothing(rt: Runtime, token: str) -> None:
    from app.api.main import create_app

    small = rt.settings.model_copy(update={"max_body_bytes": 4096})
    with TestClient(create_app(small), headers={"Authorization": f"Bearer {token}"}) as c:
        ids = [f"ins-{i:08d}" for i in range(1000)]
        r = c.post("/v1/jobs", json={**BODY, "instance_ids": ids})
        assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
        assert "4096" in r.json()["error"]["message"]
    assert count(rt, Job) == 0


def test_more_instances_than_the_limit_is_a_422(rt: Runtime, token: str) -> None:
    from app.api.main import create_app

    few = rt.settings.model_copy(update={"max_instances": 2})
    with TestClient(create_app(few), headers={"Authorization": f"Bearer {token}"}) as c:
        r = c.post("/v1/jobs", json=BODY)
        assert r.status_code == 422
        assert r.json()["error"]["details"][0] == {
            "field": "instance_ids",
            "value": 3,
            "message": "at most 2 instances per job",
        }
    assert count(rt, Job) == 0


def test_control_bytes_in_a_query_or_path_are_a_422_never_a_500(client: TestClient) -> None:
    # Found by schemathesis: PostgreSQL text cannot hold NUL, and the driver says so with a
    # ValueError. Such values must be refused where they enter, naming the field.
    r = client.get("/v1/jobs", params={"provider": "é\x00"})
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "provider"
    for path in ("/v1/jobs/a%00b", "/v1/jobs/a%00b/instances", "/v1/jobs/a%00b/events"):
        r = client.get(path)
        assert r.status_code == 422, path
        assert r.json()["error"]["details"][0]["field"] == "job_id"
    assert client.post("/v1/jobs/a%00b/cancel").status_code == 422
    assert client.get("/v1/jobs/nope").status_code == 404  # a plain unknown id stays a 404
