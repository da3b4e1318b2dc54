"""A JD Cloud job through the whole pipeline: API -> PostgreSQL -> dispatcher -> real Celery
workers -> the simulator's JD side, with and without `replace`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from app.config import Settings
from app.runtime import Runtime
from app.store.models import Attempt, Target
from tests.e2e.test_pipeline import all_items, wait_final
from tests.support.processes import Processes, settings_env
from tests.support.simulator import JD_ACCESS_KEY, JD_SECRET_KEY, Simulator

REGION = "cn-north-1"
KEY = "ops-2026"


@pytest.fixture
def jd_settings(e2e_settings: Settings, simulator: Simulator) -> Settings:
    return e2e_settings.model_copy(
        update={
            "jdcloud_endpoint": simulator.url,
            "jdcloud_access_key": SecretStr(JD_ACCESS_KEY),
            "jdcloud_secret_key": SecretStr(JD_SECRET_KEY),
            "jdcloud_rate_limit": 50.0,
            "verify_delay_s": 0.2,
        }
    )


def mixed_fleet(simulator: Simulator, prefix: str) -> dict[str, list[str]]:
    """Three holding another key, one Windows, one missing, five fine (fresh, keyless)."""
    groups = {
        "holding": [f"i-{prefix}hold{n:05d}" for n in range(3)],
        "windows": [f"i-{prefix}wind00000"],
        "missing": [f"i-{prefix}miss00000"],
        "fine": [f"i-{prefix}fine{n:05d}" for n in range(5)],
    }
    simulator.put_jd(
        {
            "instances": [{"id": i, "key_names": ["old-key"]} for i in groups["holding"]]
            + [{"id": groups["windows"][0], "os": "windows", "status": "running"}]
            + [{"id": groups["missing"][0], "missing": True}]
            + [{"id": i, "status": "running"} for i in groups["fine"][:2]]
        }
    )
    return groups


def submit_jd(client: TestClient, instance_ids: list[str], **extra: Any) -> str:
    body = {
        "provider": "jdcloud",
        "region": REGION,
        "instance_ids": instance_ids,
        "key_name": KEY,
        "password_auth": "no",
        **extra,
    }
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def run_job(
    client: TestClient, jd_settings: Settings, procs: Processes, ids: list[str], **extra: Any
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    procs.worker(settings_env(jd_settings), concurrency=2, beat=True)
    job_id = submit_jd(client, ids, **extra)
    job = wait_final(client, job_id, timeout=90)
    return job, {i["instance_id"]: i for i in all_items(client, job_id)}


def assert_refusals(by_id: dict[str, dict[str, Any]], groups: dict[str, list[str]]) -> None:
    windows = by_id[groups["windows"][0]]
    assert (windows["state"], windows["error_code"]) == ("failed", "FAILED_PRECONDITION")
    assert windows["error_message"] == "Windows OS doesn't support attach keypair."
    missing = by_id[groups["missing"][0]]
    assert (missing["state"], missing["error_code"]) == ("failed", "NOT_FOUND")
    assert missing["error_message"] == f"Instance '{groups['missing'][0]}' not found."
    for i in groups["windows"] + groups["missing"]:
        assert by_id[i]["attempts"] == 1 and by_id[i]["request_id"], by_id[i]
    for i in groups["fine"]:
        assert (by_id[i]["state"], by_id[i]["error_code"]) == ("succeeded", None), by_id[i]
        assert by_id[i]["request_id"]


def test_mixed_job_without_replace(
    client: TestClient,
    rt: Runtime,
    jd_settings: Settings,
    simulator: Simulator,
    procs: Processes,
) -> None:
    groups = mixed_fleet(simulator, "a")
    ids = [i for g in groups.values() for i in g]
    job, by_id = run_job(client, jd_settings, procs, ids)

    assert (job["state"], job["provider"], job["key_ids"]) == ("partial", "jdcloud", [KEY])
    assert job["counts"]["succeeded"] == 5 and job["counts"]["failed"] == 5
    assert_refusals(by_id, groups)
    for i in groups["holding"]:
        item = by_id[i]
        assert (item["state"], item["error_code"]) == ("failed", "FAILED_PRECONDITION"), item
        assert item["error_message"].startswith(f"Already attached key pair. instance id {i}")
        assert "replace=true" in item["error_message"] and item["attempts"] == 1
        assert simulator.jd_instance(i)["keyNames"] == ["old-key"]
    for i in groups["fine"]:
        assert simulator.jd_instance(i)["keyNames"] == [KEY]
    with rt.sessions() as s:
        rows = {t.instance_id: t for t in s.scalars(select(Target))}
        actions = {a.action for a in s.scalars(select(Attempt))}
    assert all(rows[i].previous_key is None for i in ids)
    assert "detachKeypair" not in actions and "attachKeypair" in actions
    assert simulator.stats("detachKeypair")["total"] == 0


def test_mixed_job_with_replace_rotates_held_keys(
    client: TestClient,
    rt: Runtime,
    jd_settings: Settings,
    simulator: Simulator,
    procs: Processes,
) -> None:
    groups = mixed_fleet(simulator, "b")
    ids = [i for g in groups.values() for i in g]
    job, by_id = run_job(client, jd_settings, procs, ids, replace=True)

    assert job["state"] == "partial", job
    assert job["counts"]["succeeded"] == 8 and job["counts"]["failed"] == 2
    assert_refusals(by_id, groups)
    for i in groups["holding"]:
        assert (by_id[i]["state"], by_id[i]["error_code"]) == ("succeeded", None), by_id[i]
        assert simulator.jd_instance(i)["keyNames"] == [KEY]
    with rt.sessions() as s:
        rows = {t.instance_id: t for t in s.scalars(select(Target))}
        detaches = s.scalars(select(Attempt).where(Attempt.action == "detachKeypair")).all()
    assert {i: rows[i].previous_key for i in groups["holding"]} == dict.fromkeys(
        groups["holding"], "old-key"
    )
    assert all(rows[i].previous_key is None for i in groups["fine"])
    # And the instances API says what each instance held before.
    assert {i: by_id[i]["previous_key"] for i in groups["holding"] + groups["fine"]} == {
        **dict.fromkeys(groups["holding"], "old-key"),
        **dict.fromkeys(groups["fine"]),
    }
    assert len(detaches) == 3 and all(a.request_id and a.error_code is None for a in detaches)
    assert simulator.stats("detachKeypair")["succeeded"] >= 1
    assert simulator.stats()["jd_instances_attached_more_than_once"] == 0


def test_a_thousand_jd_instances_at_the_default_rate(
    client: TestClient,
    rt: Runtime,
    jd_settings: Settings,
    simulator: Simulator,
    procs: Processes,
) -> None:
    """KEYBIND_JDCLOUD_RATE_LIMIT's default (5/s per action) against a cloud that throttles
    at exactly 5/s: every instance succeeds and no call is throttled."""
    settings = jd_settings.model_copy(update={"jdcloud_rate_limit": 5.0})
    simulator.configure(rate_limits={"attachKeypair": 5, "describeInstances": 5})
    ids = [f"i-k{n:09d}" for n in range(1000)]
    job, by_id = run_job(client, settings, procs, ids)

    assert job["state"] == "succeeded", job
    assert len(by_id) == 1000 and all(i["state"] == "succeeded" for i in by_id.values())
    attach = simulator.stats("attachKeypair")
    describe = simulator.stats("describeInstances")
    assert attach["throttled"] == 0 and describe["throttled"] == 0
    assert attach["max_in_any_second"] <= 5 and describe["max_in_any_second"] <= 5
    assert set(attach["per_instance"]) == set(ids)
    wall = datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["started_at"])
    # A figure, not an assertion: timing belongs in benchmarks.
    print(
        f"\nJD 1000 instances: {attach['accepted']} attach calls (max {attach['max_in_any_second']}"
        f"/s), {describe['accepted']} describe calls (max {describe['max_in_any_second']}/s),"
        f" {wall.total_seconds():.1f} s from first claim to last result"
    )
