"""The domain's state model as a specification: who may move where, and how a job ends."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from app.domain.states import (
    CALLBACK_MOVES,
    FINAL_JOB_STATES,
    FINAL_TARGET_STATES,
    JOB_MOVES,
    TARGET_MOVES,
    At,
    CallbackState,
    Counts,
    IllegalMove,
    JobState,
    Move,
    Phase,
    TargetState,
    check_target_move,
    final_job_state,
    may_cancel,
    next_callback_state,
    next_job_state,
)

ALL_AT = [At(s, p) for s in TargetState for p in Phase]


def test_nothing_leaves_a_final_state() -> None:
    assert not [m for m in TARGET_MOVES if m.src.state in FINAL_TARGET_STATES]
    assert not [m for m in JOB_MOVES if m[0] in FINAL_JOB_STATES]
    assert not [m for m in CALLBACK_MOVES if m[0] is not CallbackState.PENDING]


def test_every_open_state_can_reach_a_final_one() -> None:
    """No target can be stranded: from every position a move exists towards an end."""
    reach: dict[At, set[At]] = {a: {m.dst for m in TARGET_MOVES if m.src == a} for a in ALL_AT}
    used = {m.src for m in TARGET_MOVES} | {m.dst for m in TARGET_MOVES}
    for start in used:
        seen, todo = {start}, [start]
        while todo:
            for nxt in reach[todo.pop()] - seen:
                seen.add(nxt)
                todo.append(nxt)
        assert any(a.state.final for a in seen), start


def test_a_target_is_only_ever_called_from_waiting_and_only_verified_after_a_call() -> None:
    into_running = {m.src for m in TARGET_MOVES if m.dst == At(TargetState.RUNNING, Phase.BIND)}
    assert into_running == {
        At(TargetState.PENDING, Phase.BIND),
        At(TargetState.RETRYING, Phase.BIND),
    }
    into_verify = {m.src for m in TARGET_MOVES if m.dst.phase is Phase.VERIFY}
    assert into_verify <= {
        At(TargetState.RUNNING, Phase.BIND),
        At(TargetState.RUNNING, Phase.VERIFY),
    }


@pytest.mark.parametrize(("src", "dst"), list(itertools.product(ALL_AT, ALL_AT)))
def test_check_target_move_allows_exactly_the_table(src: At, dst: At) -> None:
    move = Move(src, dst)
    if src == dst or move in TARGET_MOVES:
        assert check_target_move(move) == move
    else:
        with pytest.raises(IllegalMove):
            check_target_move(move)


@pytest.mark.parametrize(
    ("counts", "cancel_requested", "state"),
    [
        (Counts(succeeded=5), False, JobState.SUCCEEDED),
        (Counts(succeeded=3, failed=2), False, JobState.PARTIAL),
        (Counts(failed=5), False, JobState.FAILED),
        (Counts(succeeded=2, cancelled=3), False, JobState.CANCELLED),
        # The cancel rule: asked to cancel, it ends cancelled even if every call succeeded.
        (Counts(succeeded=5), True, JobState.CANCELLED),
        (Counts(failed=5), True, JobState.CANCELLED),
    ],
)
def test_final_job_state(counts: Counts, cancel_requested: bool, state: JobState) -> None:
    assert final_job_state(counts, cancel_requested=cancel_requested) is state


def test_next_job_state_follows_its_counters() -> None:
    open_ = Counts(pending=1, succeeded=1)
    done = Counts(succeeded=2)
    assert next_job_state(JobState.QUEUED, open_, cancel_requested=False, started=False) is (
        JobState.QUEUED
    )
    assert next_job_state(JobState.QUEUED, open_, cancel_requested=False, started=True) is (
        JobState.RUNNING
    )
    assert next_job_state(JobState.RUNNING, done, cancel_requested=False, started=False) is (
        JobState.SUCCEEDED
    )
    # A final job stays as it ended, whatever its counters do later.
    assert next_job_state(JobState.PARTIAL, done, cancel_requested=True, started=True) is (
        JobState.PARTIAL
    )


def test_every_job_state_the_rule_gives_is_a_legal_move() -> None:
    for state in JobState:
        for counts in (
            Counts(pending=1),
            Counts(succeeded=1),
            Counts(failed=1),
            Counts(cancelled=1),
        ):
            for asked, started in itertools.product((False, True), repeat=2):
                nxt = next_job_state(state, counts, cancel_requested=asked, started=started)
                if nxt is not state and not (state is JobState.QUEUED and not started):
                    assert (state, nxt) in JOB_MOVES, (state, nxt, counts, asked, started)


def test_cancel_is_refused_only_for_a_job_that_ended_on_its_own() -> None:
    assert may_cancel(JobState.RUNNING, cancel_requested=False)
    assert may_cancel(JobState.CANCELLED, cancel_requested=True)  # a repeat is harmless
    assert not may_cancel(JobState.SUCCEEDED, cancel_requested=False)


@pytest.mark.parametrize(
    ("delivered", "refused", "attempt", "state"),
    [
        (True, False, 1, CallbackState.DELIVERED),
        (False, False, 1, CallbackState.PENDING),
        (False, False, 8, CallbackState.FAILED),
        (False, True, 1, CallbackState.FAILED),
    ],
)
def test_callback_state_after_a_post(
    delivered: bool, refused: bool, attempt: int, state: CallbackState
) -> None:
    got = next_callback_state(delivered=delivered, refused=refused, attempt=attempt, max_attempts=8)
    assert got is state
    assert got is CallbackState.PENDING or (CallbackState.PENDING, got) in CALLBACK_MOVES


def test_the_architecture_page_lists_every_target_move() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "architecture.md").read_text()
    for m, why in TARGET_MOVES.items():
        row = f"| `{m.src.state}` ({m.src.phase}) | `{m.dst.state}` ({m.dst.phase}) | {why} |"
        assert row in page
