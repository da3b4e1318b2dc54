"""All SQL for jobs and targets. Callers own the transaction; nothing here commits."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from app.jobs.models import Attempt, IdempotencyKey, Job, Target
from app.jobs.states import (
    FINAL_JOB_STATES,
    WAITING_TARGET_STATES,
    JobState,
    TargetState,
    can_move,
    final_job_state,
)

COUNTER_COLUMN: dict[TargetState, Any] = {
    TargetState.PENDING: Job.n_pending,
    TargetState.RUNNING: Job.n_running,
    TargetState.RETRYING: Job.n_retrying,
    TargetState.SUCCEEDED: Job.n_succeeded,
    TargetState.FAILED: Job.n_failed,
    TargetState.CANCELLED: Job.n_cancelled,
}
ACTIVE_JOB_STATES = (JobState.QUEUED.value, JobState.RUNNING.value)
WAITING = tuple(s.value for s in WAITING_TARGET_STATES)


def insert_job(session: Session, job: Job, instance_ids: Sequence[str], now: datetime) -> None:
    """The job and one pending target per instance, in the caller's transaction."""
    session.add(job)
    session.flush()
    if session.bind is not None and session.get_bind().dialect.name == "postgresql":
        _copy_targets(session, job.id, instance_ids, now)
        return
    rows = [
        {
            "job_id": job.id,
            "instance_id": iid,
            "state": TargetState.PENDING.value,
            "attempts": 0,
            "next_attempt_at": now,
        }
        for iid in instance_ids
    ]
    session.execute(insert(Target), rows)


def _copy_targets(
    session: Session, job_id: str, instance_ids: Sequence[str], now: datetime
) -> None:
    # COPY writes 100k rows in a fraction of the time of a multi-row INSERT, and it still runs
    # inside the same transaction as the job row: a half-written job never exists.
    raw = session.connection().connection.driver_connection
    assert raw is not None
    with (
        raw.cursor() as cur,
        cur.copy(
            "COPY targets (job_id, instance_id, state, attempts, next_attempt_at) FROM STDIN"
        ) as copy,
    ):
        for iid in instance_ids:
            copy.write_row((job_id, iid, TargetState.PENDING.value, 0, now))


def get_job(session: Session, job_id: str) -> Job | None:
    return session.get(Job, job_id)


def list_targets(
    session: Session, job_id: str, *, state: TargetState | None, after_id: int, limit: int
) -> list[Target]:
    stmt = select(Target).where(Target.job_id == job_id, Target.id > after_id)
    if state is not None:
        stmt = stmt.where(Target.state == state.value)
    return list(session.scalars(stmt.order_by(Target.id).limit(limit)))


@dataclass
class CounterDeltas:
    """Per-job state-count changes gathered from guarded target moves, applied once."""

    by_job: defaultdict[str, Counter[TargetState]] = field(
        default_factory=lambda: defaultdict(Counter)
    )

    def add(self, job_id: str, src: TargetState, dst: TargetState) -> None:
        self.by_job[job_id][src] -= 1
        self.by_job[job_id][dst] += 1


def move_target(
    session: Session,
    deltas: CounterDeltas,
    *,
    target_id: int,
    job_id: str,
    src: TargetState,
    dst: TargetState,
    holder: str | None = None,
    **values: Any,
) -> bool:
    """Move one target from `src` to `dst` if it is still in `src` (and still leased to
    `holder`, when given). A duplicate or late delivery finds it moved and changes nothing."""
    if not can_move(src, dst):
        raise ValueError(f"target may not move {src} -> {dst}")
    stmt = update(Target).where(Target.id == target_id, Target.state == src.value)
    if holder is not None:
        stmt = stmt.where(Target.lease_token == holder)
    result = session.execute(stmt.values(state=dst.value, **values))
    moved = bool(result.rowcount)  # type: ignore[attr-defined]
    if moved:
        deltas.add(job_id, src, dst)
    return moved


def apply_counts(session: Session, deltas: CounterDeltas, now: datetime) -> None:
    """Apply gathered count changes; a job left with no open target gets its final state."""
    for job_id in sorted(deltas.by_job):  # fixed order: two writers cannot deadlock on jobs
        counts = deltas.by_job[job_id]
        values: dict[Any, Any] = {
            COUNTER_COLUMN[s]: COUNTER_COLUMN[s] + n for s, n in counts.items() if n
        }
        values[Job.version] = Job.version + 1
        values[Job.updated_at] = now
        if counts[TargetState.RUNNING] > 0:
            values[Job.started_at] = func.coalesce(Job.started_at, now)
        session.execute(update(Job).where(Job.id == job_id).values(values))
        if counts[TargetState.RUNNING] > 0:
            session.execute(
                update(Job)
                .where(Job.id == job_id, Job.state == JobState.QUEUED.value)
                .values(state=JobState.RUNNING.value)
            )
        _finish_if_done(session, job_id, now)
    deltas.by_job.clear()


