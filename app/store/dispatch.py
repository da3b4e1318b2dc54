"""The dispatcher's queries: which jobs are active, what each has out, what is due; the
dispatcher's lock. One tick is one transaction over these."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, Select, func, or_, select, update
from sqlalchemy.orm import Session

from app.domain.batching import Due
from app.domain.states import ACTIVE_JOB_STATES, WAITING_TARGET_STATES, Phase, TargetState
from app.store.models import Job, Target

ACTIVE = tuple(s.value for s in ACTIVE_JOB_STATES)
WAITING = tuple(s.value for s in WAITING_TARGET_STATES)
RUNNING = TargetState.RUNNING.value
BIND = Phase.BIND.value
VERIFY = Phase.VERIFY.value


def verify_outstanding(session: Session, job_ids: Sequence[str], now: datetime) -> int:
    """Verify-phase targets held by a worker or out with the broker."""
    stmt = select(func.count()).where(
        Target.job_id.in_(job_ids),
        Target.state == RUNNING,
        Target.phase == VERIFY,
        or_(Target.lease_token.is_not(None), Target.dispatched_until > now),
    )
    return int(session.scalar(stmt) or 0)


def _due(job_id: str, now: datetime, limit: int, *where: ColumnElement[bool]) -> Select[int]:
    """Up to `limit` of a job's targets matching `where` that are due and not already out with
    the broker, oldest due first, locked (others' locks skipped)."""
    return (
        select(Target.id)
        .where(
            Target.job_id == job_id,
            *where,
            Target.next_attempt_at <= now,
            or_(Target.dispatched_until.is_(None), Target.dispatched_until <= now),
        )
        .order_by(Target.next_attempt_at, Target.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


def due_verify_ids(session: Session, job_id: str, now: datetime, limit: int) -> list[int]:
    """Verify-phase targets of one job due for a look and not already out with the broker."""
    looking = (Target.state == RUNNING, Target.phase == VERIFY, Target.lease_token.is_(None))
    return list(session.scalars(_due(job_id, now, limit, *looking)))


def active_jobs(session: Session) -> list[Job]:
    """Unfinished jobs, highest priority first, then oldest; cancelling ones too (their
    accepted binds still need their looks)."""
    stmt = select(Job).where(Job.state.in_(ACTIVE)).order_by(Job.priority.desc(), Job.created_at)
    return list(session.scalars(stmt))


def bind_outstanding(session: Session, job_ids: Sequence[str], now: datetime) -> dict[str, int]:
    """Per job: targets a worker holds for a bind call, plus those out with the broker and not
    yet claimed; what the dispatcher counts against the horizon. Two small index scans (a
    single OR would visit every waiting target of a 100k job)."""
    held = (
        select(Target.job_id, func.count())
        .where(Target.job_id.in_(job_ids), Target.state == RUNNING, Target.phase == BIND)
        .group_by(Target.job_id)
    )
    out = (
        select(Target.job_id, func.count())
        .where(
            Target.job_id.in_(job_ids),
            Target.dispatched_until.is_not(None),
            Target.dispatched_until > now,
            Target.state.in_(WAITING),
        )
        .group_by(Target.job_id)
    )
    counts: Counter[str] = Counter()
    for stmt in (held, out):
        for job_id, n in session.execute(stmt).tuples():
            counts[job_id] += int(n)
    return dict(counts)


def release_due(
    session: Session, job_id: str, now: datetime, until: datetime, limit: int
) -> list[Due]:
    """Hand up to `limit` of the job's due targets (waiting, due, not already out with the
    broker), oldest due first, to the broker until `until`: select and mark in one statement."""
    due = _due(job_id, now, limit, Target.state.in_(WAITING)).scalar_subquery()
    rows = list(
        session.execute(
            update(Target)
            .where(Target.id.in_(due))
            .values(dispatched_until=until)
            .returning(Target.id, Target.bisect_group, Target.next_attempt_at)
        ).all()
    )
    rows.sort(key=lambda r: (r.next_attempt_at, r.id))
    return [Due(r.id, r.bisect_group) for r in rows]


def mark_dispatched(session: Session, target_ids: Sequence[int], until: datetime) -> None:
    if target_ids:
        session.execute(
            update(Target).where(Target.id.in_(target_ids)).values(dispatched_until=until)
        )


def try_dispatch_lock(session: Session) -> bool:
    """One dispatcher at a time on PostgreSQL (released at commit); SQLite serialises writers."""
    if session.get_bind().dialect.name != "postgresql":
        return True
    return bool(session.scalar(select(func.pg_try_advisory_xact_lock(0x6B657962))))


def cancelling_jobs(session: Session) -> list[str]:
    """Jobs asked to cancel that still have targets open (a call was in flight)."""
    stmt = select(Job.id).where(Job.cancel_requested_at.is_not(None), Job.finished_at.is_(None))
    return list(session.scalars(stmt))
