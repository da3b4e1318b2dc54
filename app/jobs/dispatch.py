"""The dispatcher: hands due targets to the broker at the pace the cloud's limit allows,
fairly between the jobs sharing one account, and recovers targets whose worker vanished.

PostgreSQL holds every target and when it is next due; the broker only ever holds a few
seconds of work, so a wiped or restarted broker loses nothing the next tick cannot redo.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from app.db import transaction, utcnow
from app.jobs import repository as repo
from app.jobs.models import Job
from app.jobs.states import TargetState
from app.runtime import Runtime

log = logging.getLogger(__name__)

SWEEP_BATCH = 1000
LEASE_LOST_CODE = "keybind.WorkerLost"


@dataclass(frozen=True, slots=True)
class Tick:
    released: list[list[int]]
    recovered: int


def dispatch(rt: Runtime) -> Tick:
    """One tick: recover expired leases, then release each account's share of due targets."""
    now = utcnow()
    until = now + timedelta(seconds=rt.settings.dispatch_lease_s)
    with transaction(rt.sessions) as session:
        if not repo.try_dispatch_lock(session):
            return Tick([], 0)
        # Stragglers first: their UPDATE may wait for a worker's row locks, so it runs
        # before this transaction holds any job row a worker may need.
        _cancel_stragglers(session, now)
        recovered = _recover_expired(rt, session, now)
        jobs = repo.active_jobs(session)
        buckets: defaultdict[tuple[str, str], list[Job]] = defaultdict(list)
        for job in jobs:
            buckets[(job.provider, job.account)].append(job)
        released: list[list[int]] = []
        for (provider, _account), bucket in buckets.items():
            capacity = math.ceil(rt.rate_for(provider) * rt.settings.dispatch_horizon_s)
            in_flight = sum(j.n_running for j in bucket)
            out = repo.dispatched_count(session, [j.id for j in bucket], now)
            budget = capacity - in_flight - out
            if budget > 0:
                released += _share(session, bucket, budget, now, until)
    if released:
        rt.enqueue_binds(released)
    return Tick(released, recovered)


def _share(
    session: Session, jobs: list[Job], budget: int, now: datetime, until: datetime
) -> list[list[int]]:
    """Serve higher priorities first (a webhook's job before a bulk API job), and within one
    priority round-robin the budget, so a small job submitted during a huge one of the same
    priority still gets its share at once instead of queueing behind it."""
    batches: list[list[int]] = []
    for priority in sorted({j.priority for j in jobs}, reverse=True):
        if budget <= 0:
            break
        level = [j for j in jobs if j.priority == priority]
        released = _round_robin(session, level, budget, now, until)
        budget -= sum(len(b) for b in released)
        batches += released
    return batches


def _round_robin(
    session: Session, jobs: list[Job], budget: int, now: datetime, until: datetime
) -> list[list[int]]:
    batches: list[list[int]] = []
    open_jobs = list(jobs)
    while budget > 0 and open_jobs:
        share = max(1, budget // len(open_jobs))
        still_open: list[Job] = []
        for job in open_jobs:
            if budget <= 0:
                break
            wanted = min(share, budget)
            ids = repo.due_target_ids(session, job.id, now, wanted)
            repo.mark_dispatched(session, ids, until)
            batches += [ids[i : i + job.batch_size] for i in range(0, len(ids), job.batch_size)]
            budget -= len(ids)
            if len(ids) == wanted:  # fewer means this job has nothing more due right now
                still_open.append(job)
        open_jobs = still_open
    return batches


def _cancel_stragglers(session: Session, now: datetime) -> None:
    """A cancelled job's target whose in-flight call ended in a retryable error is back to
    waiting; cancel it here rather than call it again."""
    deltas = repo.CounterDeltas()
    for job_id in repo.cancelling_jobs(session):
        repo.cancel_waiting(session, deltas, job_id, now)
    repo.apply_counts(session, deltas, now)


def _recover_expired(rt: Runtime, session: Session, now: datetime) -> int:
    """Targets whose worker died mid-call go back to waiting; the call may have reached the
    cloud, so it counts as an attempt, and a target that keeps killing workers ends failed."""
    deltas = repo.CounterDeltas()
    recovered = 0
    for t in repo.expired_leases(session, now, SWEEP_BATCH):
        attempts = t.attempts + 1
        give_up = attempts >= rt.settings.max_attempts
        moved = repo.move_target(
            session,
            deltas,
            target_id=t.id,
            job_id=t.job_id,
            src=TargetState.RUNNING,
            dst=TargetState.FAILED if give_up else TargetState.RETRYING,
            holder=t.lease_token,
            attempts=attempts,
            lease_until=None,
            lease_token=None,
            next_attempt_at=now,
            error_code=LEASE_LOST_CODE if give_up else (t.error_code or LEASE_LOST_CODE),
            error_message="the worker holding this target stopped before recording a result",
            **({"finished_at": now} if give_up else {}),
        )
        recovered += moved
    repo.apply_counts(session, deltas, now)
    if recovered:
        log.warning("recovered %d targets whose lease expired", recovered)
    return recovered
