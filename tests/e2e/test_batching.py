"""Coalesced calls through real workers: a call that fails for one instance is split in halves
until that instance stands alone; everyone else succeeds, with exact per-instance attempts.

The expected calls come from the bisection tree itself (`replay` below re-derives it from the
simulator's documented behaviour), never from hard-coded counts.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.config import Settings
from app.runtime import Runtime
from app.store.models import Attempt
from tests.e2e.test_pipeline import all_items, ids, submit, wait_final
from tests.support.processes import Processes, settings_env
from tests.support.simulator import Simulator

BIND = "AssociateInstancesKeyPairs"


def replay(
    instance_ids: list[str], *, missing: set[str] = frozenset(), busy: dict[str, int] | None = None
) -> tuple[int, Counter[str]]:
    """Calls and calls per instance for one batch, as the simulator answers (all-or-nothing:
    a missing instance fails the call; else the first instance with a busy fault left uses
    one and fails it) and as keybind splits (first half = the smaller, in submission order).
    A lone busy instance is retried until its faults are used up; a lone missing one fails."""
    left = dict(busy or {})
    calls = 0
    per: Counter[str] = Counter()

    def call(part: list[str]) -> None:
        nonlocal calls
        calls += 1
        per.update(part)
        if any(i in missing for i in part):
            failed, retry_alone = True, False
        else:
            culprit = next((i for i in part if left.get(i, 0) > 0), None)
            failed, retry_alone = culprit is not None, True
            if culprit is not None:
                left[culprit] -= 1
        if not failed:
            return
        if len(part) > 1:
            mid = len(part) // 2
            call(part[:mid])
            call(part[mid:])
        elif retry_alone:
            call(part)

    call(list(instance_ids))
    return calls, per


def run_batch(
    client: TestClient, settings: Settings, procs: Processes, instance_ids: list[str]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    procs.worker(settings_env(settings), concurrency=4, beat=True)
    job_id = submit(client, instance_ids, batch_size=100)
    job = wait_final(client, job_id, timeout=120)
    return job, {i["instance_id"]: i for i in all_items(client, job_id)}


def bind_attempt_rows(rt: Runtime) -> int:
    with rt.sessions() as s:
        return int(s.scalar(select(func.count()).where(Attempt.action == BIND)) or 0)


def check(
    rt: Runtime,
    simulator: Simulator,
    by_id: dict[str, dict[str, Any]],
    calls: int,
    per: Counter[str],
) -> None:
    stats = simulator.stats(BIND)
    assert stats["throttled"] == 0
    assert stats["total"] == calls, (stats["total"], calls)
    assert stats["per_instance"] == dict(per)
    assert {i: item["attempts"] for i, item in by_id.items()} == dict(per)
    assert bind_attempt_rows(rt) == sum(per.values())


def test_one_bad_instance_in_a_call_of_100_is_isolated_and_99_succeed(
    client: TestClient,
    rt: Runtime,
    e2e_settings: Settings,
    simulator: Simulator,
    procs: Processes,
) -> None:
    instance_ids = ids(100, "q")
    bad = instance_ids[37]
    simulator.set_missing([bad])

    job, by_id = run_batch(client, e2e_settings, procs, instance_ids)

    assert job["state"] == "partial"
    assert (job["counts"]["succeeded"], job["counts"]["failed"]) == (99, 1)
    assert by_id[bad]["state"] == "failed"
    assert by_id[bad]["error_code"] == "InvalidInstanceId.NotFound"
    assert bad in by_id[bad]["error_message"]  # its own answer, from the call it stood alone in
    assert all(by_id[i]["state"] == "succeeded" for i in instance_ids if i != bad)
    calls, per = replay(instance_ids, missing={bad})
    check(rt, simulator, by_id, calls, per)


def test_three_bad_instances_in_a_call_of_100_are_isolated_and_97_succeed(
    client: TestClient,
    rt: Runtime,
    e2e_settings: Settings,
    simulator: Simulator,
    procs: Processes,
) -> None:
    instance_ids = ids(100, "t")
    missing = {instance_ids[3], instance_ids[50], instance_ids[98]}
    simulator.set_missing(sorted(missing))

    job, by_id = run_batch(client, e2e_settings, procs, instance_ids)

    assert (job["counts"]["succeeded"], job["counts"]["failed"]) == (97, 3)
    for i in missing:
        assert by_id[i]["state"] == "failed"
        assert (
            by_id[i]["error_code"] == "InvalidInstanceId.NotFound"
            and i in by_id[i]["error_message"]
        )
    assert all(by_id[i]["state"] == "succeeded" for i in instance_ids if i not in missing)
    calls, per = replay(instance_ids, missing=missing)
    check(rt, simulator, by_id, calls, per)


def test_a_busy_instance_retries_only_its_part(
    client: TestClient,
    rt: Runtime,
    e2e_settings: Settings,
    simulator: Simulator,
    procs: Processes,
) -> None:
    instance_ids = ids(20, "u")
    busy = {instance_ids[3]: 2}
    simulator.put_instances(
        [
            {"id": i, "faults": [{"code": "MutexOperation.TaskRunning", "times": n}]}
            for i, n in busy.items()
        ]
    )

    job, by_id = run_batch(client, e2e_settings, procs, instance_ids)

    assert job["state"] == "succeeded", job
    calls, per = replay(instance_ids, busy=busy)
    check(rt, simulator, by_id, calls, per)
    # The half without the busy instance went through at its first try of its own.
    assert all(per[i] == 2 for i in instance_ids[10:])


def test_a_whole_call_error_retries_the_batch_together(
    client: TestClient,
    rt: Runtime,
    e2e_settings: Settings,
    simulator: Simulator,
    procs: Processes,
) -> None:
    instance_ids = ids(10, "v")
    # InternalError is the cloud's own trouble, not the instance's: no split, one retry of all.
    simulator.put_instances([{"id": instance_ids[4], "faults": [{"code": "InternalError"}]}])

    job, by_id = run_batch(client, e2e_settings, procs, instance_ids)

    assert job["state"] == "succeeded", job
    check(rt, simulator, by_id, 2, Counter({i: 2 for i in instance_ids}))
