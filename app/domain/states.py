"""Every state a target, a job and a job's callback can be in, and every move between them.

Read this file to learn what may happen to a job. Pure: no I/O. The store makes only the
moves listed here: its guarded SQL takes its states from these tables, the database refuses
any other move (a trigger per table, migrations/versions/20261201_transitions.py), and
tests/integration/test_transitions.py walks every pair of positions against that trigger.
A new state goes here first, then into a migration that updates the triggers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple


class TargetState(StrEnum):
    """One instance of a job."""

    PENDING = "pending"  # not called yet
    RUNNING = "running"  # a worker holds it for a call, or the cloud accepted it (see Phase)
    RETRYING = "retrying"  # a call failed in a way worth repeating; due again at next_attempt_at
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in FINAL_TARGET_STATES


class Phase(StrEnum):
    """Where a target is in its bind: the call itself, or confirming what the call started."""

    BIND = "bind"  # waiting for, or in, its bind call
    VERIFY = "verify"  # the cloud accepted the bind; looks at the instance confirm it


FINAL_TARGET_STATES = frozenset({TargetState.SUCCEEDED, TargetState.FAILED, TargetState.CANCELLED})
# Targets the dispatcher may release and a worker may claim once due; cancel takes them too.
WAITING_TARGET_STATES = frozenset({TargetState.PENDING, TargetState.RETRYING})
OPEN_TARGET_STATES = frozenset(set(TargetState) - FINAL_TARGET_STATES)


class At(NamedTuple):
    """Where a target is: its state and phase."""

    state: TargetState
    phase: Phase


class Move(NamedTuple):
    src: At
    dst: At


def _m(src: TargetState, dst: TargetState, phase: Phase = Phase.BIND) -> Move:
    return Move(At(src, phase), At(dst, phase))


P, R, Y = TargetState.PENDING, TargetState.RUNNING, TargetState.RETRYING
S, F, C = TargetState.SUCCEEDED, TargetState.FAILED, TargetState.CANCELLED

# Every move a target may make, and why it makes it. Nothing leaves a final state.
TARGET_MOVES: Mapping[Move, str] = {
    _m(P, R): "a worker claims it for its first bind call",
    _m(Y, R): "a worker claims it again once its backoff is over",
    _m(P, C): "its job was cancelled before it was called",
    _m(Y, C): "its job was cancelled while it waited to be called again",
    _m(R, P): "the limiter had no slot: handed back uncalled, as it was",
    _m(R, Y): "a retryable error, a call split to find a bad instance, or its worker died",
    _m(R, S): "the bind call's answer is final (a cloud without a verify phase)",
    _m(R, F): "an error retrying cannot fix, or out of attempts or time",
    Move(At(R, Phase.BIND), At(R, Phase.VERIFY)): "the cloud accepted the bind; look later",
    _m(R, S, Phase.VERIFY): "a look found the key on the instance",
    _m(R, F, Phase.VERIFY): "a look found the bind failed, or it was not confirmed in time",
}


class IllegalMove(ValueError):
    """A change the tables above do not allow: a bug in keybind, never the user's input."""


def check_target_move(move: Move) -> Move:
    if move.src != move.dst and move not in TARGET_MOVES:
        raise IllegalMove(f"a target may not move {move.src} -> {move.dst}")
    return move


class JobState(StrEnum):
    QUEUED = "queued"  # accepted, no target claimed yet
    RUNNING = "running"
    SUCCEEDED = "succeeded"  # every instance succeeded
    PARTIAL = "partial"  # some succeeded, some failed
    FAILED = "failed"  # none succeeded
    CANCELLED = "cancelled"  # asked to cancel (its calls in flight still finished)

    @property
    def final(self) -> bool:
        return self in FINAL_JOB_STATES


FINAL_JOB_STATES = frozenset(
    {JobState.SUCCEEDED, JobState.PARTIAL, JobState.FAILED, JobState.CANCELLED}
)
ACTIVE_JOB_STATES = frozenset({JobState.QUEUED, JobState.RUNNING})

