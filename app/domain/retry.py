"""When to try again: backoff for bind calls and for verify looks. Pure: no I/O."""

from __future__ import annotations

import random
from dataclasses import dataclass

from app.domain.calls import ErrorClass


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
class VerifyPolicy:
    """Looks at an accepted bind: the first `delay_s` after it, then doubling up to
    `interval_max_s`; a bind not confirmed within `budget_s` fails."""

    delay_s: float = 1.0
    interval_max_s: float = 10.0
    budget_s: float = 600.0

    def backoff(self, checks: int) -> float:
        """Seconds until the next look after `checks` looks that found the bind still going."""
        return min(self.interval_max_s, max(self.delay_s, 0.5) * 2.0 ** max(0, checks - 1))
