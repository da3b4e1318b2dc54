"""A job's counters and state, changed in the same statement or transaction as its targets.

A status poll reads one row instead of counting 100k targets, so every target move adds to the
counters of its job, and the job's state follows from them in the same UPDATE: running once a
target is claimed, final once none is open. The state rule is the domain's
(`states.next_job_state`, `states.FINAL_STATE_RULES`), rendered here as one SQL CASE.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Update, and_, case, func, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from app.domain.states import (
    ACTIVE_JOB_STATES,
    FINAL_OTHERWISE,
    FINAL_STATE_RULES,
    Fact,
    JobState,
    TargetState,
)
from app.store.models import Job

COUNTER_COLUMN: dict[TargetState, InstrumentedAttribute[int]] = {
    TargetState.PENDING: Job.n_pending,
    TargetState.RUNNING: Job.n_running,
    TargetState.RETRYING: Job.n_retrying,
    TargetState.SUCCEEDED: Job.n_succeeded,
    TargetState.FAILED: Job.n_failed,
    TargetState.CANCELLED: Job.n_cancelled,
}
ACTIVE = tuple(s.value for s in ACTIVE_JOB_STATES)


@dataclass
class CounterDeltas:
    """Per-job state-count changes gathered from guarded target moves, applied once."""

    by_job: defaultdict[str, Counter[TargetState]] = field(
        default_factory=lambda: defaultdict(Counter)
    )

    def add(self, job_id: str, src: TargetState, dst: TargetState, n: int = 1) -> None:
        self.by_job[job_id][src] -= n
        self.by_job[job_id][dst] += n

    def touch(self, job_id: str) -> None:
        """Change the job (its version) even with no count changed."""
        self.by_job.setdefault(job_id, Counter())


def _fact(fact: Fact, new: Mapping[TargetState, Any]) -> ColumnElement[bool]:
    """`states.holds` in SQL, over the counters as they will be."""
    match fact:
        case Fact.CANCEL_REQUESTED:
            return Job.cancel_requested_at.is_not(None)
        case Fact.ANY_CANCELLED:
            return new[TargetState.CANCELLED] > 0  # type: ignore[no-any-return]
        case Fact.NONE_FAILED:
            return new[TargetState.FAILED] == 0  # type: ignore[no-any-return]
        case Fact.ANY_SUCCEEDED:
            return new[TargetState.SUCCEEDED] > 0  # type: ignore[no-any-return]


def final_state_sql(new: Mapping[TargetState, Any]) -> Any:
    """`states.final_job_state` as a CASE over the counters `new` (numbers or expressions)."""
    whens = [(_fact(fact, new), state.value) for fact, state in FINAL_STATE_RULES]
    return case(*whens, else_=FINAL_OTHERWISE.value)


def counts_update(
    job_id: Any, deltas: Mapping[TargetState, Any], now: Any, *, started: bool
) -> Update:
    """The one UPDATE of a job row for target moves: counters (`deltas` may be numbers or SQL
    expressions), version, and the state `states.next_job_state` gives (`started`: targets
    moved to running). Every SET reads the row as it was, so the whole change is atomic."""
    new = {s: COUNTER_COLUMN[s] + deltas.get(s, 0) for s in TargetState}
    still_open = new[TargetState.PENDING] + new[TargetState.RUNNING] + new[TargetState.RETRYING]
    done = and_(Job.state.in_(ACTIVE), still_open == 0)
    values: dict[Any, Any] = {COUNTER_COLUMN[s]: new[s] for s in deltas}
    values[Job.version] = Job.version + 1
    values[Job.updated_at] = now
    running = JobState.RUNNING.value if started else Job.state
    values[Job.state] = case(
        (done, final_state_sql(new)),
        (Job.state == JobState.QUEUED.value, running),
        else_=Job.state,
    )
    if started:
        values[Job.started_at] = func.coalesce(Job.started_at, now)
    values[Job.finished_at] = case(
        (done, func.coalesce(Job.finished_at, now)), else_=Job.finished_at
    )
    return update(Job).where(Job.id == job_id).values(values)


def apply_counts(session: Session, deltas: CounterDeltas, now: datetime) -> None:
    """Apply gathered count changes; a job left with no open target gets its final state.

    One statement per job, so the job row's lock (every worker's every transaction ends
    here) is held for as short as possible."""
    for job_id in sorted(deltas.by_job):  # fixed order: two writers cannot deadlock on jobs
        counts = {s: n for s, n in deltas.by_job[job_id].items() if n}
        started = counts.get(TargetState.RUNNING, 0) > 0
        session.execute(counts_update(job_id, counts, now, started=started))
    deltas.by_job.clear()
