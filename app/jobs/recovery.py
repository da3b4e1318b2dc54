"""The sweeper: what a dead worker or a late cancel left behind, put right on each tick.

Targets whose worker died mid-call go back to waiting (domain/outcomes.after_lost_call and
after_lost_look decide how); a cancelled job's target that came back from its in-flight call
to wait again is cancelled rather than called again. Runs inside the dispatcher's tick.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.orm import Session

from app.domain.outcomes import Change, after_lost_call, after_lost_look
from app.domain.states import Phase
from app.runtime import Runtime
from app.store import dispatch as store
from app.store.counters import CounterDeltas, apply_counts
from app.store.target_writes import write_one
from app.store.targets import cancel_waiting, expired_leases

log = logging.getLogger(__name__)

SWEEP_BATCH = 1000


def cancel_stragglers(session: Session, now: datetime) -> None:
    """A cancelled job's target whose in-flight call ended in a retryable error is back to
    waiting; cancel it here rather than call it again."""
    deltas = CounterDeltas()
    for job_id in store.cancelling_jobs(session):
        cancel_waiting(session, deltas, job_id, now)
    apply_counts(session, deltas, now)


def recover_expired(rt: Runtime, session: Session, now: datetime) -> int:
    """Hand on every target whose lease ran out; returns how many."""
    deltas = CounterDeltas()
    recovered = 0
    for t in expired_leases(session, now, SWEEP_BATCH):
        change: Change
        if t.phase == Phase.VERIFY.value:
            change = after_lost_look(
                verify_started_at=t.verify_started_at, now=now, verify=rt.verify_policy
            )
        else:
            change = after_lost_call(
                attempts=t.attempts,
                error_code=t.error_code,
                max_attempts=rt.settings.max_attempts,
                now=now,
            )
        recovered += write_one(
            session,
            deltas,
            target_id=t.id,
            job_id=t.job_id,
            holder=t.lease_token,
            change=change,
            now=now,
        )
    apply_counts(session, deltas, now)
    if recovered:
        log.warning("recovered %d targets whose lease expired", recovered)
    return recovered
