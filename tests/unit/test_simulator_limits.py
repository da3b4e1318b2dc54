"""The simulator's per-action, per-account arrival windows (pure, fixed clock)."""

from __future__ import annotations

from app.simulator.limits import ArrivalWindow
from app.simulator.stats import max_in_window


def admitted(
    window: ArrivalWindow, action: str, n: int, account: str = "a", at: float = 100.0
) -> int:
    return sum(window.admit(action, at + i * 0.001, account) for i in range(n))


def test_documented_limits_per_action() -> None:
    w = ArrivalWindow()
    assert admitted(w, "AssociateInstancesKeyPairs", 15) == 10
    assert admitted(w, "DescribeInstances", 50) == 40
    assert admitted(w, "DescribeKeyPairs", 15) == 10


def test_each_account_and_action_has_its_own_window() -> None:
    w = ArrivalWindow()
    assert admitted(w, "AssociateInstancesKeyPairs", 10, "a") == 10
    assert admitted(w, "AssociateInstancesKeyPairs", 10, "b") == 10
    assert admitted(w, "DescribeInstances", 40, "a") == 40
    assert not w.admit("AssociateInstancesKeyPairs", 100.5, "a")
    # A second later the window has moved on.
    assert w.admit("AssociateInstancesKeyPairs", 101.01, "a")


def test_stats_count_the_busiest_half_open_second() -> None:
    # 1.0 and 2.0 are a second apart, so never in one window [t, t + 1).
    assert max_in_window([2.0, 1.0, 1.5, 1.9]) == 3
    assert max_in_window([1.0, 2.0, 3.0]) == 1
    assert max_in_window([]) == 0
