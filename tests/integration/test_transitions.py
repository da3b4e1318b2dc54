"""Every move the database lets keybind's SQL make is in the domain's tables, and no other.

The triggers of migrations/versions/20261201_transitions.py refuse any UPDATE that moves a
target, a job or a callback somewhere app/domain/states.py does not list. These tests walk
every pair of positions against those triggers, on PostgreSQL and on the embedded SQLite
path, and check that every move the table lists is one some store statement or domain change
makes (no dead entries).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, update
from sqlalchemy.exc import DBAPIError

from app.config import Settings
from app.domain.outcomes import (
    Confirmed,
    Disproved,
    Fail,
    LookLost,
    Release,
    Retry,
    Split,
    Succeed,
    Verify,
    WorkerLost,
)
from app.domain.states import (
    CALLBACK_MOVES,
    JOB_MOVES,
    TARGET_MOVES,
    At,
    CallbackState,
    JobState,
    Move,
    Phase,
    TargetState,
)
from app.migrate import upgrade
from app.runtime import Runtime
from app.store.claims import CLAIM_MOVES
from app.store.db import make_engine, utcnow
from app.store.models import Job, Target
from app.store.targets import CANCEL_MOVES

POSITIONS = [At(s, p) for s in TargetState for p in Phase]
CALLBACK_STATES: list[CallbackState | None] = [None, *CallbackState]


def _job_values(**more: object) -> dict[str, object]:
    now = utcnow()
    values: dict[str, object] = {
        "id": str(uuid.uuid4()),
        "provider": "tencent",
        "account": "default",
        "region": "ap-guangzhou",
        "key_ids": ["skey-3glfot13"],
        "options": {},
        "power_policy": "refuse",
        "batch_size": 1,
        "priority": 0,
        "state": JobState.RUNNING.value,
        "total": 1,
        "version": 0,
        "submitted_by": "t",
        "source": "api",
        "created_at": now,
        "updated_at": now,
    }
    values.update(more)
    return values


def _allowed(
    engine: Engine, table: type[Job] | type[Target], row_id: object, values: dict[str, object]
) -> bool:
    """Whether the database lets one row's UPDATE through (rolled back either way)."""
    with engine.connect() as conn:
        tx = conn.begin()
        try:
            conn.execute(update(table).where(table.id == row_id).values(values))
        except DBAPIError as exc:
            assert "may not move" in str(exc)
            return False
        finally:
            tx.rollback()
    return True


def _target_at(engine: Engine, at: At) -> int:
    with engine.begin() as conn:
        job_id = conn.execute(insert(Job).values(_job_values()).returning(Job.id)).scalar_one()
        return conn.execute(
            insert(Target)
            .values(
                job_id=job_id,
                instance_id="ins-00000001",
                state=at.state.value,
                phase=at.phase.value,
                attempts=0,
                next_attempt_at=utcnow(),
            )
            .returning(Target.id)
        ).scalar_one()


@pytest.fixture(params=["postgresql", "sqlite"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "postgresql":
        rt: Runtime = request.getfixturevalue("rt")
        yield rt.engine
        return
    settings = Settings(home=tmp_path / "home")  # the embedded path: `keybind dev`'s database
    upgrade(settings)
    sqlite = make_engine(settings)
    yield sqlite
    sqlite.dispose()


def test_a_target_makes_exactly_the_moves_the_domain_lists(engine: Engine) -> None:
    wrong = []
    for src in POSITIONS:
        target_id = _target_at(engine, src)
        for dst in POSITIONS:
            if dst == src:
                continue
            values = {"state": dst.state.value, "phase": dst.phase.value}
            if _allowed(engine, Target, target_id, values) != (Move(src, dst) in TARGET_MOVES):
                wrong.append((src, dst))
    assert not wrong


def test_a_job_makes_exactly_the_moves_the_domain_lists(engine: Engine) -> None:
    wrong = []
    for src, dst in itertools.permutations(JobState, 2):
        values = _job_values(state=src.value)
        with engine.begin() as conn:
            conn.execute(insert(Job).values(values))
        allowed = _allowed(engine, Job, values["id"], {"state": dst.value})
        if allowed != ((src, dst) in JOB_MOVES):
            wrong.append((src, dst))
    assert not wrong


def test_a_callback_makes_exactly_the_moves_the_domain_lists(engine: Engine) -> None:
    wrong = []
    for src, dst in itertools.permutations(CALLBACK_STATES, 2):
        values = _job_values(callback_state=src.value if src else None)
        with engine.begin() as conn:
            conn.execute(insert(Job).values(values))
        new = {"callback_state": dst.value if dst else None}
        if _allowed(engine, Job, values["id"], new) != ((src, dst) in CALLBACK_MOVES):
            wrong.append((src, dst))
    assert not wrong


def test_a_target_may_change_anything_else_where_it_is(rt: Runtime) -> None:
    """The guard watches moves only: a look that leaves a target where it is goes through."""
    target_id = _target_at(rt.engine, At(TargetState.RUNNING, Phase.VERIFY))
    later = utcnow() + timedelta(seconds=5)
    assert _allowed(rt.engine, Target, target_id, {"next_attempt_at": later, "state": "running"})


def test_every_move_in_the_table_is_one_keybind_makes() -> None:
    """No dead entries: each listed move is made by a store statement (claim, cancel) or is
    the move of one of the domain's changes."""
    now = utcnow()
    made = {
        *CLAIM_MOVES,
        *CANCEL_MOVES,
        *(Release(s).move for s in (TargetState.PENDING, TargetState.RETRYING)),
        Split("g", "c", "m", None).move,
        Verify(None, look_at=now).move,
        Succeed(None).move,
        Retry("c", "m", None, at=now).move,
        Fail("c", "m", None).move,
        WorkerLost(True, "c", now).move,
        WorkerLost(False, "c", now).move,
        Confirmed(None).move,
        Disproved("c", "m", None).move,
        LookLost(True, now).move,
    }
    assert made == set(TARGET_MOVES)
