"""The cloud's side of the rate limit: at most N accepted calls of one action in any 1 s."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

DEFAULT_LIMITS = {
    "AssociateInstancesKeyPairs": 10.0,
    "DisassociateInstancesKeyPairs": 10.0,
    "DescribeKeyPairs": 10.0,
    "DescribeInstances": 40.0,
    "DescribeInstancesStatus": 40.0,
}


@dataclass
class ArrivalWindow:
    """Strict sliding window on arrival time; refused calls do not count against it."""

    limits: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    window_s: float = 1.0
    _seen: dict[str, deque[float]] = field(default_factory=dict)

    def admit(self, action: str, now: float, account: str = "") -> bool:
        """Admit one call of `action`; each account (SecretId) has its own window."""
        limit = self.limits.get(action)
        if limit is None:
            return True
        seen = self._seen.setdefault(f"{account}\0{action}", deque())
        while seen and seen[0] <= now - self.window_s:
            seen.popleft()
        if len(seen) >= int(limit):
            return False
        seen.append(now)
        return True

    def reset(self) -> None:
        self._seen.clear()
