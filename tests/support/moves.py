"""Moving targets by hand in tests, as a worker's claim and record would (bind phase)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from app.domain.states import At, Move, Phase, TargetState
from app.store.counters import CounterDeltas
from app.store.targets import move_targets


def move(
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
    """One target from `src` to `dst` (still in the bind phase), guarded like the store's own."""
    m = Move(At(src, Phase.BIND), At(dst, Phase.BIND))
    moved = move_targets(
        session, deltas, target_ids=[target_id], job_id=job_id, move=m, holder=holder, **values
    )
    return moved == 1
