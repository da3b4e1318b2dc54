"""The limiter anchors a grant to its send (issue 7), on real Redis and on the file twin.

Short windows (limit 1: one slot per window) keep these quick; what is asserted is which
grant the log allows and the stamps it holds, never how long anything took.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from app.limiter.base import FRONT_MARK, Grant
from app.limiter.file_limiter import FileLimiter
from app.limiter.redis_limiter import RedisLimiter

WINDOW = 0.4
AnyLimiter = RedisLimiter | FileLimiter
Build = Callable[..., AnyLimiter]


@pytest.fixture(params=["redis", "file"])
def make(
    request: pytest.FixtureRequest, redis_client: redis.Redis, tmp_path: Path
) -> Iterator[Build]:
    """A factory for a limiter of either kind with the given re-stamp threshold."""
    prefix = f"kbtest-rl-{uuid.uuid4().hex[:8]}:"

    def build(fresh_s: float = 0.002) -> AnyLimiter:
        if request.param == "redis":
            return RedisLimiter(redis_client, window_s=WINDOW, fresh_s=fresh_s, prefix=prefix)
        return FileLimiter(tmp_path / "rl", window_s=WINDOW, fresh_s=fresh_s)

    yield build
    for key in redis_client.scan_iter(prefix + "*"):
        redis_client.delete(key)


def stamp(limiter: AnyLimiter, grant: Grant) -> float | None:
    """The grant's time in the log (seconds), or None once it has left it."""
    if isinstance(limiter, FileLimiter):
        at = float(grant.member)  # a file entry is its own time
        return at if at in json.loads(limiter.log_path(grant.key).read_text() or "[]") else None
    score = limiter.client.zscore(limiter.log_key(grant.key), grant.member)
    return None if score is None else float(score) / 1e6


def take(limiter: AnyLimiter, key: str, max_wait: float = 1.0) -> Grant:
    grant = limiter.acquire(key, 1.0, max_wait=max_wait)
    assert grant is not None
    return grant


def test_a_grant_held_before_sending_keeps_the_next_one_a_window_from_the_send(
    make: Build,
) -> None:
    limiter = make()
    early = take(limiter, "k")
    granted_at = stamp(limiter, early)
    time.sleep(WINDOW * 0.6)  # held between grant and send: a descheduled process
    early.sending()
    sent_at = stamp(limiter, early)
    assert granted_at is not None and sent_at is not None and sent_at > granted_at
    # The grant's own window has passed, the send's has not: the cloud would see both calls
    # within one window, so no slot yet.
    time.sleep(WINDOW * 0.6)
    assert limiter.acquire("k", 1.0, max_wait=0) is None
    later = take(limiter, "k")
    later_at = stamp(limiter, later)
    assert later_at is not None and later_at - sent_at >= WINDOW


def test_a_slow_write_moves_the_stamp_to_its_end(make: Build) -> None:
    limiter = make()
    call = take(limiter, "k")
    call.sending()  # prompt: left as it was
    granted_at = stamp(limiter, call)
    time.sleep(WINDOW * 0.6)  # descheduled while writing the request
    call.sent()
    written_at = stamp(limiter, call)
    assert granted_at is not None and written_at is not None and written_at > granted_at
    time.sleep(WINDOW * 0.6)
    assert limiter.acquire("k", 1.0, max_wait=0) is None


def test_a_prompt_call_is_left_as_it_was(make: Build) -> None:
    limiter = make(fresh_s=60.0)
    grant = take(limiter, "k")
    before = (grant.member, stamp(limiter, grant))
    grant.sending()
    grant.sent()
    assert (grant.member, stamp(limiter, grant)) == before


def test_with_no_threshold_both_marks_stamp(make: Build) -> None:
    limiter = make(fresh_s=0.0)
    grant = take(limiter, "k")
    stamps = [stamp(limiter, grant)]
    for mark in (grant.sending, grant.sent):
        time.sleep(0.01)
        mark()
        stamps.append(stamp(limiter, grant))
    assert None not in stamps and stamps == sorted(stamps) and len(set(stamps)) == 3


def test_a_grant_held_past_its_window_waits_for_a_fresh_slot(make: Build) -> None:
    limiter = make()
    held = take(limiter, "k")
    first_entry = held.member
    time.sleep(WINDOW * 1.2)  # its entry has left the log, and its place is taken
    other = take(limiter, "k", max_wait=0)
    other_at = stamp(limiter, other)
    assert other_at is not None
    held.sending()  # blocks until `other` has had its window
    held_at = stamp(limiter, held)
    assert held.member != first_entry
    assert held_at is not None and held_at - other_at >= WINDOW


