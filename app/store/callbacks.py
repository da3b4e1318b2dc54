"""Callbacks: the job row holds each callback's schedule, callback_attempts its history."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.domain.states import CallbackState
from app.store.models import CallbackAttempt, Job

PENDING = CallbackState.PENDING.value


def callback_attempts(session: Session, job_id: str) -> list[CallbackAttempt]:
    stmt = (
        select(CallbackAttempt).where(CallbackAttempt.job_id == job_id).order_by(CallbackAttempt.id)
    )
    return list(session.scalars(stmt))


def claim_due_callback(session: Session, now: datetime, lease_until: datetime) -> Job | None:
    """Take one finished job whose callback is due; its next_at moves to `lease_until`, so
    no other sender takes it meanwhile, and a sender that dies leaves it due again then."""
    job = session.scalars(
        select(Job)
        .where(
            Job.callback_state == PENDING,
            Job.finished_at.is_not(None),
            Job.callback_next_at <= now,
        )
        .order_by(Job.callback_next_at)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).first()
    if job is None:
        return None
    job.callback_next_at = lease_until
    session.flush()
    return job


def record_callback_attempt(
    session: Session,
    *,
    job_id: str,
    leased_until: datetime,
    attempt: CallbackAttempt,
    state: CallbackState,
    next_at: datetime | None,
) -> bool:
    """Record one attempt and the callback's next state, if this sender still holds it."""
    result = session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            Job.callback_state == PENDING,
            Job.callback_next_at == leased_until,
        )
        .values(callback_state=state.value, callback_next_at=next_at, version=Job.version + 1)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return False
    session.add(attempt)
    return True


def count_callback_attempts(session: Session, job_id: str) -> int:
    stmt = select(func.count()).where(CallbackAttempt.job_id == job_id)
    return int(session.scalar(stmt) or 0)
