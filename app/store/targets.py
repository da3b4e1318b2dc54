"""Targets: page through a job's, move them (guarded by where they are), find expired leases.

Every move is a `states.Move`, checked against the domain's table before any SQL runs, and
guarded in SQL by its source (state and phase, and the lease holder when given): a duplicate
or late delivery finds the target moved already and changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Update, select, update
from sqlalchemy.orm import Session

from app.domain import codes, states
from app.domain.states import At, Move, Phase, TargetState
from app.store.counters import CounterDeltas
from app.store.models import Target


def list_targets(
    session: Session, job_id: str, *, state: TargetState | None, after_id: int, limit: int
) -> list[Target]:
    stmt = select(Target).where(Target.job_id == job_id, Target.id > after_id)
    if state is not None:
        stmt = stmt.where(Target.state == state.value)
    return list(session.scalars(stmt.order_by(Target.id).limit(limit)))


def guarded(move: Move, holder: str | None, values: dict[str, Any]) -> Update:
    """An UPDATE that makes `move` (with `values`) on targets still where it starts, leased to
    `holder` (None: not checked); the caller adds which targets."""
    states.check_target_move(move)
    stmt = update(Target).where(
        Target.state == move.src.state.value, Target.phase == move.src.phase.value
    )
    if holder is not None:
        stmt = stmt.where(Target.lease_token == holder)
    sets = dict(values)
    if move.dst.state != move.src.state:
        sets["state"] = move.dst.state.value
    if move.dst.phase != move.src.phase:
        sets["phase"] = move.dst.phase.value
    return stmt.values(sets)


def move_targets(
    session: Session,
    deltas: CounterDeltas,
    *,
    target_ids: Sequence[int],
    job_id: str,
    move: Move,
    holder: str | None = None,
    **values: Any,
) -> int:
    """Make `move` on those of `target_ids` (one job's) still where it starts, in one
    statement; returns how many moved. Counter changes go to `deltas`."""
    if not target_ids:
        return 0
    stmt = guarded(move, holder, values).where(Target.id.in_(target_ids))
    moved = int(session.execute(stmt).rowcount)  # type: ignore[attr-defined]
    if moved and move.dst.state != move.src.state:
        deltas.add(job_id, move.src.state, move.dst.state, moved)
    return moved


CANCEL_MOVES = tuple(
    states.check_target_move(Move(At(s, Phase.BIND), At(TargetState.CANCELLED, Phase.BIND)))
    for s in sorted(states.WAITING_TARGET_STATES)
)


def cancel_waiting(session: Session, deltas: CounterDeltas, job_id: str, now: datetime) -> int:
    """Cancel every waiting target of a job in one statement per state (100k rows are one
    UPDATE, not 100k). A target a worker has claimed is left to finish its call."""
    cancelled = 0
    for move in CANCEL_MOVES:
        stmt = (
            guarded(
                move,
                None,
                {
                    "finished_at": now,
                    "dispatched_until": None,
                    "error_code": codes.CANCELLED,
                    "error_message": "cancelled before it was called",
                },
            )
            .where(Target.job_id == job_id)
            .execution_options(synchronize_session=False)
        )
        n = int(session.execute(stmt).rowcount)  # type: ignore[attr-defined]
        if n:
            deltas.add(job_id, move.src.state, TargetState.CANCELLED, n)
            cancelled += n
    return cancelled


def expired_leases(session: Session, now: datetime, limit: int) -> list[Target]:
    """Running targets whose worker's lease ran out, oldest first, locked."""
    stmt = (
        select(Target)
        .where(Target.state == TargetState.RUNNING.value, Target.lease_until < now)
        .order_by(Target.lease_until)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(session.scalars(stmt))
