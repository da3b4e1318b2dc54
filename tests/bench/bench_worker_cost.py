"""Worker cost per bind, as a multiple of a bare Celery no-op task measured in the same run.

One `keybind worker` with a pool of 1, no scheduler: the benchmark hands the worker its
messages directly, so what is timed is the worker alone. The limiter never waits (limits
raised to 1,000,000/s on both sides; its Redis round trip is still paid), so a bind task
costs its two transactions, its limiter check and its HTTP call to the simulator.
Time per task = (time from the first message sent to the last one done) / messages; a bind
task is done when its targets have left the bind phase (accepted, waiting for verify). The
verify turn (DescribeInstances, 100 instances a call) is timed the same way, separately.
Target: bind / no-op <= 3.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update

from app.broker.names import NOOP_TASK
from app.store.db import utcnow
from app.store.models import Target
from tests.bench.harness import Stack, instance_ids, report, stack

UNLIMITED = 1_000_000.0


def _drain(s: Stack, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while s.queued_messages() and time.monotonic() < deadline:
        time.sleep(0.005)


def _noop_s(s: Stack, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        s.producer.celery.send_task(NOOP_TASK, queue=s.bind_queue)
    _drain(s)
    return (time.perf_counter() - started) / n


def _binding_left(s: Stack, job_id: str) -> int:
    with s.rt.sessions() as session:
        stmt = select(func.count()).where(
            Target.job_id == job_id,
            Target.phase == "bind",
            Target.state.in_(["pending", "retrying", "running"]),
        )
        return int(session.scalar(stmt) or 0)


def _bind_s(s: Stack, n: int, batch_size: int, prefix: str) -> tuple[float, float]:
    """Seconds per bind task and per verify task (100 instances each)."""
    job_id = s.submit(instance_ids(n, prefix), kick=False, batch_size=batch_size)
    with s.rt.sessions.begin() as session:
        ids = list(session.scalars(select(Target.id).where(Target.job_id == job_id)))
        # Out with the broker (we send them): a dispatcher tick (binds ask for early ones)
        # must not release them a second time.
        session.execute(
            update(Target)
            .where(Target.job_id == job_id)
            .values(dispatched_until=utcnow() + timedelta(hours=1))
        )
    batches = [ids[i : i + batch_size] for i in range(0, len(ids), batch_size)]
    started = time.perf_counter()
    s.producer.enqueue_binds(batches)
    deadline = time.monotonic() + 300
    # Cheap checks first and not too often: the watching must not load the database the
    # worker is using (a count every 2 ms did, and doubled the figure).
    _drain(s)
    while _binding_left(s, job_id) and time.monotonic() < deadline:
        time.sleep(0.01)
    bind = (time.perf_counter() - started) / len(batches)
    with s.rt.sessions.begin() as session:
        # Verify looks fall due an hour after acceptance here (see main), so no look ran
        # during the binds; make them due now and time them on their own.
        session.execute(
            update(Target).where(Target.job_id == job_id).values(next_attempt_at=utcnow())
        )
    looks = [ids[i : i + 100] for i in range(0, len(ids), 100)]
    started = time.perf_counter()
    s.producer.enqueue_verifies(looks)
    job = s.wait(job_id, timeout=300, interval=0.01)
    verify = (time.perf_counter() - started) / len(looks)
    assert job.n_succeeded == n, s.counts(job_id)
    return bind, verify


def main(quick: bool = False) -> list[dict[str, Any]]:
    n = 300 if quick else 1000
    with stack(
        layout=[1],
        sim_limit=UNLIMITED,
        rate_limit=UNLIMITED,
        beat=False,
        # Binds and verify looks timed apart: no look falls due while the binds run.
        verify_delay_s=3600.0,
        # The benchmark hands the worker all its messages at once, not a horizon's worth.
        dispatch_lease_s=3600.0,
    ) as s:
        s.sim.configure(rate_limits={"DescribeInstances": UNLIMITED})
        _noop_s(s, 100)  # warm-up: pool, connections
        _bind_s(s, 50, 1, "w")
        noop = _noop_s(s, n)
        bind, verify = _bind_s(s, n, 1, "c")
        batched, _ = _bind_s(s, n * 5, 100, "d")
        noop_again = _noop_s(s, n)  # the machine's load drifts; bracket the binds
    yardstick = (noop + noop_again) / 2
    return [
        report(
            "worker_cost",
            {
                "messages": n,
                "noop_ms": yardstick * 1000,
                "bind_ms_per_call_batch_1": bind * 1000,
                "bind_over_noop": bind / yardstick,
                "verify_ms_per_call_of_100": verify * 1000,
                "bind_ms_per_call_batch_100": batched * 1000,
                "bind_ms_per_instance_batch_100": batched * 1000 / 100,
            },
        )
    ]
