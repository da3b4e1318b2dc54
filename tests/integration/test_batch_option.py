"""The `batch_size` job option over the API: 1..100, default (absent or null) the provider's
(Tencent 1), refused with a 422 otherwise."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.runtime import Runtime
from app.store.models import Job

BODY = {
    "provider": "tencent",
    "region": "ap-guangzhou",
    "instance_ids": ["ins-r8hr2upy", "ins-3e56fg78"],
    "key_ids": ["skey-3glfot13"],
}


def test_batch_size_defaults_to_one_call_per_instance(client: TestClient) -> None:
    absent = client.post("/v1/jobs", json=BODY).json()["id"]
    null = client.post("/v1/jobs", json={**BODY, "batch_size": None}).json()["id"]
    assert client.get(f"/v1/jobs/{absent}").json()["batch_size"] == 1
    assert client.get(f"/v1/jobs/{null}").json()["batch_size"] == 1


def test_batch_size_up_to_100_is_kept(client: TestClient, rt: Runtime) -> None:
    job_id = client.post("/v1/jobs", json={**BODY, "batch_size": 100}).json()["id"]
    assert client.get(f"/v1/jobs/{job_id}").json()["batch_size"] == 100
    with rt.sessions() as s:
        assert s.get(Job, job_id).batch_size == 100  # type: ignore[union-attr]


def test_a_bad_batch_size_is_a_422_naming_it_and_writes_nothing(
    client: TestClient, rt: Runtime
) -> None:
    for value in (0, 101, -5, "many", 2.5, True):
        r = client.post("/v1/jobs", json={**BODY, "batch_size": value})
        assert r.status_code == 422, (value, r.text)
        details = r.json()["error"]["details"]
        assert any(d["field"] == "batch_size" and d["value"] == value for d in details), details
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 0
