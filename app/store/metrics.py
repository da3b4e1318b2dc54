"""Aggregates for /metrics: jobs and targets by state (from the counters), calls and retries
(from the attempts table, folded incrementally: see app/api/metrics.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, select, true
from sqlalchemy.orm import Session, aliased

from app.store.counters import COUNTER_COLUMN
from app.store.models import Attempt, Job, Target


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
    rows up to it are taken as committed for good (see app/api/metrics.py)."""
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
