"""Writing the domain's changes (domain/outcomes.py) to claimed targets, with their attempts.

A turn's changes are gathered per identical change and written as one statement each: a call
of 100 that succeeded is one UPDATE, not 100. When the whole turn is one change on
PostgreSQL, the attempts rows, the guarded move and the job's counters are ONE statement on
an autocommit connection (`Writes.flush_at_once`); otherwise they go in one transaction
(`Writes.flush`). Every write is guarded by the lease: a worker whose lease ran out (the
sweeper handed the target on) changes nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any, assert_never

from sqlalchemy import (
    BigInteger,
    Connection,
    DateTime,
    Float,
    Integer,
    Select,
    String,
    Text,
    any_,
    bindparam,
    func,
    insert,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from app.domain import codes
from app.domain.calls import CallResult
from app.domain.outcomes import (
    Change,
    Confirmed,
    Disproved,
    Fail,
    LookAgain,
    LookLost,
    Release,
    Retry,
    Split,
    Succeed,
    Unlooked,
    Verify,
    WorkerLost,
)
from app.domain.states import Move, check_target_move
from app.store.counters import CounterDeltas, counts_update
from app.store.models import Attempt, Job, Target
from app.store.targets import guarded, move_targets

log = logging.getLogger(__name__)
_FREE: dict[str, Any] = {"lease_until": None, "lease_token": None}


@dataclass(frozen=True, slots=True)
class Write:
    """A change as the store makes it: the move, the columns set, the columns counted up."""

    move: Move
    values: dict[str, Any]
    count: tuple[str, ...] = ()


def _notes(notes: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {"notes": dict(notes)} if notes else {}
    if "previous_key" in notes:
        values["previous_key"] = notes["previous_key"]  # its own column: JD replace
    return values


def _error(code: str | None, message: str | None) -> dict[str, Any]:
    return {"error_code": code, "error_message": message}


def _done(code: str | None, message: str | None, now: datetime) -> dict[str, Any]:
    return {**_error(code, message), "finished_at": now}


def write_for(change: Change, now: datetime) -> Write:
    """The columns one change sets on its target."""
    values: dict[str, Any]
    match change:
        case Release():
            values = {**_FREE, "dispatched_until": None, "next_attempt_at": now}
            return Write(change.move, values)
        case Split():
            values = {**_FREE, **_error(change.code, change.message), "next_attempt_at": now}
            values.update(request_id=change.request_id, bisect_group=change.group)
            # The call included it, so it is an attempt; it says nothing about this
            # instance, so it does not count towards giving up (bisect_calls).
            return Write(change.move, values, ("attempts", "bisect_calls"))
        case Verify():
            values = {**_notes(change.notes), **_FREE, **_error(None, None)}
            values.update(
                request_id=change.request_id,
                dispatched_until=None,
                next_attempt_at=change.look_at,
                verify_started_at=now,
                verify_checks=0,
                bisect_group=None,
            )
            return Write(change.move, values, ("attempts",))
        case Succeed() | Fail() | Retry():
            code, message = (
                (None, None) if isinstance(change, Succeed) else (change.code, change.message)
            )
            values = {**_notes(change.notes), **_FREE, **_error(code, message)}
            values.update(request_id=change.request_id, bisect_group=None)
            if isinstance(change, Retry):
                values["next_attempt_at"] = change.at
            else:
                values["finished_at"] = now
            return Write(change.move, values, ("attempts",))
        case WorkerLost():
            values = {**_FREE, **_error(change.code, change.message), "next_attempt_at": change.at}
            if change.give_up:
                values["finished_at"] = now
            return Write(change.move, values, ("attempts",))
        case Unlooked():
            return Write(change.move, {**_FREE, "next_attempt_at": now})
        case Confirmed() | Disproved():
            code, message = (
                (None, None) if isinstance(change, Confirmed) else (change.code, change.message)
            )
            values = {**_notes(change.notes), **_FREE, **_done(code, message, now)}
            values["verify_request_id"] = change.request_id
            return Write(change.move, values)
        case LookAgain():
            code, message = (
                (change.error.code, change.error.message) if change.error else (None, None)
            )
            values = {**_notes(change.notes), **_FREE, **_error(code, message)}
            values.update(verify_request_id=change.request_id, next_attempt_at=change.at)
            return Write(change.move, values, ("verify_checks",))
        case LookLost():
            if change.give_up:
                values = {**_FREE, **_done(codes.VERIFY_TIMEOUT, change.message, now)}
                return Write(change.move, values)
            return Write(change.move, {**_FREE, "next_attempt_at": change.at}, ("verify_checks",))
    assert_never(change)


def _key(write: Write) -> tuple[Any, ...]:
    frozen = tuple(
        sorted(
            (k, json.dumps(v, sort_keys=True) if isinstance(v, dict) else v)
            for k, v in write.values.items()
        )
    )
    return (write.move, write.count, frozen)


@dataclass
class Writes:
    """One turn's changes to targets of one job leased to `holder`, grouped per identical
    write."""

    job_id: str
    holder: str
    groups: dict[tuple[Any, ...], tuple[Write, list[int]]] = field(default_factory=dict)

    def add(self, target_id: int, change: Change, now: datetime) -> None:
        write = write_for(change, now)
        check_target_move(write.move)
        self.groups.setdefault(_key(write), (write, []))[1].append(target_id)

    def flush_at_once(
        self, conn: Connection, attempts: Sequence[dict[str, Any]], now: datetime
    ) -> None:
        """The one group of changes, the attempts and the counters as one statement."""
        ((write, ids),) = self.groups.values()
        moved = record_at_once(
            conn,
            job_id=self.job_id,
            holder=self.holder,
            target_ids=ids,
            write=write,
            attempts=attempts,
            now=now,
        )
        _lost(len(ids) - moved)
        self.groups.clear()

    def flush(self, session: Session, deltas: CounterDeltas) -> None:
        for write, ids in self.groups.values():
            _lost(len(ids) - _apply(session, deltas, write, ids, self.job_id, self.holder))
        self.groups.clear()


def _apply(
    session: Session,
    deltas: CounterDeltas,
    write: Write,
    target_ids: Sequence[int],
    job_id: str,
    holder: str | None,
) -> int:
    """Make one write on targets of one job in the caller's transaction; how many moved."""
    values = dict(write.values)
    for column in write.count:
        values[column] = getattr(Target, column) + 1
    return move_targets(
        session,
        deltas,
        target_ids=target_ids,
        job_id=job_id,
        move=write.move,
        holder=holder,
        **values,
    )