def test_a_held_grant_with_no_slot_in_time_is_sent_and_logged_over_the_limit(
    make: Build, caplog: pytest.LogCaptureFixture
) -> None:
    limiter = make()
    held = take(limiter, "k", max_wait=0)  # max_wait 0: it cannot wait for a fresh slot
    time.sleep(WINDOW * 1.2)
    other = take(limiter, "k", max_wait=0)
    with caplog.at_level(logging.WARNING, logger="app.limiter.base"):
        held.sending()
    assert "no slot for a held" in caplog.text
    assert stamp(limiter, held) is not None and stamp(limiter, other) is not None
    # Two calls in the window: the next waits for both to leave it.
    assert limiter.acquire("k", 1.0, max_wait=0) is None


def test_a_write_outlasting_the_window_is_logged_without_waiting(make: Build) -> None:
    limiter = make()
    call = take(limiter, "k")
    call.sending()
    time.sleep(WINDOW * 1.2)  # the write took longer than the window; another call went
    other = take(limiter, "k", max_wait=0)
    call.sent()  # the call is out: it cannot wait, it is logged over the limit
    assert stamp(limiter, call) is not None and stamp(limiter, other) is not None
    assert limiter.acquire("k", 1.0, max_wait=0) is None


@pytest.fixture
def shared(redis_client: redis.Redis) -> Iterator[RedisLimiter]:
    prefix = f"kbtest-rl-{uuid.uuid4().hex[:8]}:"
    yield RedisLimiter(redis_client, window_s=WINDOW, prefix=prefix)
    for key in redis_client.scan_iter(prefix + "*"):
        redis_client.delete(key)


def attempt(limiter: RedisLimiter, waiter: str, max_wait: float = 5.0) -> bool:
    """One look at the limit-1 key "k" on behalf of `waiter`: granted or not."""
    wait, _ = limiter._take("k", 1, WINDOW, waiter, max_wait)
    return wait == 0


def test_freed_slots_go_to_waiters_in_the_order_they_came(shared: RedisLimiter) -> None:
    assert attempt(shared, "first")
    assert not attempt(shared, "early")  # in line, first
    assert not attempt(shared, "late")  # in line, second
    time.sleep(WINDOW * 1.1)  # the slot frees
    assert not attempt(shared, "late")  # woke first, but it is not its turn
    assert not attempt(shared, "newcomer")  # nobody jumps the line
    assert attempt(shared, "early")
    time.sleep(WINDOW * 1.1)
    assert attempt(shared, "late")


def test_a_front_lane_waiter_goes_ahead_of_the_bulk_but_not_of_earlier_fronts(
    shared: RedisLimiter,
) -> None:
    """A job's first call (the front lane) must not wait behind a huge job's waiters."""
    assert attempt(shared, "first")
    assert not attempt(shared, "bulk")  # in line
    assert not attempt(shared, FRONT_MARK + "urgent")  # ahead of the bulk
    assert not attempt(shared, FRONT_MARK + "urgent2")  # behind the first front
    time.sleep(WINDOW * 1.1)  # one slot frees
    assert not attempt(shared, "bulk")
    assert not attempt(shared, FRONT_MARK + "urgent2")
    assert attempt(shared, FRONT_MARK + "urgent")
    time.sleep(WINDOW * 1.1)
    assert not attempt(shared, "bulk")
    assert attempt(shared, FRONT_MARK + "urgent2")
    time.sleep(WINDOW * 1.1)
    assert attempt(shared, "bulk")


def test_a_front_lane_acquire_is_granted_before_a_bulk_one_waiting_longer(
    shared: RedisLimiter,
) -> None:
    assert shared.acquire("k", 1.0, max_wait=0) is not None
    assert not attempt(shared, "bulk")  # queued first
    grant = shared.acquire("k", 1.0, max_wait=WINDOW * 2, front=True)
    assert grant is not None and grant.waited > 0  # waited for the slot, and got it
    assert not attempt(shared, "bulk")  # still waiting: the front took the freed slot


def test_a_waiter_that_gives_up_leaves_the_line(shared: RedisLimiter) -> None:
    assert shared.acquire("k", 1.0, max_wait=0) is not None
    assert shared.acquire("k", 1.0, max_wait=WINDOW / 2) is None  # queued, then gave up
    assert shared.client.zcard(shared.line_key("k")) == 0
    time.sleep(WINDOW * 1.1)
    assert attempt(shared, "next")


def test_a_waiter_that_died_in_line_is_dropped(shared: RedisLimiter) -> None:
    assert attempt(shared, "first")
    assert not attempt(shared, "dies", max_wait=0)  # queued, never looks again
    time.sleep(WINDOW * 1.1)
    assert not attempt(shared, "alive", max_wait=0)  # the dead one's turn, for now
    time.sleep(1.0 + WINDOW * 0.1)  # past max_wait + window + 1 s since it queued
    assert attempt(shared, "alive", max_wait=0)
