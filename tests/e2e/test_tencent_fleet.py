"""The done-when test of issue 3: a mixed fleet through real workers under both power-state
policies; `succeeded` only where the simulator's LoginSettings.KeyIds holds the key."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.config import Settings
from app.runtime import Runtime
from app.store.models import Attempt, Target
from tests.e2e.test_pipeline import all_items, submit, wait_final
from tests.support.processes import Processes, settings_env
from tests.support.simulator import Simulator

KEY = "skey-3glfot13"
OLD_KEY = "skey-oldkey01"
OK = ("succeeded", None)

# id -> (simulator spec, (state, code) with refuse, (state, code) with force_stop)
FLEET: dict[str, tuple[dict[str, Any], tuple[str, str | None], tuple[str, str | None]]] = {
    "ins-stopped1": ({"state": "STOPPED"}, OK, OK),
    "ins-stopped2": ({"state": "STOPPED"}, OK, OK),
    "ins-running1": (
        {"state": "RUNNING"},
        ("failed", "UnsupportedOperation.InstanceStateRunning"),
        OK,
    ),
    "ins-running2": (
        {"state": "RUNNING"},
        ("failed", "UnsupportedOperation.InstanceStateRunning"),
        OK,
    ),
    # Starting settles to RUNNING: waited for, then refused or force-stopped.
    "ins-starting": (
        {"state": "STARTING", "settles_after_s": 1.5},
        ("failed", "UnsupportedOperation.InstanceStateRunning"),
        OK,
    ),
    # Stopping settles to STOPPED: waited for, then bound under either policy.
    "ins-stopping": ({"state": "STOPPING", "settles_after_s": 1.5}, OK, OK),
    "ins-windows1": (
        {"state": "STOPPED", "os": "windows"},
        ("failed", "UnsupportedOperation.InstanceOsWindows"),
        ("failed", "UnsupportedOperation.InstanceOsWindows"),
    ),
    "ins-missing1": (
        {"missing": True},
        ("failed", "InvalidInstanceId.NotFound"),
        ("failed", "InvalidInstanceId.NotFound"),
    ),
    "ins-shutdown": (
        {"state": "SHUTDOWN"},
        ("failed", "UnsupportedOperation.InstanceStateShutdown"),
        ("failed", "UnsupportedOperation.InstanceStateShutdown"),
    ),
    "ins-busy0001": ({"faults": [{"code": "MutexOperation.TaskRunning", "times": 2}]}, OK, OK),
    "ins-busy0002": (
        {"faults": [{"code": "OperationDenied.InstanceOperationInProgress", "times": 1}]},
        OK,
        OK,
    ),
    # Throttled and internal errors are retried; an unknown code is terminal, shown as it came.
    "ins-throttl1": (
        {"faults": [{"code": "RequestLimitExceeded.UinLimitExceeded", "times": 1}]},
        OK,
        OK,
    ),
    "ins-internal": ({"faults": [{"code": "InternalError", "times": 1}]}, OK, OK),
    "ins-unknown1": (
        {"faults": [{"code": "FailedOperation.SomethingNew", "times": 1}]},
        ("failed", "FailedOperation.SomethingNew"),
        ("failed", "FailedOperation.SomethingNew"),
    ),
    # Accepted, but the operation ends FAILED: keybind must not call that a success.
    "ins-opfailed": (
        {"failing_operations": {"times": 1, "message": "disk is read-only"}},
        ("failed", "keybind.OperationFailed"),
        ("failed", "keybind.OperationFailed"),
    ),
    # Accepted, SUCCESS, yet the key is not there.
    "ins-dropkeys": (
        {"drops_keys": True},
        ("failed", "keybind.KeyNotBound"),
        ("failed", "keybind.KeyNotBound"),
    ),
}


@pytest.mark.parametrize("force_stop", [False, True], ids=["refuse", "force_stop"])
def test_mixed_fleet_ends_right_under_each_power_policy(
    force_stop: bool,
    client: TestClient,
    rt: Runtime,
    e2e_settings: Settings,
    simulator: Simulator,
    procs: Processes,
) -> None:
    # Operations take a second, so the verify phase sees OPERATING before SUCCESS.
    simulator.configure(op_delay_s=1.0)
    simulator.put_instances(
        [{"id": iid, "key_ids": [OLD_KEY], **spec} for iid, (spec, _, _) in FLEET.items()]
    )
    settings = e2e_settings.model_copy(
        update={"verify_delay_s": 0.3, "verify_interval_max_s": 1.0, "verify_budget_s": 60.0}
    )
    procs.worker(settings_env(settings), concurrency=2, beat=True)

    job_id = submit(client, list(FLEET), force_stop=force_stop)
    job = wait_final(client, job_id, timeout=120)

    assert job["power_policy"] == ("force_stop" if force_stop else "refuse")
    got = {i["instance_id"]: i for i in all_items(client, job_id)}
    for iid, (_, refuse, force) in FLEET.items():
        state, code = force if force_stop else refuse
        assert (got[iid]["state"], got[iid]["error_code"]) == (state, code), got[iid]
    assert "disk is read-only" in got["ins-opfailed"]["error_message"]
    if not force_stop:
        assert "force_stop=true" in got["ins-running1"]["error_message"]

    # The cloud's own record agrees: the key is on exactly the instances that succeeded.
    for iid, item in got.items():
        if FLEET[iid][0].get("missing"):
            continue
        seen = simulator.instance(iid)
        assert (KEY in seen["LoginSettings"]["KeyIds"]) == (item["state"] == "succeeded"), seen
    for iid in ("ins-running1", "ins-running2", "ins-starting"):
        # Force-stopped instances were started again; refused ones were never stopped.
        assert simulator.instance(iid)["InstanceState"] == "RUNNING"

    # Both calls are on record: the accepted bind's RequestId and the verifying look's.
    with rt.sessions() as s:
        targets = {t.instance_id: t for t in s.scalars(select(Target))}
        actions = {
            (t_id, a) for t_id, a in s.execute(select(Attempt.target_id, Attempt.action)).all()
        }
    for iid, item in got.items():
        t = targets[iid]
        if item["state"] == "succeeded":
            assert t.request_id and t.verify_request_id and t.request_id != t.verify_request_id
            assert simulator.instance(iid)["LatestOperationRequestId"] == t.request_id
            assert (t.id, "AssociateInstancesKeyPairs") in actions
            assert (t.id, "DescribeInstances") in actions
    assert got["ins-busy0001"]["attempts"] == 3 and got["ins-busy0002"]["attempts"] == 2
    assert simulator.stats("DescribeInstances")["throttled"] == 0
