"""Fair sharing of one account's limit: a 1-instance job submitted while a 10,000-instance
job on the same account fills the limit. Its wall time from submission to final (the job
row's created_at to finished_at). Target <= 2 s.

Two big jobs, both at the real 10/s:
- one per call (10,000 calls, 1,000 s): the small jobs arrive once it is in its steady state
  (after a warm-up); its state then is the same as half-way, 500 s in;
- coalesced (batch_size 100, 100 calls, 10 s): the small job arrives half-way, at 5 s.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select

from app.store.models import Attempt, Job, Target
from tests.bench.harness import BIND, Stack, instance_ids, report, stack

LIMIT = 10.0


def _small_jobs(s: Stack, big_id: str, prefixes: str, first_after_s: float) -> dict[str, Any]:
    """One small job per letter of `prefixes` (each its instance IDs' prefix), a second apart."""
    walls: list[float] = []
    queued: list[int] = []
    parts: list[dict[str, float]] = []
    time.sleep(first_after_s)
    for prefix in prefixes:
        queued.append(s.queued_messages())
        small = s.submit(instance_ids(1, prefix))
        job = s.wait(small, timeout=60, interval=0.02)
        walls.append((job.finished_at - job.created_at).total_seconds())
        parts.append(_timeline(s, small))
        if s.job(big_id).finished_at is not None:
            break
        time.sleep(1.0)
    big = s.job(big_id)
    return {
        "small_job_wall_s": walls,
        "small_job_wall_max_s": max(walls),
        # Where a small job's time went: submission to its bind call, the call, the call's
        # end to its verify look (KEYBIND_VERIFY_DELAY_S or the front lane's), the look to final.
        "small_job_timeline_s": parts,
        "broker_messages_at_submit": queued,
        "big_job_done_when_measured": big.n_succeeded + big.n_failed,
        "big_job_still_running": big.finished_at is None,
    }


def _timeline(s: Stack, job_id: str) -> dict[str, float]:
    with s.rt.sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.finished_at is not None
        calls = session.execute(
            select(Attempt.action, Attempt.started_at, Attempt.latency_ms)
            .join(Target, Target.id == Attempt.target_id)
            .where(Target.job_id == job_id)
            .order_by(Attempt.id)
        ).all()
    bind = [c for c in calls if c.action == BIND]
    look = [c for c in calls if c.action != BIND]
    if not bind or not look:
        return {}
    bind_end = bind[-1].started_at.timestamp() + bind[-1].latency_ms / 1000
    return {
        "to_call": round(bind[0].started_at.timestamp() - job.created_at.timestamp(), 3),
        "calls": len(bind),
        "call_to_look": round(look[0].started_at.timestamp() - bind_end, 3),
        "look_to_final": round(job.finished_at.timestamp() - look[-1].started_at.timestamp(), 3),
    }


def main(quick: bool = False) -> list[dict[str, Any]]:
    with stack(layout=[2, 2], sim_limit=LIMIT, rate_limit=LIMIT) as s:
        big = s.submit(instance_ids(10_000, "g"), batch_size=1)
        one = _small_jobs(s, big, "mno", first_after_s=5.0 if quick else 10.0)
    with stack(layout=[2, 2], sim_limit=LIMIT, rate_limit=LIMIT) as s:
        big = s.submit(instance_ids(10_000, "h"), batch_size=100)
        coalesced = _small_jobs(s, big, "pqr", first_after_s=5.0)
    return [
        report("fairness_one_per_call", {"big_job": "10,000 x batch 1 @ 10/s", **one}),
        report("fairness_coalesced", {"big_job": "10,000 x batch 100 @ 10/s", **coalesced}),
    ]
