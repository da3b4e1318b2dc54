"""The global rate limiter: a sliding-window log shared by every worker on every machine.

A key allows at most `slots` grants in any window of `window` seconds. Redis keeps the log
(a sorted set of grant times, clock from Redis `TIME` so hosts agree); `FileLimiter` is the
embedded twin for `keybind dev`, one file per key under an flock.

The cloud counts arrivals, so a grant is anchored to its send: the providers' HTTP clients
call `Grant.sending()` just before a request is written and `Grant.sent()` just after, and
at each a grant whose stamp is older than `fresh_s` is re-stamped to the current time (or,
if it has left the window, traded for a fresh slot first). A call held up between grant and
write (a descheduled process, a new connection), or during the write, then cannot let a
later, prompt call into the same cloud second: the margin has only to cover `fresh_s` plus
the way from our socket to the cloud's clock.

Waiters for a Redis key stand in a line (a second sorted set, by arrival): freed slots go to
them in order and each sleeps until its own slot frees. Without it every waiter woke for
each freed slot and raced for it; with 16 processes some lost for 5 s and handed their
targets back, and the herd's CPU delayed the winner's send.
"""

from __future__ import annotations

import logging
import math
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import redis

log = logging.getLogger(__name__)


def slots_and_window(limit: float, window_s: float) -> tuple[int, float]:
    """A limit of L calls/s: floor(L) slots (at least 1) per window scaled to match.
    10 -> 10 per window_s; 0.5 -> 1 per 2 * window_s."""
    slots = max(1, math.floor(limit))
    return slots, window_s * slots / limit


class Limiter(Protocol):
    def acquire(
        self, key: str, limit: float, *, max_wait: float, front: bool = False
    ) -> Grant | None:
        """Block until granted (the slot) or until max_wait would pass (None). `front`: a
        front-lane call (a job's first), which waits ahead of the bulk in the line."""
        ...


# A waiter id starting with this stands ahead of the others in the line.
FRONT_MARK = "!"


# Upper bounds (seconds) of the limiter-wait histogram kept in Redis for /metrics.
WAIT_BUCKETS_S = (0.005, 0.05, 0.25, 0.5, 1.0, 2.0, 5.0)
STATS_FLUSH_S = 1.0

# What one attempt at a slot answers: (0, the log entry taken) or (seconds to wait, "").
_Attempt = tuple[float, str]


@dataclass(slots=True)
class Grant:
    """One slot taken for one call. The cloud counts arrivals, not our grants (issue 7), so
    the HTTP client tells the grant when its request is written: `sending()` just before and
    `sent()` just after. Each re-stamps the grant's log entry to the current time when the
    entry's stamp is older than the limiter's `fresh_s`; a prompt call costs nothing more."""

    limiter: _Blocking
    key: str
    limit: float
    member: str  # the grant's entry in the key's log
    stamped: float  # time.monotonic() just BEFORE the entry was stamped: its age errs long
    waited: float  # seconds acquire waited for the slot
    max_wait: float

    def sending(self) -> None:
        """A grant held since it was taken (a descheduled process, a new connection) counts
        from now; one that has left the window first waits for a fresh slot."""
        self._restamp_if_stale(wait=True)

    def sent(self) -> None:
        """The request is written: if its stamp is older than the threshold by now (a slow or
        descheduled write), the entry moves to now, when the call is already on its way.
        Never waits; the call is out."""
        self._restamp_if_stale(wait=False)

    def _restamp_if_stale(self, *, wait: bool) -> None:
        if time.monotonic() - self.stamped <= self.limiter.fresh_s:
            return
        try:
            self.limiter.restamp(self, wait=wait)
        except (redis.RedisError, OSError) as exc:
            # Runs inside the HTTP client's send: the call had its slot, so an unreachable
            # log only costs the re-stamp, never the call.
            log.warning("could not re-stamp a %s grant (%s)", self.key, type(exc).__name__)


class _Blocking:
    # Added to each sleep so pollers woken for the same free slot do not stampede.
    _jitter_s = 0.002

    def __init__(self, *, window_s: float, fresh_s: float) -> None:
        self._window_s = window_s
        self.fresh_s = fresh_s

    def _take(self, key: str, slots: int, window: float, waiter: str, max_wait: float) -> _Attempt:
        """Take a slot if one is free for `waiter` (one acquire, across its polls)."""
        raise NotImplementedError

    def _restamp(
        self, key: str, member: str, slots: int, window: float, waiter: str, max_wait: float
    ) -> _Attempt:
        """Move `member` to now if it is still in the window; else take a slot like `_take`
        (waiter "": even over the limit)."""
        raise NotImplementedError

    def _leave(self, key: str, waiter: str) -> None:
        """`waiter` gave up: it no longer holds a place in line, if the limiter keeps one."""

    def _record_wait(self, key: str, waited: float | None) -> None:
        """Count one acquire (None: gave up); only the shared Redis limiter keeps counts."""

    def _poll(
        self, key: str, attempt: Callable[[str], _Attempt], max_wait: float, front: bool = False
    ) -> tuple[str, float, float] | None:
        """Repeat `attempt(waiter)` until it grants: (entry, monotonic before it, waited);
        None once the wait would pass max_wait."""
        waiter = (FRONT_MARK if front else "") + uuid.uuid4().hex
        start = time.monotonic()
        while True:
            before = time.monotonic()
            wait, member = attempt(waiter)
            waited = time.monotonic() - start
            if wait <= 0:
                return member, before, waited
            if waited + wait > max_wait:
                self._leave(key, waiter)
                return None
            time.sleep(wait + random.uniform(0, self._jitter_s))

    def acquire(
        self, key: str, limit: float, *, max_wait: float, front: bool = False
    ) -> Grant | None:
        slots, window = slots_and_window(limit, self._window_s)
        got = self._poll(
            key, lambda w: self._take(key, slots, window, w, max_wait), max_wait, front
        )
        if got is None:
            self._record_wait(key, None)
            return None
        member, stamped, waited = got
        self._record_wait(key, waited)
        return Grant(self, key, limit, member, stamped, waited, max_wait)

    def restamp(self, grant: Grant, *, wait: bool) -> None:
        """Move `grant`'s entry to now. If it has left the window (held longer than the
        window), other grants may have its place: with `wait`, wait for a fresh slot as
        acquire does; without (or if none comes within max_wait), log it over the limit."""
        slots, window = slots_and_window(grant.limit, self._window_s)
        key, member = grant.key, grant.member
        max_wait = grant.max_wait
        got = None
        if wait:
            got = self._poll(
                key, lambda w: self._restamp(key, member, slots, window, w, max_wait), max_wait
            )
        if got is None:
            if wait:
                log.warning("no slot for a held %s grant within %.1f s", key, max_wait)
            # The call is (about to be) on its way: logged even over the limit, so the calls
            # after it wait for it. The cloud may refuse it; a throttled call is retried.
            before = time.monotonic()
            got = (self._restamp(key, member, slots, window, "", max_wait)[1], before, 0.0)
        grant.member, grant.stamped, _ = got
