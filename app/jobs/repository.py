"""All SQL for jobs and targets. Callers own the transaction; nothing here commits."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, delete, func, insert, or_, select, true, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, aliased

from app.jobs.batching import Due
from app.jobs.models import Attempt, CallbackAttempt, IdempotencyKey, Job, Target
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


def job_version(session: Session, job_id: str, tenant: str | None) -> int | None:
    stmt = select(Job.version).where(Job.id == job_id)
    if tenant is not None:
        stmt = stmt.where(Job.tenant == tenant)
    return session.scalar(stmt)


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

    def add(self, job_id: str, src: TargetState, dst: TargetState, n: int = 1) -> None:
        self.by_job[job_id][src] -= n
        self.by_job[job_id][dst] += n


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


def move_targets(
    session: Session,
    deltas: CounterDeltas,
    *,
    target_ids: Sequence[int],
    job_id: str,
    src: TargetState,
    dst: TargetState,
    holder: str | None = None,
    **values: Any,
) -> int:
    """`move_target` for many targets of one job in one statement (same guard, same values);
    returns how many moved."""
    if not can_move(src, dst):
        raise ValueError(f"target may not move {src} -> {dst}")
    if not target_ids:
        return 0
    stmt = update(Target).where(Target.id.in_(target_ids), Target.state == src.value)
    if holder is not None:
        stmt = stmt.where(Target.lease_token == holder)
    moved = int(session.execute(stmt.values(state=dst.value, **values)).rowcount)  # type: ignore[attr-defined]
    if moved:
        deltas.add(job_id, src, dst, moved)
    return moved


def apply_counts(session: Session, deltas: CounterDeltas, now: datetime) -> None:
    """Apply gathered count changes; a job left with no open target gets its final state.

    One statement per job (the counters, the queued -> running move and reading back what
    decides the final state), so the job row's lock is held for as short as possible: every
    worker's every transaction ends here."""
    for job_id in sorted(deltas.by_job):  # fixed order: two writers cannot deadlock on jobs
        counts = deltas.by_job[job_id]
        values: dict[Any, Any] = {
            COUNTER_COLUMN[s]: COUNTER_COLUMN[s] + n for s, n in counts.items() if n
        }
        values[Job.version] = Job.version + 1
        values[Job.updated_at] = now
        if counts[TargetState.RUNNING] > 0:
            values[Job.started_at] = func.coalesce(Job.started_at, now)
            values[Job.state] = case(
                (Job.state == JobState.QUEUED.value, JobState.RUNNING.value), else_=Job.state
            )
        job = session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(values)
            .returning(
                Job.state,
                Job.cancel_requested_at,
                Job.n_pending,
                Job.n_running,
                Job.n_retrying,
                Job.n_succeeded,
                Job.n_failed,
                Job.n_cancelled,
            )
        ).one_or_none()
        if job is not None:
            _finish_if_done(session, job_id, job, now)
    deltas.by_job.clear()


def _finish_if_done(session: Session, job_id: str, job: Any, now: datetime) -> None:
    if job.state in {s.value for s in FINAL_JOB_STATES}:
        return
    if job.n_pending + job.n_running + job.n_retrying:
        return
    final = final_job_state(
        succeeded=job.n_succeeded, failed=job.n_failed, cancelled=job.n_cancelled
    )
    if job.cancel_requested_at is not None:
        final = JobState.CANCELLED
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
    bisect_calls: int = 0  # calls that included it and ended in a split (see Target)


def claim_targets(
    session: Session,
    deltas: CounterDeltas,
    target_ids: Sequence[int],
    *,
    now: datetime,
    lease_until: datetime,
    token: str,
) -> list[Claim]:
    """Lease to `token` the targets among `target_ids` that are waiting and due and belong to
    the first one's job (a batch is always one job's). Two statements whatever the batch size:
    lock the rows, then move them all."""
    rows = session.execute(
        select(
            Target.id,
            Target.job_id,
            Target.instance_id,
            Target.state,
            Target.attempts,
            Target.first_attempt_at,
            Target.bisect_calls,
        )
        .where(
            Target.id.in_(target_ids),
            Target.state.in_(WAITING),
            Target.next_attempt_at <= now,
        )
        .order_by(Target.id)
        .with_for_update(skip_locked=True)
    ).all()
    if not rows:
        return []
    job_id = rows[0].job_id
    rows = [r for r in rows if r.job_id == job_id]
    session.execute(
        update(Target)
        .where(Target.id.in_([r.id for r in rows]))
        .values(
            state=TargetState.RUNNING.value,
            lease_until=lease_until,
            lease_token=token,
            dispatched_until=None,
            first_attempt_at=func.coalesce(Target.first_attempt_at, now),
        )
    )
    claims = []
    for r in rows:
        prior = TargetState(r.state)
        deltas.add(job_id, prior, TargetState.RUNNING)
        claims.append(
            Claim(
                target_id=r.id,
                job_id=job_id,
                instance_id=r.instance_id,
                prior_state=prior,
                attempts=r.attempts,
                first_attempt_at=r.first_attempt_at or now,
                lease_token=token,
                bisect_calls=r.bisect_calls,
            )
        )
    return claims


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


