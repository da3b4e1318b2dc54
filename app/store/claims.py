"""Claims: a worker leases targets for its call, so no other worker calls for them meanwhile.

A bind claim moves waiting, due targets to running (states: pending/retrying -> running); a
look claim leases targets waiting in the verify phase, which stay running. On PostgreSQL a bind
claim and its job's counters are ONE statement on an autocommit connection (lock, move,
count: one round trip, one transaction); on SQLite, which serialises writers anyway, it runs
in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    DateTime,
    Select,
    String,
    any_,
    bindparam,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from app.domain.claims import Claim, LookClaim
from app.domain.states import (
    WAITING_TARGET_STATES,
    At,
    Move,
    Phase,
    TargetState,
    check_target_move,
)
from app.store.counters import CounterDeltas, counts_update
from app.store.models import Job, Target

CLAIM_MOVES = tuple(
    check_target_move(Move(At(s, Phase.BIND), At(TargetState.RUNNING, Phase.BIND)))
    for s in sorted(WAITING_TARGET_STATES)
)
_WAITING = tuple(m.src.state.value for m in CLAIM_MOVES)
_RUNNING = TargetState.RUNNING.value
_CLAIM_COLUMNS = (
    Target.id,
    Target.job_id,
    Target.instance_id,
    Target.attempts,
    Target.first_attempt_at,
    Target.bisect_calls,
)


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
    """Lease to `token` the waiting, due targets among `target_ids` of the first one's job (a
    batch is always one job's), in the caller's transaction; counter changes go to `deltas`.
    SQLite's path (`claim_targets_at_once` is PostgreSQL's)."""
    if not target_ids:
        return []
    first_job = select(Target.job_id).where(Target.id == target_ids[0]).scalar_subquery()
    claimable = select(Target.id, Target.state).where(
        Target.id.in_(target_ids),
        Target.job_id == first_job,
        Target.state.in_(_WAITING),
        Target.phase == Phase.BIND.value,
        Target.next_attempt_at <= now,
    )
    prior = dict(session.execute(claimable).tuples().all())
    if not prior:
        return []
    # SQLite's RETURNING cannot name a FROM table, hence the prior states read just before.
    moved = session.execute(
        update(Target)
        .where(Target.id.in_(list(prior)), Target.state.in_(_WAITING))
        .values(
            state=_RUNNING,
            lease_until=lease_until,
            lease_token=token,
            dispatched_until=None,
            first_attempt_at=func.coalesce(Target.first_attempt_at, now),
        )
        .returning(*_CLAIM_COLUMNS)
    ).tuples()
    claims = _claims([(*r, prior[r[0]]) for r in moved], token)
    for c in claims:
        deltas.add(c.job_id, c.prior_state, TargetState.RUNNING)
    return claims


_IDS = bindparam("ids", type_=ARRAY(BigInteger))
_NOW = bindparam("now", type_=DateTime(timezone=True))


@cache
def _claim_statement() -> Select[Any]:
    # Built once, with bound parameters (arrays keep the shape independent of the batch size):
    # building a statement this size costs SQLAlchemy more CPU than PostgreSQL spends on it.
    first_job = select(Target.job_id).where(Target.id == bindparam("first")).scalar_subquery()
    picked = (
        select(Target.id, Target.state.label("prior"))
        .where(
            Target.id == any_(_IDS),
            Target.job_id == first_job,
            Target.state.in_(_WAITING),
            Target.phase == Phase.BIND.value,
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
            state=_RUNNING,
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

    deltas: dict[TargetState, Any] = {m.src.state: -n(m.src.state.value) for m in CLAIM_MOVES}
    deltas[TargetState.RUNNING] = n()
    job = select(moved.c.job_id).limit(1).scalar_subquery()
    counted = counts_update(job, deltas, _NOW, started=True).returning(Job.id).cte("counted")
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


def claim_looks(
    session: Session, target_ids: Sequence[int], now: datetime, *, token: str, lease_until: datetime
) -> list[LookClaim]:
    """Lease every target among `target_ids` that waits in the verify phase and is due, in one
    guarded statement; a duplicate delivery finds them leased and gets nothing."""
    stmt = (
        update(Target)
        .where(
            Target.id.in_(target_ids),
            Target.state == _RUNNING,
            Target.phase == Phase.VERIFY.value,
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
        LookClaim(
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
