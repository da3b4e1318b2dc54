"""Worker cost per bind, as a multiple of a bare Celery no-op task measured in the same run.

One `keybind worker` with a pool of 1, no scheduler: the benchmark hands the worker its
messages directly, so what is timed is the worker alone. The limiter never waits (limit
raised to 1,000,000/s on both sides; its Redis round trip is still paid), so a bind costs
its two transactions, its limiter check and its HTTP call to the simulator.
Time per task = (time from the first message sent to the last one done) / messages.
Target: bind / no-op <= 3.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select

from app.jobs.models import Target
from app.worker.tasks import NOOP_TASK
from tests.bench.harness import Stack, instance_ids, report, stack

UNLIMITED = 1_000_000.0


def _drain(s: Stack, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while s.redis.llen(s.bind_queue) and time.monotonic() < deadline:
        time.sleep(0.002)


def _noop_s(s: Stack, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        s.rt.celery.send_task(NOOP_TASK, queue=s.bind_queue)
    _drain(s)
    return (time.perf_counter() - started) / n


def _bind_s(s: Stack, n: int, batch_size: int, prefix: str) -> float:
    job_id = s.submit(instance_ids(n, prefix), kick=False, batch_size=batch_size)
    with s.rt.sessions() as session:
        ids = list(session.scalars(select(Target.id).where(Target.job_id == job_id)))
    batches = [ids[i : i + batch_size] for i in range(0, len(ids), batch_size)]
    started = time.perf_counter()
    s.rt.enqueue_binds(batches)
    job = s.wait(job_id, timeout=300, interval=0.002)
    elapsed = time.perf_counter() - started
    assert job.n_succeeded == n, s.counts(job_id)
    return elapsed / len(batches)


def main(quick: bool = False) -> list[dict[str, Any]]:
    n = 300 if quick else 1000
    with stack(layout=[1], sim_limit=UNLIMITED, rate_limit=UNLIMITED, beat=False) as s:
        _noop_s(s, 100)  # warm-up: pool, connections
        _bind_s(s, 50, 1, "w")
        noop = _noop_s(s, n)
        bind = _bind_s(s, n, 1, "c")
        batched = _bind_s(s, n * 5, 100, "d")
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
                "bind_ms_per_call_batch_100": batched * 1000,
                "bind_ms_per_instance_batch_100": batched * 1000 / 100,
            },
        )
    ]