def update_running_many(
    session: Session, *, target_ids: Sequence[int], holder: str, in_phase: str, **values: Any
) -> int:
    """`update_running` for many targets leased to `holder`, in one statement."""
    if not target_ids:
        return 0
    stmt = update(Target).where(
        Target.id.in_(target_ids),
        Target.state == RUNNING,
        Target.phase == in_phase,
        Target.lease_token == holder,
    )
    return int(session.execute(stmt.values(**values)).rowcount)  # type: ignore[attr-defined]


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
    """Many attempt rows in one multi-row INSERT."""
    if rows:
        session.execute(insert(Attempt), list(rows))


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
        .where(Job.state.in_(ACTIVE_JOB_STATES), Job.cancel_requested_at.is_(None))
        .order_by(Job.priority.desc(), Job.created_at)
    )
    return list(session.scalars(stmt))


def bind_outstanding(session: Session, job_ids: Sequence[str], now: datetime) -> dict[str, int]:
    """Per job: targets a worker holds for a bind call, plus those out with the broker and not
    yet claimed; what the dispatcher must count against the horizon. One query."""
    held = and_(Target.state == RUNNING, Target.phase == BIND)
    out = and_(Target.state.in_(WAITING), Target.dispatched_until > now)
    stmt = (
        select(Target.job_id, func.count())
        .where(Target.job_id.in_(job_ids), or_(held, out))
        .group_by(Target.job_id)
    )
    return {job_id: int(n) for job_id, n in session.execute(stmt).all()}


def release_due(
    session: Session, job_id: str, now: datetime, until: datetime, limit: int
) -> list[Due]:
    """Hand up to `limit` of the job's due targets (waiting, due, not already out with the
    broker), oldest due first, to the broker until `until`: select and mark in one statement."""
    due = (
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
        .scalar_subquery()
    )
    rows = session.execute(
        update(Target)
        .where(Target.id.in_(due))
        .values(dispatched_until=until)
        .returning(Target.id, Target.bisect_group, Target.next_attempt_at)
    ).all()
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


def expire_idempotency_keys(
    session: Session,
    before: datetime,
    *,
    owner: str | None = None,
    exclude_owner: str | None = None,
) -> int:
    stmt = delete(IdempotencyKey).where(IdempotencyKey.created_at < before)
    if owner is not None:
        stmt = stmt.where(IdempotencyKey.owner == owner)
    if exclude_owner is not None:
        stmt = stmt.where(IdempotencyKey.owner != exclude_owner)
    result = session.execute(stmt)
    return int(result.rowcount)  # type: ignore[attr-defined]


def request_cancel(session: Session, job_id: str, now: datetime) -> bool:
    """Mark an unfinished job cancelled-on-request; False if it is final or marked already."""
    result = session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            Job.cancel_requested_at.is_(None),
            Job.finished_at.is_(None),
        )
        .values(cancel_requested_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def cancel_waiting(session: Session, deltas: CounterDeltas, job_id: str, now: datetime) -> int:
    """Cancel every waiting target of a job in one statement per state (100k rows are one
    UPDATE, not 100k). Guarded by state like move_target: a target a worker has claimed is
    left to finish its call."""
    cancelled = 0
    for src in (TargetState.PENDING, TargetState.RETRYING):
        result = session.execute(
            update(Target)
            .where(Target.job_id == job_id, Target.state == src.value)
            .values(
                state=TargetState.CANCELLED.value,
                finished_at=now,
                dispatched_until=None,
                error_code="keybind.Cancelled",
                error_message="cancelled before it was called",
            )
            .execution_options(synchronize_session=False)
        )
        n = int(result.rowcount)  # type: ignore[attr-defined]
        if n:
            deltas.add(job_id, src, TargetState.CANCELLED, n)
            cancelled += n
    return cancelled


def cancelling_jobs(session: Session) -> list[str]:
    """Jobs asked to cancel that still have targets open (a call was in flight)."""
    stmt = select(Job.id).where(Job.cancel_requested_at.is_not(None), Job.finished_at.is_(None))
    return list(session.scalars(stmt))


@dataclass(frozen=True, slots=True)
class JobFilter:
    state: str | None = None
    provider: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    tenant: str | None = None  # None: every tenant's jobs (an operator's view)


def list_jobs(
    session: Session,
    flt: JobFilter,
    *,
    before: tuple[datetime, str] | None,
    limit: int,
) -> list[Job]:
    """Jobs newest first; `before` is the (created_at, id) of the last row already seen."""
    stmt = select(Job)
    if flt.state is not None:
        stmt = stmt.where(Job.state == flt.state)
    if flt.provider is not None:
        stmt = stmt.where(Job.provider == flt.provider)
    if flt.created_after is not None:
        stmt = stmt.where(Job.created_at >= flt.created_after)
    if flt.created_before is not None:
        stmt = stmt.where(Job.created_at < flt.created_before)
    if flt.tenant is not None:
        stmt = stmt.where(Job.tenant == flt.tenant)
    if before is not None:
        at, job_id = before
        stmt = stmt.where(or_(Job.created_at < at, (Job.created_at == at) & (Job.id < job_id)))
    stmt = stmt.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
    return list(session.scalars(stmt))


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
            Job.callback_state == "pending",
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
    state: str,
    next_at: datetime | None,
) -> bool:
    """Record one attempt and the callback's next state, if this sender still holds it."""
    result = session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            Job.callback_state == "pending",
            Job.callback_next_at == leased_until,
        )
        .values(callback_state=state, callback_next_at=next_at, version=Job.version + 1)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return False
    session.add(attempt)
    return True


