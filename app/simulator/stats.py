"""What the simulator saw: every call's arrival, action and outcome."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

THROTTLED = "RequestLimitExceeded"
# What each cloud answers when over its limit: Tencent's code, JD's status.
THROTTLED_CODES = frozenset({THROTTLED, "RATE_LIMIT_EXCEEDED"})


def max_in_window(timestamps: list[float], window: float = 1.0) -> int:
    """The most timestamps in any half-open window [t, t + window)."""
    ts = sorted(timestamps)
    best = lo = 0
    for hi, t in enumerate(ts):
        while ts[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


@dataclass
class ActionStats:
    arrivals: list[float] = field(default_factory=list)  # every call, monotonic seconds
    accepted_at: list[float] = field(default_factory=list)  # calls not throttled
    codes: Counter[str] = field(default_factory=Counter)
    per_instance: Counter[str] = field(default_factory=Counter)  # non-throttled calls naming it
    succeeded: int = 0
    by_account: defaultdict[str, list[float]] = field(
        default_factory=lambda: defaultdict(list)
    )  # SecretId -> accepted arrival times

    def summary(self, detail: bool) -> dict[str, Any]:
        throttled = sum(self.codes.get(c, 0) for c in THROTTLED_CODES)
        # Recorded as calls finish, stamped as they arrive: concurrent calls can finish out
        # of arrival order, so the first and last arrivals are the extremes, not the ends.
        accepted = sorted(self.accepted_at)
        span = (accepted[-1] - accepted[0]) if len(accepted) > 1 else 0.0
        out: dict[str, Any] = {
            "total": len(self.arrivals),
            "accepted": len(self.accepted_at),
            "throttled": throttled,
            "succeeded": self.succeeded,
            "errors": dict(self.codes),
            "max_in_any_second": max_in_window(self.accepted_at, 1.0),
            "max_in_any_second_all": max_in_window(self.arrivals, 1.0),
            "sustained_rate": (len(self.accepted_at) - 1) / span if span > 0 else 0.0,
            "first": accepted[0] if accepted else None,
            "last": accepted[-1] if accepted else None,
            "instances_called_more_than_once": sum(1 for n in self.per_instance.values() if n > 1),
        }
        out["accounts"] = {
            a: {
                "accepted": len(ts),
                "max_in_any_second": max_in_window(ts, 1.0),
                "span_s": max(ts) - min(ts) if ts else 0.0,
            }
            for a, ts in self.by_account.items()
        }
        if detail:
            out["per_instance"] = dict(self.per_instance)
            out["accepted_at"] = accepted  # arrival times (monotonic s), in order
        return out


@dataclass
class Stats:
    actions: defaultdict[str, ActionStats] = field(default_factory=lambda: defaultdict(ActionStats))

    def record(
        self, action: str, at: float, code: str | None, instance_ids: list[str], account: str = ""
    ) -> None:
        s = self.actions[action]
        s.arrivals.append(at)
        if code in THROTTLED_CODES:
            s.codes[code] += 1
            return
        s.accepted_at.append(at)
        if account:
            s.by_account[account].append(at)
        if code is None:
            s.succeeded += 1
        else:
            s.codes[code] += 1
        s.per_instance.update(instance_ids)
