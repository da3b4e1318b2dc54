"""The dispatcher's pacing of bulk calls: an idle account's first window goes at once, the
rest shortly before their slot at the limiter, so worker processes are not held asleep."""

from __future__ import annotations

import pytest

from app.jobs.dispatch import PACE_LEAD_MAX_S, PACE_LEAD_MIN_S, paced


def test_an_idle_account_gets_a_window_at_once_then_one_per_slot() -> None:
    out = paced(0, 13, 10.0)
    assert out[:10] == [0.0] * 10
    assert out[10:] == pytest.approx([1.0 - 0.15, 1.1 - 0.15, 1.2 - 0.15])


def test_a_busy_account_queues_behind_what_is_already_out() -> None:
    # 25 calls already out at 10/s: the next is due 2.5 s from now, sent 0.15 s early.
    assert paced(25, 2, 10.0) == pytest.approx([2.35, 2.45])


def test_countdowns_never_decrease_and_never_go_negative() -> None:
    for rate in (0.5, 1.0, 10.0, 200.0):
        out = paced(3, 50, rate)
        assert all(c >= 0 for c in out)
        assert out == sorted(out)


def test_the_lead_is_bounded() -> None:
    # Fast accounts: a few slots early is enough; slow ones: never more than the cap early.
    assert paced(400, 1, 200.0) == pytest.approx([2.0 - PACE_LEAD_MIN_S])
    assert paced(3, 1, 0.5) == pytest.approx([6.0 - PACE_LEAD_MAX_S])
