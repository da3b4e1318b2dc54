"""Target/job state rules and the retry decision, as specifications."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from app.jobs.retry import RetryPolicy, decide
from app.jobs.states import JobState, TargetState, can_move, final_job_state
from app.providers.base import CallError, ErrorClass

NOW = datetime(2026, 11, 23, tzinfo=UTC)
POLICY = RetryPolicy(max_attempts=4, budget_s=100, base_s=1, max_s=8)


def err(cls: ErrorClass, code: str = "X") -> CallError:
    return CallError(code=code, message=f"{code} happened", error_class=cls)


def test_final_targets_never_move_again() -> None:
    for final in (TargetState.SUCCEEDED, TargetState.FAILED, TargetState.CANCELLED):
        assert not any(can_move(final, dst) for dst in TargetState)


def test_a_waiting_target_only_moves_by_claim_or_cancel() -> None:
    assert can_move(TargetState.PENDING, TargetState.RUNNING)
    assert can_move(TargetState.RETRYING, TargetState.CANCELLED)
    assert not can_move(TargetState.PENDING, TargetState.SUCCEEDED)


@pytest.mark.parametrize(
    ("succeeded", "failed", "cancelled", "state"),
    [
        (5, 0, 0, JobState.SUCCEEDED),
        (3, 2, 0, JobState.PARTIAL),
        (0, 5, 0, JobState.FAILED),
        (2, 0, 3, JobState.CANCELLED),
    ],
)
def test_final_job_state(succeeded: int, failed: int, cancelled: int, state: JobState) -> None:
    assert final_job_state(succeeded=succeeded, failed=failed, cancelled=cancelled) is state


def test_success_clears_the_error() -> None:
    d = decide(
        error=None, attempts=3, first_attempt_at=NOW, now=NOW, policy=POLICY, rng=random.Random(1)
    )
    assert d.state is TargetState.SUCCEEDED and d.error_code is None


def test_terminal_error_fails_at_once_with_its_code() -> None:
    d = decide(
        error=err(ErrorClass.TERMINAL, "InvalidInstanceId.NotFound"),
        attempts=1,
        first_attempt_at=NOW,
        now=NOW,
        policy=POLICY,
        rng=random.Random(1),
    )
    assert (d.state, d.error_code) == (TargetState.FAILED, "InvalidInstanceId.NotFound")


def test_power_state_error_fails_and_says_how_to_proceed() -> None:
    d = decide(
        error=err(ErrorClass.POWER_STATE, "UnsupportedOperation.InstanceStateRunning"),
        attempts=1,
        first_attempt_at=NOW,
        now=NOW,
        policy=POLICY,
        rng=random.Random(1),
    )
    assert d.state is TargetState.FAILED
    assert d.error_message is not None and "force_stop" in d.error_message


def test_busy_error_retries_with_jittered_backoff_within_the_cap() -> None:
    rng = random.Random(7)
    delays = []
    for attempt in (1, 2, 3):
        d = decide(
            error=err(ErrorClass.RETRY, "MutexOperation.TaskRunning"),
            attempts=attempt,
            first_attempt_at=NOW,
            now=NOW,
            policy=POLICY,
            rng=rng,
        )
        assert d.state is TargetState.RETRYING and d.next_attempt_at is not None
        delays.append((d.next_attempt_at - NOW).total_seconds())
        assert 0 <= delays[-1] <= min(8, 2 ** (attempt - 1))
    assert len(set(delays)) == 3  # jitter: no two the same


def test_retries_stop_at_max_attempts_with_the_last_code() -> None:
    d = decide(
        error=err(ErrorClass.RETRY, "OperationDenied.InstanceOperationInProgress"),
        attempts=4,
        first_attempt_at=NOW,
        now=NOW,
        policy=POLICY,
        rng=random.Random(1),
    )
    assert (d.state, d.error_code) == (
        TargetState.FAILED,
        "OperationDenied.InstanceOperationInProgress",
    )
    assert d.error_message is not None and "4 attempts" in d.error_message


def test_retries_stop_when_the_time_budget_is_spent() -> None:
    d = decide(
        error=err(ErrorClass.RETRY),
        attempts=2,
        first_attempt_at=NOW - timedelta(seconds=100),
        now=NOW,
        policy=POLICY,
        rng=random.Random(1),
    )
    assert d.state is TargetState.FAILED


def test_wait_state_backs_off_longer_than_busy() -> None:
    cap_busy = POLICY.base_s
    rng = random.Random(3)
    waits = [POLICY.delay(1, ErrorClass.WAIT_STATE, rng) for _ in range(200)]
    assert max(waits) > cap_busy  # reaches past what a busy retry could ever wait
    assert max(waits) <= POLICY.base_s * POLICY.wait_state_factor
