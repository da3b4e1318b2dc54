"""Jobs: insert with their targets, read one (status, version), list, mark cancel requested."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, insert, or_, select, update
from sqlalchemy.orm import Session

from app.domain.states import TargetState
from app.store.models import CallbackAttempt, Job, Target


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
        # One text block rather than a row at a time: formatting 100k rows one by one costs
        # more than PostgreSQL's work to store them.
        tail = f"\t{TargetState.PENDING.value}\t0\t{now.isoformat()}\n"
        head = f"{job_id}\t"
        copy.write("".join(head + _copy_text(iid) + tail for iid in instance_ids))


def _copy_text(value: str) -> str:
    """A value in COPY's text format (IDs are validated, but a provider's pattern may allow
    characters that COPY treats specially)."""
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        value = value.replace("\\", "\\\\").replace("\t", "\\t")
        value = value.replace("\n", "\\n").replace("\r", "\\r")
    return value


def get_job(session: Session, job_id: str) -> Job | None:
    return session.get(Job, job_id)


# What a status poll reads: every column but the few the view never shows, straight from
# the table (Core: no ORM identity map or instrumented attributes); one primary-key lookup.
_JOBS = Job.__table__.c
_NOT_SHOWN = frozenset({"options", "priority", "tenant", "updated_at", "callback_next_at"})
_STATUS_COLUMNS = [c for c in _JOBS if c.name not in _NOT_SHOWN]
_CALLBACKS = CallbackAttempt.__table__.c
# Built once (a poll only binds the id and tenant). The callback attempts come in the same
# statement, so the job and its attempts are one snapshot: a callback recorded between two
# reads could otherwise show under the job's older version.
_STATUS = (
    select(
        *_STATUS_COLUMNS,
        _CALLBACKS.attempt.label("cb_attempt"),
        _CALLBACKS.started_at.label("cb_at"),
        _CALLBACKS.http_status.label("cb_http_status"),
        _CALLBACKS.error.label("cb_error"),
        _CALLBACKS.latency_ms.label("cb_latency_ms"),
    )
    .select_from(Job.__table__.outerjoin(CallbackAttempt.__table__))
    .where(_JOBS.id == bindparam("job_id"))
    .order_by(_CALLBACKS.id)
)
_STATUS_OF_TENANT = _STATUS.where(_JOBS.tenant == bindparam("tenant"))


@dataclass(frozen=True, slots=True)
class CallbackRow:
    attempt: int
    started_at: datetime
    http_status: int | None
    error: str | None
    latency_ms: float


@dataclass(frozen=True, slots=True)
class JobStatus:
    job: Row[*tuple[Any, ...]]  # the view's columns and `version`
    callbacks: list[CallbackRow]


def job_status(conn: Connection, job_id: str, tenant: str | None) -> JobStatus | None:
    """The job's status columns, version and callback attempts in one statement, if it
    exists and `tenant` may see it (None: any job). Another tenant's job is None, exactly
    like a missing one."""
    if tenant is None:
        rows = conn.execute(_STATUS, {"job_id": job_id}).all()
    else:
        rows = conn.execute(_STATUS_OF_TENANT, {"job_id": job_id, "tenant": tenant}).all()
    if not rows:
        return None
    calls = [
        CallbackRow(r.cb_attempt, r.cb_at, r.cb_http_status, r.cb_error, r.cb_latency_ms)
        for r in rows
        if r.cb_attempt is not None
    ]
    return JobStatus(rows[0], calls)


def job_version(session: Session, job_id: str, tenant: str | None) -> int | None:
    stmt = select(Job.version).where(Job.id == job_id)
    if tenant is not None:
        stmt = stmt.where(Job.tenant == tenant)
    return session.scalar(stmt)


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
