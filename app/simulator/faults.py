"""Faults injected at a rate: the transient trouble a real cloud has on a bad day."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

# kind -> what the simulator does. "error" kinds answer HTTP 200 with the code.
KINDS = {
    "mutex": "MutexOperation.TaskRunning",
    "in_progress": "OperationDenied.InstanceOperationInProgress",
    "internal": "InternalError",
    "throttle": "RequestLimitExceeded",
    "http5xx": "http5xx",  # HTTP 502 with an HTML body, as a gateway would
    "timeout": "timeout",  # no answer until the client gives up
    "slow": "slow",  # a correct answer, late
}


@dataclass
class RateFaults:
    rate: float = 0.0
    kinds: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=lambda: ["AssociateInstancesKeyPairs"])
    rng: random.Random = field(default_factory=random.Random)

    def configure(
        self, rate: float, kinds: list[str], seed: int | None, actions: list[str] | None
    ) -> None:
        unknown = [k for k in kinds if k not in KINDS]
        if unknown:
            raise ValueError(f"unknown fault kinds: {unknown}; known: {sorted(KINDS)}")
        if not 0 <= rate <= 1:
            raise ValueError("rate must be within [0, 1]")
        self.rate, self.kinds = rate, list(kinds)
        self.rng = random.Random(seed)
        if actions:
            self.actions = list(actions)

    def draw(self, action: str) -> str | None:
        """The fault to inject into this call, if any."""
        if not self.kinds or action not in self.actions or self.rng.random() >= self.rate:
            return None
        return KINDS[self.rng.choice(self.kinds)]
