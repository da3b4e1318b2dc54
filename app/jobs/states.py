"""Job and target states and the moves allowed between them. Pure: no I/O."""

from __future__ import annotations

from enum import StrEnum


class TargetState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in FINAL_TARGET_STATES


FINAL_TARGET_STATES = frozenset({TargetState.SUCCEEDED, TargetState.FAILED, TargetState.CANCELLED})
# Targets a worker may claim (when due) and the dispatcher may release.
WAITING_TARGET_STATES = frozenset({TargetState.PENDING, TargetState.RETRYING})

TARGET_MOVES: dict[TargetState, frozenset[TargetState]] = {
    TargetState.PENDING: frozenset({TargetState.RUNNING, TargetState.CANCELLED}),
    TargetState.RETRYING: frozenset({TargetState.RUNNING, TargetState.CANCELLED}),
    TargetState.RUNNING: frozenset(
        {
            TargetState.SUCCEEDED,
            TargetState.FAILED,
            TargetState.RETRYING,
            TargetState.PENDING,  # the limiter gave the slot back before any call was made
        }
    ),
    TargetState.SUCCEEDED: frozenset(),
    TargetState.FAILED: frozenset(),
    TargetState.CANCELLED: frozenset(),
}


def can_move(src: TargetState, dst: TargetState) -> bool:
    return dst in TARGET_MOVES[src]


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in FINAL_JOB_STATES


FINAL_JOB_STATES = frozenset(
    {JobState.SUCCEEDED, JobState.PARTIAL, JobState.FAILED, JobState.CANCELLED}
)


def final_job_state(*, succeeded: int, failed: int, cancelled: int) -> JobState:
    """The state of a job none of whose targets is still open."""
    if cancelled:
        return JobState.CANCELLED
    if not failed:
        return JobState.SUCCEEDED
    return JobState.PARTIAL if succeeded else JobState.FAILED