def _lost(n: int) -> None:
    if n:
        # Our lease ran out and the sweeper handed them on; the call still happened and is on
        # record as an attempt.
        log.warning("lease lost for %d targets before recording", n)


def write_one(
    session: Session,
    deltas: CounterDeltas,
    *,
    target_id: int,
    job_id: str,
    holder: str | None,
    change: Change,
    now: datetime,
) -> bool:
    """One target's change, in the caller's transaction (the sweeper's way)."""
    return _apply(session, deltas, write_for(change, now), [target_id], job_id, holder) == 1


def attempt_rows(
    target_ids: Mapping[str, int], calls: Sequence[CallResult]
) -> list[dict[str, Any]]:
    """One attempts row per call per claimed instance it covered (`target_ids`: by instance)."""
    rows: list[dict[str, Any]] = []
    for call in calls:
        for iid in call.instance_ids:
            target_id = target_ids.get(iid)
            if target_id is None:
                continue
            error = call.error_for(iid)
            rows.append(
                {
                    "target_id": target_id,
                    "action": call.action,
                    "started_at": call.started_at,
                    "latency_ms": call.latency_ms,
                    "http_status": call.http_status,
                    "request_id": call.request_id,
                    "error_code": error.code if error else None,
                    "error_message": error.message if error else None,
                }
            )
    return rows


def add_attempts(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Many attempt rows in one multi-row INSERT."""
    if rows:
        session.execute(insert(Attempt), list(rows))


# The record statement is built once per shape, with bound parameters, and reused (parameter
# names are never column names: SQLAlchemy would add those to an UPDATE's SET): building a
# statement this size costs SQLAlchemy more CPU than PostgreSQL spends running it. Arrays
# (= ANY, unnest) keep the shape independent of the batch size.
_ATTEMPT_ARRAYS: dict[str, ARRAY[Any]] = {
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


@lru_cache(maxsize=64)
def _record_statement(
    move: Move, keys: tuple[str, ...], count: tuple[str, ...], with_attempts: bool
) -> Select[Any]:
    columns = Target.__table__.c
    sets: dict[str, Any] = {k: bindparam(f"v_{k}", type_=columns[k].type) for k in keys}
    for column in count:
        sets[column] = getattr(Target, column) + 1
    moved = (
        guarded(move, None, sets)
        .where(Target.id == any_(_IDS), Target.lease_token == bindparam("holder"))
        .returning(Target.id)
        .cte("moved")
    )
    ctes = []
    if with_attempts:
        arrays: list[Any] = [bindparam(f"a_{c}", type_=t) for c, t in _ATTEMPT_ARRAYS.items()]
        source = func.unnest(*arrays).table_valued(*_ATTEMPT_ARRAYS).render_derived()
        noted = insert(Attempt).from_select(list(_ATTEMPT_ARRAYS), select(source))
        ctes.append(noted.returning(Attempt.id).cte("noted"))
    if move.dst.state != move.src.state:
        n = select(func.count()).select_from(moved).scalar_subquery()
        deltas = {move.src.state: -n, move.dst.state: n}
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
    write: Write,
    attempts: Sequence[dict[str, Any]],
    now: datetime,
) -> int:
    """One write to many targets as ONE PostgreSQL statement on an autocommit connection: the
    attempts rows, the guarded move and the job's counters. Returns how many targets were still
    ours and moved."""
    keys = tuple(sorted(write.values))
    stmt = _record_statement(write.move, keys, write.count, bool(attempts))
    params: dict[str, Any] = {"ids": list(target_ids), "holder": holder, "job": job_id, "now": now}
    params.update({f"v_{k}": write.values[k] for k in keys})
    params.update({f"a_{c}": [r[c] for r in attempts] for c in _ATTEMPT_ARRAYS})
    return int(conn.execute(stmt, params).scalar_one())