def _finish_if_done(session: Session, job_id: str, now: datetime) -> None:
    job = session.execute(
        select(
            Job.state,
            Job.n_pending,
            Job.n_running,
            Job.n_retrying,
            Job.n_succeeded,
            Job.n_failed,
            Job.n_cancelled,
        ).where(Job.id == job_id)
    ).one()
    if job.state in {s.value for s in FINAL_JOB_STATES}:
        return
    if job.n_pending + job.n_running + job.n_retrying:
        return
    final = final_job_state(
        succeeded=job.n_succeeded, failed=job.n_failed, cancelled=job.n_cancelled
    )
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.finished_at.is_(None))
        .values(state=final.value, finished_at=now)
    )


@dataclass(frozen=True, slots=True)
class Claim:
    target_id: int
    job_id: str
    instance_id: str
    prior_state: TargetState
    attempts: int
    first_attempt_at: datetime
    lease_token: str


def claimable(session: Session, target_ids: Sequence[int], now: datetime) -> list[Target]:
    """Targets among `target_ids` that are waiting and due, locked against other claimers."""
    stmt = (
        select(Target)
        .where(
            Target.id.in_(target_ids),
            Target.state.in_(WAITING),
            Target.next_attempt_at <= now,
        )
        .order_by(Target.id)
        .with_for_update(skip_locked=True)
    )
    return list(session.scalars(stmt))


@dataclass(frozen=True, slots=True)
class VerifyClaim:
    target_id: int
    job_id: str
    instance_id: str
    bind_request_id: str | None
    verify_started_at: datetime
    verify_checks: int
    lease_token: str


RUNNING = TargetState.RUNNING.value
VERIFY = "verify"
BIND = "bind"


def update_running(
    session: Session, *, target_id: int, holder: str | None, in_phase: str, **values: Any
) -> bool:
    """Change a running target that stays running (a phase move, a verify look), only if it is
    still running in `in_phase` and leased to `holder` (None: not leased at all)."""
    stmt = update(Target).where(
        Target.id == target_id, Target.state == RUNNING, Target.phase == in_phase
    )
    if holder is None:
        stmt = stmt.where(Target.lease_token.is_(None))
    else:
        stmt = stmt.where(Target.lease_token == holder)
    return bool(session.execute(stmt.values(**values)).rowcount)  # type: ignore[attr-defined]


def bind_in_flight(session: Session, job_ids: Sequence[str]) -> int:
    """Targets a worker holds for a bind call (verify-phase ones do not use the bind limit)."""
    stmt = select(func.count()).where(
        Target.job_id.in_(job_ids), Target.state == RUNNING, Target.phase == BIND
    )
    return int(session.scalar(stmt) or 0)


def verify_outstanding(session: Session, job_ids: Sequence[str], now: datetime) -> int:
    """Verify-phase targets held by a worker or out with the broker."""
    stmt = select(func.count()).where(
        Target.job_id.in_(job_ids),
        Target.state == RUNNING,
        Target.phase == VERIFY,
        or_(Target.lease_token.is_not(None), Target.dispatched_until > now),
    )
    return int(session.scalar(stmt) or 0)


