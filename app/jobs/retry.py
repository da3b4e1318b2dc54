"""What happens after a call: succeed, fail, or try again later. Pure: no I/O."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from app.jobs.states import TargetState
from app.providers.base import CallError, ErrorClass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 8
    budget_s: float = 900.0
    base_s: float = 1.0
    max_s: float = 60.0
    # Transitional instance states (starting, stopping...) last seconds to minutes, so
    # their retries start later than a busy instance's.
    wait_state_factor: float = 5.0

    def delay(self, attempts: int, error_class: ErrorClass, rng: random.Random) -> float:
        """Exponential backoff with full jitter: uniform in [0, min(max, base * 2^(n-1))]."""
        base = self.base_s * (self.wait_state_factor if error_class is ErrorClass.WAIT_STATE else 1)
        cap = min(self.max_s, base * 2 ** max(0, attempts - 1))
        return rng.uniform(0, cap)


@dataclass(frozen=True, slots=True)
class Decision:
    state: TargetState
    next_attempt_at: datetime | None = None
    error_code: str | None = None
    error_message: str | None = None


POWER_STATE_HINT = (
    " (the job's power policy is 'refuse': stop the instance first, or submit with"
    " force_stop=true to let the cloud stop, bind and restart it)"
)


def decide(
    *,
    error: CallError | None,
    attempts: int,
    first_attempt_at: datetime,
    now: datetime,
    policy: RetryPolicy,
    rng: random.Random,
) -> Decision:
    """The target's next state after its `attempts`-th call ended with `error`."""
    if error is None:
        return Decision(TargetState.SUCCEEDED)
    if error.error_class is ErrorClass.POWER_STATE:
        return Decision(TargetState.FAILED, None, error.code, error.message + POWER_STATE_HINT)
    if not error.error_class.retryable:
        return Decision(TargetState.FAILED, None, error.code, error.message)
    wait = policy.delay(attempts, error.error_class, rng)
    out_of_budget = (now - first_attempt_at).total_seconds() + wait > policy.budget_s
    if attempts >= policy.max_attempts or out_of_budget:
        why = f"gave up after {attempts} attempts: {error.message}"
        return Decision(TargetState.FAILED, None, error.code, why)
    return Decision(TargetState.RETRYING, now + timedelta(seconds=wait), error.code, error.message)