JOB_MOVES: Mapping[tuple[JobState, JobState], str] = {
    (JobState.QUEUED, JobState.RUNNING): "a worker claimed its first target",
    **{
        (active, final): "no target is left open (final_job_state decides which; a queued"
        " job gets here only when every target was cancelled before it was called)"
        for active in ACTIVE_JOB_STATES
        for final in FINAL_JOB_STATES
    },
}


@dataclass(frozen=True, slots=True)
class Counts:
    """A job's targets by state: the counters kept on its row."""

    pending: int = 0
    running: int = 0
    retrying: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0

    @property
    def open(self) -> int:
        return self.pending + self.running + self.retrying


class Fact(StrEnum):
    """What the final-state rule asks of a finished job."""

    CANCEL_REQUESTED = "cancel_requested"
    ANY_CANCELLED = "any_cancelled"
    NONE_FAILED = "none_failed"
    ANY_SUCCEEDED = "any_succeeded"


# The final state of a job none of whose targets is open: the first rule whose fact holds
# decides, else FINAL_OTHERWISE. The store's SQL is built from this list (store/counters.py).
FINAL_STATE_RULES: tuple[tuple[Fact, JobState], ...] = (
    # The cancel rule: a job asked to cancel ends cancelled, even if its last calls (in flight
    # when the cancel came) all succeeded; the instances show what each call did.
    (Fact.CANCEL_REQUESTED, JobState.CANCELLED),
    (Fact.ANY_CANCELLED, JobState.CANCELLED),
    (Fact.NONE_FAILED, JobState.SUCCEEDED),
    (Fact.ANY_SUCCEEDED, JobState.PARTIAL),
)
FINAL_OTHERWISE = JobState.FAILED


def holds(fact: Fact, counts: Counts, *, cancel_requested: bool) -> bool:
    match fact:
        case Fact.CANCEL_REQUESTED:
            return cancel_requested
        case Fact.ANY_CANCELLED:
            return counts.cancelled > 0
        case Fact.NONE_FAILED:
            return counts.failed == 0
        case Fact.ANY_SUCCEEDED:
            return counts.succeeded > 0


def final_job_state(counts: Counts, *, cancel_requested: bool) -> JobState:
    """The state of a job none of whose targets is still open."""
    for fact, state in FINAL_STATE_RULES:
        if holds(fact, counts, cancel_requested=cancel_requested):
            return state
    return FINAL_OTHERWISE


def next_job_state(
    state: JobState, counts: Counts, *, cancel_requested: bool, started: bool
) -> JobState:
    """A job's state after its counters became `counts`: final once an active job has no open
    target; running once a queued job's target was claimed (`started`); else unchanged."""
    if state in ACTIVE_JOB_STATES and counts.open == 0:
        return final_job_state(counts, cancel_requested=cancel_requested)
    if state is JobState.QUEUED and started:
        return JobState.RUNNING
    return state


def may_cancel(state: JobState, *, cancel_requested: bool) -> bool:
    """Whether a cancel request changes anything: a final job has nothing left to cancel; a
    second request is harmless (it changes nothing but is not refused)."""
    return not state.final or cancel_requested


class CallbackState(StrEnum):
    """A job's callback (its summary POSTed to callback_url once it is final)."""

    PENDING = "pending"  # owed: from submission until delivered or given up
    DELIVERED = "delivered"
    FAILED = "failed"  # out of attempts, or the address was refused


CALLBACK_MOVES: Mapping[tuple[CallbackState, CallbackState], str] = {
    (CallbackState.PENDING, CallbackState.DELIVERED): "the receiver answered 2xx",
    (CallbackState.PENDING, CallbackState.FAILED): "out of attempts, or its address is refused",
}


def next_callback_state(
    *, delivered: bool, refused: bool, attempt: int, max_attempts: int
) -> CallbackState:
    """The callback's state after its `attempt`-th POST."""
    if delivered:
        return CallbackState.DELIVERED
    if refused or attempt >= max_attempts:
        return CallbackState.FAILED
    return CallbackState.PENDING