def due_verify_ids(session: Session, job_id: str, now: datetime, limit: int) -> list[int]:
    """Verify-phase targets of one job due for a look and not already out with the broker."""
    stmt = (
        select(Target.id)
        .where(
            Target.job_id == job_id,
            Target.state == RUNNING,
            Target.phase == VERIFY,
            Target.lease_token.is_(None),
            Target.next_attempt_at <= now,
            or_(Target.dispatched_until.is_(None), Target.dispatched_until <= now),
        )
        .order_by(Target.next_attempt_at, Target.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(session.scalars(stmt))


def add_attempt(session: Session, **values: Any) -> None:
    session.execute(insert(Attempt).values(**values))


def add_attempts(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Many attempts rows in one executemany."""
    if rows:
        session.execute(insert(Attempt), list(rows))


def move_targets(
    session: Session,
    deltas: CounterDeltas,
    *,
    target_ids: Sequence[int],
    job_id: str,
    src: TargetState,
    dst: TargetState,
    holder: str,
    **values: Any,
) -> int:
    """`move_target` for many targets of one job leased under one token, in one statement."""
    if not can_move(src, dst):
        raise ValueError(f"target may not move {src} -> {dst}")
    if not target_ids:
        return 0
    result = session.execute(
        update(Target)
        .where(
            Target.id.in_(target_ids),
            Target.job_id == job_id,
            Target.state == src.value,
            Target.lease_token == holder,
        )
        .values(state=dst.value, **values)
    )
    moved = int(result.rowcount)  # type: ignore[attr-defined]
    for _ in range(moved):
        deltas.add(job_id, src, dst)
    return moved


def claim_verify(
    session: Session, target_ids: Sequence[int], now: datetime, *, token: str, lease_until: datetime
) -> list[VerifyClaim]:
    """Lease every target among `target_ids` that waits in the verify phase and is due, in one
    guarded statement; a duplicate delivery finds them leased and gets nothing."""
    stmt = (
        update(Target)
        .where(
            Target.id.in_(target_ids),
            Target.state == RUNNING,
            Target.phase == VERIFY,
            Target.lease_token.is_(None),
            Target.next_attempt_at <= now,
        )
        .values(lease_token=token, lease_until=lease_until, dispatched_until=None)
        .returning(
            Target.id,
            Target.job_id,
            Target.instance_id,
            Target.request_id,
            Target.verify_started_at,
            Target.verify_checks,
        )
    )
    return [
        VerifyClaim(
            target_id=r.id,
            job_id=r.job_id,
            instance_id=r.instance_id,
            bind_request_id=r.request_id,
            verify_started_at=r.verify_started_at or now,
            verify_checks=r.verify_checks,
            lease_token=token,
        )
        for r in session.execute(stmt).all()
    ]


def expired_leases(session: Session, now: datetime, limit: int) -> list[Target]:
    stmt = (
        select(Target)
        .where(Target.state == TargetState.RUNNING.value, Target.lease_until < now)
        .order_by(Target.lease_until)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(session.scalars(stmt))


def active_jobs(session: Session) -> list[Job]:
    stmt = (
        select(Job)
        .where(Job.state.in_(ACTIVE_JOB_STATES))
        .order_by(Job.priority.desc(), Job.created_at)
    )
    return list(session.scalars(stmt))


def dispatched_count(session: Session, job_ids: Sequence[str], now: datetime) -> int:
    """Targets handed to the broker and not yet claimed (their release still holds)."""
    stmt = select(func.count()).where(
        Target.job_id.in_(job_ids),
        Target.dispatched_until.is_not(None),
        Target.dispatched_until > now,
        Target.state.in_(WAITING),
    )
    return int(session.scalar(stmt) or 0)


def due_target_ids(session: Session, job_id: str, now: datetime, limit: int) -> list[int]:
    """Waiting targets of one job that are due and not already out with the broker."""
    stmt = (
        select(Target.id)
        .where(
            Target.job_id == job_id,
            Target.state.in_(WAITING),
            Target.next_attempt_at <= now,
            or_(Target.dispatched_until.is_(None), Target.dispatched_until <= now),
        )
        .order_by(Target.next_attempt_at, Target.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(session.scalars(stmt))


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


def claim_idempotency_key(
    session: Session, *, owner: str, key: str, fingerprint: str, now: datetime
) -> IdempotencyKey | None:
    """Insert the key; None when this caller now holds it, else the row someone else holds."""
    dialect = session.get_bind().dialect.name
    values = {"owner": owner, "key": key, "fingerprint": fingerprint, "created_at": now}
    stmt: Any
    if dialect == "postgresql":
        stmt = pg_insert(IdempotencyKey).values(values).on_conflict_do_nothing()
    else:
        stmt = sqlite_insert(IdempotencyKey).values(values).on_conflict_do_nothing()
    # rowcount is not reliable with RETURNING on every driver; a returned id is.
    if session.execute(stmt.returning(IdempotencyKey.id)).scalar_one_or_none() is not None:
        return None
    return session.scalars(
        select(IdempotencyKey).where(IdempotencyKey.owner == owner, IdempotencyKey.key == key)
    ).one()


def take_over_idempotency_key(
    session: Session, row_id: int, fingerprint: str, now: datetime
) -> bool:
    """Take an abandoned in-flight key (its writer died before committing a job)."""
    result = session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.id == row_id, IdempotencyKey.job_id.is_(None))
        .values(fingerprint=fingerprint, created_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def bind_idempotency_key(session: Session, *, owner: str, key: str, job_id: str) -> None:
    session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.owner == owner, IdempotencyKey.key == key)
        .values(job_id=job_id)
    )


def release_idempotency_key(session: Session, *, owner: str, key: str) -> None:
    session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.owner == owner,
            IdempotencyKey.key == key,
            IdempotencyKey.job_id.is_(None),
        )
    )


def expire_idempotency_keys(session: Session, before: datetime) -> int:
    result = session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < before))
    return int(result.rowcount)  # type: ignore[attr-defined]