def count_callback_attempts(session: Session, job_id: str) -> int:
    stmt = select(func.count()).where(CallbackAttempt.job_id == job_id)
    return int(session.scalar(stmt) or 0)


def jobs_by_state(session: Session) -> dict[str, int]:
    rows = session.execute(select(Job.state, func.count()).group_by(Job.state))
    return {state: int(n) for state, n in rows}


def targets_by_state(session: Session) -> dict[str, int]:
    """Summed from the job counters: one pass over the jobs table, never over targets."""
    sums = session.execute(
        select(*(func.coalesce(func.sum(col), 0) for col in COUNTER_COLUMN.values()))
    ).one()
    return {state.value: int(n) for state, n in zip(COUNTER_COLUMN, sums, strict=True)}


def attempts_settled_upto(session: Session, after_id: int, started_before: datetime) -> int:
    """The highest attempt id above `after_id` among calls started before `started_before`:
    rows up to it are taken as committed for good (see app/metrics.py)."""
    stmt = select(func.max(Attempt.id)).where(
        Attempt.id > after_id, Attempt.started_at < started_before
    )
    return int(session.scalar(stmt) or after_id)


@dataclass(frozen=True, slots=True)
class CallAggregate:
    provider: str
    action: str
    error_code: str
    count: int
    latency_ms_sum: float
    under: tuple[int, ...]  # calls with latency <= each bucket bound, in bucket order


def call_aggregates(
    session: Session, after_id: int, upto_id: int | None, bounds_ms: Sequence[float]
) -> list[CallAggregate]:
    """Calls with after_id < id <= upto_id, grouped by provider, action and error code."""
    code = func.coalesce(Attempt.error_code, "")
    stmt = (
        select(
            Job.provider,
            Attempt.action,
            code,
            func.count(),
            func.coalesce(func.sum(Attempt.latency_ms), 0.0),
            *(func.sum(case((Attempt.latency_ms <= b, 1), else_=0)) for b in bounds_ms),
        )
        .join(Target, Target.id == Attempt.target_id)
        .join(Job, Job.id == Target.job_id)
        .where(Attempt.id > after_id)
        .group_by(Job.provider, Attempt.action, code)
    )
    if upto_id is not None:
        stmt = stmt.where(Attempt.id <= upto_id)
    return [
        CallAggregate(r[0], r[1], r[2], int(r[3]), float(r[4]), tuple(int(x) for x in r[5:]))
        for r in session.execute(stmt)
    ]


def retry_aggregates(
    session: Session, after_id: int, upto_id: int | None
) -> list[tuple[str, str, int]]:
    """(provider, error code of the call before, n) for every call in the id range that
    repeated an earlier call on the same target: each is one retry, caused by that code."""
    prev = aliased(Attempt)
    prev_id = (
        select(func.max(prev.id))
        .where(prev.target_id == Attempt.target_id, prev.id < Attempt.id)
        .correlate(Attempt)
        .scalar_subquery()
    )
    retried = (
        select(Attempt.target_id.label("target_id"), prev_id.label("prev_id"))
        .where(Attempt.id > after_id)
        .where(Attempt.id <= upto_id if upto_id is not None else true())
        .subquery()
    )
    before = aliased(Attempt)
    code = func.coalesce(before.error_code, "")
    stmt = (
        select(Job.provider, code, func.count())
        .select_from(retried)
        .join(before, before.id == retried.c.prev_id)
        .join(Target, Target.id == retried.c.target_id)
        .join(Job, Job.id == Target.job_id)
        .group_by(Job.provider, code)
    )
    return [(r[0], r[1], int(r[2])) for r in session.execute(stmt)]
