"""The whole pipeline: API -> PostgreSQL -> dispatcher -> real Celery workers -> simulator."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.config import Settings
from app.runtime import Runtime
from app.store.models import Attempt, Target
from tests.support.processes import Processes, settings_env, wait_for
from tests.support.simulator import Simulator

REGION = "ap-guangzhou"
KEY = "skey-3glfot13"


def ids(n: int, prefix: str = "a") -> list[str]:
    return [f"ins-{prefix}{i:07d}" for i in range(n)]


def submit(client: TestClient, instance_ids: list[str], **extra: Any) -> str:
    r = client.post(
        "/v1/jobs",
        json={
            "provider": "tencent",
            "region": REGION,
            "instance_ids": instance_ids,
            "key_ids": [KEY],
            **extra,
        },
    )
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def wait_final(client: TestClient, job_id: str, timeout: float) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def final() -> bool:
        seen.update(client.get(f"/v1/jobs/{job_id}").json())
        return seen["finished_at"] is not None

    wait_for(final, timeout=timeout, interval=0.5, what=f"job {job_id} to finish")
    return seen


def all_items(client: TestClient, job_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 1000}
        if cursor:
            params["cursor"] = cursor
        page = client.get(f"/v1/jobs/{job_id}/instances", params=params).json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def test_a_thousand_instances_bind_through_real_workers(
    client: TestClient, rt: Runtime, e2e_settings: Settings, simulator: Simulator, procs: Processes
) -> None:
    procs.worker(settings_env(e2e_settings), concurrency=4, beat=True)
    instance_ids = ids(1000)
    job_id = submit(client, instance_ids)

    # A ceiling, not a figure: on a shared 2-core machine 1000 binds + looks can take minutes.
    job = wait_final(client, job_id, timeout=240)

    assert job["state"] == "succeeded", job
    assert job["counts"]["succeeded"] == 1000 and sum(job["counts"].values()) == 1000
    items = all_items(client, job_id)
    assert sorted(i["instance_id"] for i in items) == sorted(instance_ids)
    assert all(i["state"] == "succeeded" and i["request_id"] for i in items)
    stats = simulator.stats("AssociateInstancesKeyPairs")
    assert stats["throttled"] == 0
    assert stats["max_in_any_second"] <= 100
    # Every instance reached the cloud; at-least-once may repeat a few, never lose one.
    assert set(stats["per_instance"]) == set(instance_ids)
    with rt.sessions() as s:
        rows = s.scalar(select(func.count()).select_from(Target).where(Target.job_id == job_id))
        calls = s.scalar(
            select(func.count())
            .select_from(Attempt)
            .where(Attempt.action == "AssociateInstancesKeyPairs")
        )
        looks = s.scalar(
            select(func.count()).select_from(Attempt).where(Attempt.action == "DescribeInstances")
        )
    assert rows == 1000 and calls == stats["accepted"]
    # Every success was confirmed by a DescribeInstances call, up to 100 instances per call.
    verify = simulator.stats("DescribeInstances")
    assert looks is not None and looks >= 1000
    assert verify["throttled"] == 0 and 10 <= verify["accepted"] < 1000


def test_busy_instances_retry_to_success_and_missing_ones_fail_after_one_call(
    client: TestClient, e2e_settings: Settings, simulator: Simulator, procs: Processes
) -> None:
    busy = ids(3, "m")
    in_progress = ids(3, "p")
    missing = ids(2, "x")
    fine = ids(5, "f")
    simulator.put_instances(
        [{"id": i, "faults": [{"code": "MutexOperation.TaskRunning", "times": 2}]} for i in busy]
        + [
            {
                "id": i,
                "faults": [{"code": "OperationDenied.InstanceOperationInProgress", "times": 1}],
            }
            for i in in_progress
        ]
    )
    simulator.set_missing(missing)
    procs.worker(settings_env(e2e_settings), concurrency=2, beat=True)

    job_id = submit(client, busy + in_progress + missing + fine)
    job = wait_final(client, job_id, timeout=90)

    assert job["state"] == "partial"
    assert job["counts"]["succeeded"] == 11 and job["counts"]["failed"] == 2
    by_id = {i["instance_id"]: i for i in all_items(client, job_id)}
    for i in busy:
        assert (by_id[i]["state"], by_id[i]["attempts"]) == ("succeeded", 3), by_id[i]
    for i in in_progress:
        assert (by_id[i]["state"], by_id[i]["attempts"]) == ("succeeded", 2), by_id[i]
    for i in missing:
        assert by_id[i]["state"] == "failed" and by_id[i]["attempts"] == 1
        assert by_id[i]["error_code"] == "InvalidInstanceId.NotFound"
        assert by_id[i]["error_message"] and by_id[i]["request_id"]
    per_instance = simulator.stats("AssociateInstancesKeyPairs")["per_instance"]
    assert all(per_instance[i] == 1 for i in missing)
    assert all(by_id[i]["attempts"] == 1 and by_id[i]["error_code"] is None for i in fine)
