"""All SQL for jobs and targets. Callers own the transaction; nothing here commits."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache, lru_cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    DateTime,
    Float,
    Integer,
    Row,
    String,
    Text,
    Update,
    and_,
    any_,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, aliased

from app.jobs.batching import Due
from app.jobs.models import Attempt, CallbackAttempt, IdempotencyKey, Job, Target
from app.jobs.states import (
    WAITING_TARGET_STATES,
    JobState,
    TargetState,
    can_move,
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
    job: Row[Any]  # the view's columns and `version`
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


def counts_update(
    job_id: Any, deltas: Mapping[TargetState, Any], now: datetime, *, started: bool
) -> Update:
    """The one UPDATE of a job row for target moves: counters (`deltas` may be numbers or SQL
    expressions), version, queued -> running when `started` (targets moved to running), and
    the final state once no target is open (final_job_state, in SQL: every SET reads the row
    as it was, so the whole change is atomic)."""
    new = {s: COUNTER_COLUMN[s] + deltas.get(s, 0) for s in TargetState}
    still_open = new[TargetState.PENDING] + new[TargetState.RUNNING] + new[TargetState.RETRYING]
    final = case(
        # A job asked to cancel ends cancelled, even if its last calls all succeeded.
        (Job.cancel_requested_at.is_not(None), JobState.CANCELLED.value),
        (new[TargetState.CANCELLED] > 0, JobState.CANCELLED.value),
        (new[TargetState.FAILED] == 0, JobState.SUCCEEDED.value),
        (new[TargetState.SUCCEEDED] > 0, JobState.PARTIAL.value),
        else_=JobState.FAILED.value,
    )
    done = and_(Job.state.in_(ACTIVE_JOB_STATES), still_open == 0)
    values: dict[Any, Any] = {COUNTER_COLUMN[s]: new[s] for s in deltas}
    values[Job.version] = Job.version + 1
    values[Job.updated_at] = now
    running = JobState.RUNNING.value if started else Job.state
    values[Job.state] = case(
        (done, final), (Job.state == JobState.QUEUED.value, running), else_=Job.state
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
        # Even with no count changed the version moves: a cancel request changes the job.
        counts = {s: n for s, n in deltas.by_job[job_id].items() if n}
        started = counts.get(TargetState.RUNNING, 0) > 0
        session.execute(counts_update(job_id, counts, now, started=started))
    deltas.by_job.clear()


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


_CLAIM_COLUMNS = (
    Target.id,
    Target.job_id,
    Target.instance_id,
    Target.attempts,
    Target.first_attempt_at,
    Target.bisect_calls,
)


def _claimable(target_ids: Sequence[int], now: datetime) -> Any:
    """The waiting, due targets among `target_ids` of the first one's job, locked in id order
    (a batch is always one job's), with the state each is in."""
    first_job = select(Target.job_id).where(Target.id == target_ids[0]).scalar_subquery()
    return (
        select(Target.id, Target.state.label("prior"))
        .where(
            Target.id.in_(target_ids),
            Target.job_id == first_job,
            Target.state.in_(WAITING),
            Target.next_attempt_at <= now,
        )
        .order_by(Target.id)
        .with_for_update(skip_locked=True)
    )


def _lease(now: datetime, lease_until: datetime, token: str) -> dict[str, Any]:
    return {
        "state": TargetState.RUNNING.value,
        "lease_until": lease_until,
        "lease_token": token,
        "dispatched_until": None,
        "first_attempt_at": func.coalesce(Target.first_attempt_at, now),
    }


def _claims(rows: Sequence[Any], token: str) -> list[Claim]:
    """Rows of _CLAIM_COLUMNS plus the prior state, in id order."""
    return [
        Claim(
            target_id=r[0],
            job_id=r[1],
            instance_id=r[2],
            attempts=r[3],
            first_attempt_at=r[4],
            bisect_calls=r[5],
            prior_state=TargetState(r[6]),
            lease_token=token,
        )
        for r in sorted(rows)
    ]


def claim_targets(
    session: Session,
    deltas: CounterDeltas,
    target_ids: Sequence[int],
    *,
    now: datetime,
    lease_until: datetime,
    token: str,
) -> list[Claim]:
    """Lease to `token` the targets among `target_ids` that are waiting and due (see
    `_claimable`), in the caller's transaction; counter changes go to `deltas`."""
    if not target_ids:
        return []
    claimable = _claimable(target_ids, now)
    if session.get_bind().dialect.name == "postgresql":
        picked = claimable.cte("picked")
        rows = session.execute(
            update(Target)
            .where(Target.id == picked.c.id)
            .values(_lease(now, lease_until, token))
            .returning(*_CLAIM_COLUMNS, picked.c.prior)
        ).all()
    else:  # SQLite's RETURNING cannot name the FROM table; it serialises writers anyway
        prior = dict(session.execute(claimable).tuples().all())
        rows = [
            (*r, prior[r[0]])
            for r in session.execute(
                update(Target)
                .where(Target.id.in_(list(prior)))
                .values(_lease(now, lease_until, token))
                .returning(*_CLAIM_COLUMNS)
            ).tuples()
        ]
    claims = _claims(rows, token)
    for c in claims:
        deltas.add(c.job_id, c.prior_state, TargetState.RUNNING)
    return claims


# The bind turn's two statements are built once per shape, with bound parameters, and reused
# (parameter names are never column names: SQLAlchemy would add those to an UPDATE's SET):
# building a statement this size costs SQLAlchemy more CPU than PostgreSQL spends running it.
# Arrays (= ANY, unnest) keep the shape independent of the batch size.
_ATTEMPT_ARRAYS = {
    "target_id": ARRAY(BigInteger),
    "action": ARRAY(String),
    "started_at": ARRAY(DateTime(timezone=True)),
    "latency_ms": ARRAY(Float),
    "http_status": ARRAY(Integer),
    "request_id": ARRAY(String),
    "error_code": ARRAY(String),
    "error_message": ARRAY(Text),
}
_IDS = bindparam("ids", type_=ARRAY(BigInteger))
_NOW = bindparam("now", type_=DateTime(timezone=True))


@cache
def _claim_statement() -> Any:
    first_job = select(Target.job_id).where(Target.id == bindparam("first")).scalar_subquery()
    picked = (
        select(Target.id, Target.state.label("prior"))
        .where(
            Target.id == any_(_IDS),
            Target.job_id == first_job,
            Target.state.in_(WAITING),
            Target.next_attempt_at <= _NOW,
        )
        .order_by(Target.id)
        .with_for_update(skip_locked=True)
        .cte("picked")
    )
    moved = (
        update(Target)
        .where(Target.id == picked.c.id)
        .values(
            state=TargetState.RUNNING.value,
            lease_until=bindparam("until", type_=DateTime(timezone=True)),
            lease_token=bindparam("token", type_=String),
            dispatched_until=None,
            first_attempt_at=func.coalesce(Target.first_attempt_at, _NOW),
        )
        .returning(*_CLAIM_COLUMNS, picked.c.prior)
        .cte("moved")
    )

    def n(prior: str | None = None) -> Any:
        stmt = select(func.count()).select_from(moved)
        return (stmt if prior is None else stmt.where(moved.c.prior == prior)).scalar_subquery()

    counted = (
        counts_update(
            select(moved.c.job_id).limit(1).scalar_subquery(),
            {
                TargetState.PENDING: -n(TargetState.PENDING.value),
                TargetState.RETRYING: -n(TargetState.RETRYING.value),
                TargetState.RUNNING: n(),
            },
            _NOW,
            started=True,
        )
        .returning(Job.id)
        .cte("counted")
    )
    return select(moved).add_cte(counted)


def claim_targets_at_once(
    conn: Connection,
    target_ids: Sequence[int],
    *,
    now: datetime,
    lease_until: datetime,
    token: str,
) -> list[Claim]:
    """`claim_targets` and the job's counters as ONE PostgreSQL statement on an autocommit
    connection: lock, move, count, in a single round trip and a single transaction."""
    if not target_ids:
        return []
    params = {
        "ids": list(target_ids),
        "first": target_ids[0],
        "now": now,
        "until": lease_until,
        "token": token,
    }
    return _claims(conn.execute(_claim_statement(), params).all(), token)


@lru_cache(maxsize=64)
def _record_statement(
    dst: TargetState | None,
    keys: tuple[str, ...],
    count: tuple[str, ...],
    with_attempts: bool,
) -> Any:
    guard = [
        Target.id == any_(_IDS),
        Target.state == RUNNING,
        Target.lease_token == bindparam("holder"),
    ]
    columns = Target.__table__.c
    sets: dict[str, Any] = {k: bindparam(f"v_{k}", type_=columns[k].type) for k in keys}
    for column in count:
        sets[column] = getattr(Target, column) + 1
    if dst is None:
        guard.append(Target.phase == bindparam("in_phase"))
    else:
        sets["state"] = dst.value
    moved = update(Target).where(*guard).values(sets).returning(Target.id).cte("moved")
    ctes = []
    if with_attempts:
        arrays = [bindparam(f"a_{c}", type_=t) for c, t in _ATTEMPT_ARRAYS.items()]
        source = func.unnest(*arrays).table_valued(*_ATTEMPT_ARRAYS).render_derived()
        noted = insert(Attempt).from_select(list(_ATTEMPT_ARRAYS), select(source))
        ctes.append(noted.returning(Attempt.id).cte("noted"))
    if dst is not None:
        n = select(func.count()).select_from(moved).scalar_subquery()
        deltas = {TargetState.RUNNING: -n, dst: n}
        job = bindparam("job", type_=String)
        ctes.append(
            counts_update(job, deltas, _NOW, started=False).returning(Job.id).cte("counted")
        )
    stmt = select(func.count()).select_from(moved)
    return stmt.add_cte(*ctes) if ctes else stmt


def record_at_once(
    conn: Connection,
    *,
    job_id: str,
    holder: str,
    target_ids: Sequence[int],
    dst: TargetState | None,
    in_phase: str,
    values: Mapping[str, Any],
    count: tuple[str, ...],
    attempts: Sequence[dict[str, Any]],
    now: datetime,
) -> int:
    """A turn's results when every target got the same change, as ONE PostgreSQL statement on
    an autocommit connection: the attempts rows, the guarded move (`dst` None: the targets
    stay running, e.g. into the verify phase; `count`: columns incremented) and the job's
    counters. Returns how many targets were still ours and moved."""
    if dst is not None and not can_move(TargetState.RUNNING, dst):
        raise ValueError(f"target may not move running -> {dst}")
    keys = tuple(sorted(values))
    stmt = _record_statement(dst, keys, count, bool(attempts))
    params: dict[str, Any] = {
        "ids": list(target_ids),
        "holder": holder,
        "in_phase": in_phase,
        "job": job_id,
        "now": now,
    }
    params.update({f"v_{k}": values[k] for k in keys})
    params.update({f"a_{c}": [r[c] for r in attempts] for c in _ATTEMPT_ARRAYS})
    return int(conn.execute(stmt, params).scalar_one())


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
