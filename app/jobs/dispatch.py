"""The dispatcher: hands due targets to the broker at the pace the cloud's limit allows,
fairly between the jobs sharing one account, and recovers targets whose worker vanished.

PostgreSQL holds every target and when it is next due; the broker only ever holds a few
seconds of work, so a wiped or restarted broker loses nothing the next tick cannot redo.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from app.domain import batching
from app.jobs import recovery
from app.jobs.ports import Producer
from app.providers.registry import spec as provider_spec
from app.runtime import Runtime
from app.store import dispatch as store
from app.store.db import transaction, utcnow
from app.store.models import Job

log = logging.getLogger(__name__)

# Bulk calls reach a worker this much ahead of their slot at the limiter (at least 1.5
# slots), so the limiter always has a caller waiting and never idles; any earlier and they
# would hold worker processes asleep that a front-lane call or a verify look could use.
PACE_LEAD_MIN_S = 0.05
PACE_LEAD_MAX_S = 0.25


@dataclass(frozen=True, slots=True)
class Tick:
    released: list[list[int]]  # bind batches handed to the broker
    recovered: int
    verifying: list[list[int]] = field(default_factory=list)  # verify batches
    front: list[list[int]] = field(default_factory=list)  # bind batches sent ahead of the queue
    countdowns: list[float] = field(default_factory=list)  # per bulk batch (released[len(front):])


def dispatch(rt: Runtime, producer: Producer) -> Tick:
    """One tick: recover expired leases, then release each account's share of due targets."""
    now = utcnow()
    until = now + timedelta(seconds=rt.settings.dispatch_lease_s)
    with transaction(rt.sessions) as session:
        if not store.try_dispatch_lock(session):
            return Tick([], 0)
        # Stragglers first: their UPDATE may wait for a worker's row locks, so it runs
        # before this transaction holds any job row a worker may need.
        recovery.cancel_stragglers(session, now)
        recovered = recovery.recover_expired(rt, session, now)
        jobs = store.active_jobs(session)
        buckets: defaultdict[tuple[str, str], list[Job]] = defaultdict(list)
        for job in jobs:
            buckets[(job.provider, job.account)].append(job)
        front: list[list[int]] = []  # calls that go ahead of the queue (see _share)
        back: list[list[int]] = []
        countdowns: list[float] = []  # when each bulk call is to reach a worker
        verifying: list[list[int]] = []
        for (provider, account), bucket in buckets.items():
            spec = provider_spec(provider)
            job_ids = [j.id for j in bucket]
            rate = rt.rates.rate(provider, account, spec.bind_action)
            # Counted in calls: a call carries up to a job's batch_size targets.
            capacity = math.ceil(rate * rt.settings.dispatch_horizon_s)
            out = store.bind_outstanding(session, job_ids, now)
            calls_out = {j.id: math.ceil(out.get(j.id, 0) / j.batch_size) for j in bucket}
            # A job asked to cancel gets no new bind calls; its looks still go out (below).
            calling = [j for j in bucket if j.cancel_requested_at is None]
            ahead, bulk = _share(session, calling, capacity, calls_out, now, until)
            front += ahead
            back += bulk
            countdowns += paced(sum(calls_out.values()) + len(ahead), len(bulk), rate)
            if spec.verify_action is not None:
                # Verify calls have their own limit and carry up to max_batch instances each.
                v_rate = rt.rates.rate(provider, account, spec.verify_action)
                v_capacity = math.ceil(v_rate * rt.settings.dispatch_horizon_s) * spec.max_batch
                v_budget = v_capacity - store.verify_outstanding(session, job_ids, now)
                verifying += _verify_batches(session, bucket, v_budget, spec.max_batch, now, until)
    if front:
        producer.enqueue_binds(front, front=True)
    if back:
        producer.enqueue_binds(back, countdowns=countdowns)
    if verifying:
        producer.enqueue_verifies(verifying)
    released = front + back
    return Tick(released, recovered, verifying, front, countdowns)


def paced(ahead: int, n: int, rate: float) -> list[float]:
    """Countdowns (s) for `n` bulk calls of one account behind `ahead` calls already out:
    each is sent for shortly before its slot at the limiter, so the broker's timer holds it
    until then, not a worker process sleeping in the limiter (a process the front lane, a
    verify look or the control queue could use meanwhile)."""
    slot = 1 / rate
    lead = min(PACE_LEAD_MAX_S, max(PACE_LEAD_MIN_S, 1.5 * slot))
    # An idle account's limiter grants a window's worth at once: those go now.
    burst = max(1, math.floor(rate))
    return [0.0 if j < burst else max(0.0, j * slot - lead) for j in range(ahead, ahead + n)]


def _verify_batches(
    session: Session, jobs: list[Job], budget: int, max_batch: int, now: datetime, until: datetime
) -> list[list[int]]:
    """Due verify-phase targets, one job's per batch, up to `max_batch` per verify call."""
    batches: list[list[int]] = []
    for job in jobs:
        if budget <= 0:
            break
        ids = store.due_verify_ids(session, job.id, now, budget)
        store.mark_dispatched(session, ids, until)
        batches += [ids[i : i + max_batch] for i in range(0, len(ids), max_batch)]
        budget -= len(ids)
    return batches


def _share(
    session: Session,
    jobs: list[Job],
    capacity: int,
    calls_out: dict[str, int],
    now: datetime,
    until: datetime,
) -> tuple[list[list[int]], list[list[int]]]:
    """Release calls for one account's jobs (highest priority first): (front lane, bulk).

    Each job is owed a fair share of the account's horizon (`capacity` calls). A job below
    its share is topped up to it even when the others have filled the horizon (they drain
    within it, and the limiter still holds the rate), and the first call of a job that had
    nothing out goes to the front of the broker's queue: a small job submitted during a huge
    one is released at once and called next, instead of waiting behind the huge one's
    backlog. What is left of the horizon is then shared round-robin between the jobs that
    have more due."""
    if not jobs:
        return [], []
    fair = max(1, capacity // len(jobs))
    budget = capacity - sum(calls_out.values())
    front: list[list[int]] = []
    bulk: list[list[int]] = []
    open_jobs: list[Job] = []
    for job in jobs:
        owed = fair - calls_out[job.id]
        if owed <= 0:
            open_jobs.append(job)
            continue
        calls = _release(session, job, owed, now, until)
        budget -= len(calls)
        if len(calls) >= owed:  # fewer: nothing more due right now
            open_jobs.append(job)
        if calls and calls_out[job.id] == 0:
            front.append(calls.pop(0))
        bulk += calls
    while budget > 0 and open_jobs:
        share = max(1, budget // len(open_jobs))
        still_open: list[Job] = []
        for job in open_jobs:
            if budget <= 0:
                break
            wanted = min(share, budget)
            calls = _release(session, job, wanted, now, until)
            bulk += calls
            budget -= len(calls)
            if len(calls) >= wanted:
                still_open.append(job)
        open_jobs = still_open
    return front, bulk


def _release(
    session: Session, job: Job, calls: int, now: datetime, until: datetime
) -> list[list[int]]:
    """Mark up to `calls` calls' worth of the job's due targets as out with the broker and
    group them into calls (bisection halves each alone, the rest by batch_size)."""
    due = store.release_due(session, job.id, now, until, calls * job.batch_size)
    return batching.plan_calls(due, job.batch_size)
