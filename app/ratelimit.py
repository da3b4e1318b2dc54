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
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import redis

if TYPE_CHECKING:
    from app.config import Settings

log = logging.getLogger(__name__)


def slots_and_window(limit: float, window_s: float) -> tuple[int, float]:
    """A limit of L calls/s: floor(L) slots (at least 1) per window scaled to match.
    10 -> 10 per window_s; 0.5 -> 1 per 2 * window_s."""
    slots = max(1, math.floor(limit))
    return slots, window_s * slots / limit


class Limiter(Protocol):
    def acquire(self, key: str, limit: float, *, max_wait: float) -> Grant | None:
        """Block until granted (the slot) or until max_wait would pass (None)."""
        ...


# Upper bounds (seconds) of the limiter-wait histogram kept in Redis for /metrics.
WAIT_BUCKETS_S = (0.005, 0.05, 0.25, 0.5, 1.0, 2.0, 5.0)

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
        """The request is written: if that took longer than the threshold, the entry moves
        to now, after the cloud received the call. Never waits; the call is out."""
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
    def __init__(self, *, window_s: float, fresh_s: float) -> None:
        self._window_s = window_s
        self.fresh_s = fresh_s

    def _take(self, key: str, slots: int, window: float) -> _Attempt:
        """Take a slot if one is free."""
        raise NotImplementedError

    def _restamp(self, key: str, member: str, slots: int, window: float, force: bool) -> _Attempt:
        """Move `member` to now if it is still in the window; else take a slot like `_take`
        (`force`: even over the limit)."""
        raise NotImplementedError

    def _record_wait(self, key: str, waited: float | None) -> None:
        """Count one acquire (None: gave up); only the shared Redis limiter keeps counts."""

    @staticmethod
    def _poll(attempt: Callable[[], _Attempt], max_wait: float) -> tuple[str, float, float] | None:
        """Repeat `attempt` until it grants: (entry, monotonic before it, waited); or None."""
        start = time.monotonic()
        while True:
            before = time.monotonic()
            wait, member = attempt()
            waited = time.monotonic() - start
            if wait <= 0:
                return member, before, waited
            if waited + wait > max_wait:
                return None
            # A little jitter so processes woken for the same free slot do not stampede.
            time.sleep(wait + random.uniform(0, 0.002))

    def acquire(self, key: str, limit: float, *, max_wait: float) -> Grant | None:
        slots, window = slots_and_window(limit, self._window_s)
        got = self._poll(lambda: self._take(key, slots, window), max_wait)
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
        got = None
        if wait:
            got = self._poll(
                lambda: self._restamp(key, member, slots, window, False), grant.max_wait
            )
        if got is None:
            if wait:
                log.warning("no slot for a held %s grant within %.1f s", key, grant.max_wait)
            # The call is (about to be) on its way: logged even over the limit, so the calls
            # after it wait for it. The cloud may refuse it; a throttled call is retried.
            before = time.monotonic()
            got = (self._restamp(key, member, slots, window, True)[1], before, 0.0)
        grant.member, grant.stamped, _ = got


# Lua fragments shared by both scripts. KEYS[1] log key, KEYS[2] counter key; times in µs
# from Redis TIME, so every host agrees on the clock. A grant returns {0, member}, a refusal
# {µs to wait}.
_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local slots = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local ttl = math.ceil(window / 1000) + 1000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local function take(force)
  if force or redis.call('ZCARD', KEYS[1]) < slots then
    local member = now .. '-' .. redis.call('INCR', KEYS[2])
    redis.call('ZADD', KEYS[1], now, member)
    redis.call('PEXPIRE', KEYS[1], ttl)
    redis.call('PEXPIRE', KEYS[2], ttl)
    return {0, member}
  end
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {math.max(1, tonumber(oldest[2]) + window - now)}
end
"""
# ARGV: slots, window.
_TAKE = _PRELUDE + "return take(false)\n"
# ARGV: slots, window, member, force ('1': take a slot even when none is free).
_RESTAMP = (
    _PRELUDE
    + """
if redis.call('ZSCORE', KEYS[1], ARGV[3]) then
  redis.call('ZADD', KEYS[1], 'XX', now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ttl)
  return {0, ARGV[3]}
end
return take(ARGV[4] == '1')
"""
)


def _attempt(reply: list[int | bytes]) -> _Attempt:
    if len(reply) == 2:
        member = reply[1]
        return 0.0, member.decode() if isinstance(member, bytes) else str(member)
    return int(reply[0]) / 1e6, ""


class RedisLimiter(_Blocking):
    def __init__(
        self,
        client: redis.Redis,
        *,
        window_s: float = 1.010,
        fresh_s: float = 0.002,
        prefix: str = "keybind:rl:",
    ) -> None:
        super().__init__(window_s=window_s, fresh_s=fresh_s)
        self._client = client
        self._prefix = prefix
        self._take_script = client.register_script(_TAKE)
        self._restamp_script = client.register_script(_RESTAMP)

    @property
    def client(self) -> redis.Redis:
        return self._client

    @property
    def stats_keys(self) -> str:
        """The set naming every limiter key that has wait statistics."""
        return self._prefix + "stats-keys"

    def stats_hash(self, key: str) -> str:
        return self._prefix + "stats:" + key

    def log_key(self, key: str) -> str:
        """The sorted set of `key`'s grants in the window (score: µs, Redis clock)."""
        return self._prefix + key

    def _record_wait(self, key: str, waited: float | None) -> None:
        # Counted in Redis so /metrics sees the waits of every worker on every machine.
        try:
            pipe = self._client.pipeline(transaction=False)
            stats = self.stats_hash(key)
            pipe.sadd(self.stats_keys, key)
            if waited is None:
                pipe.hincrby(stats, "gave_up", 1)
            else:
                pipe.hincrby(stats, "count", 1)
                pipe.hincrbyfloat(stats, "sum", waited)
                for bound in WAIT_BUCKETS_S:
                    if waited <= bound:
                        pipe.hincrby(stats, f"le_{bound}", 1)
            pipe.execute()
        except redis.RedisError:
            pass  # statistics must never cost a call its slot

    def _keys(self, key: str) -> list[str]:
        full = self.log_key(key)
        return [full, full + ":n"]

    def _take(self, key: str, slots: int, window: float) -> _Attempt:
        return _attempt(self._take_script(keys=self._keys(key), args=[slots, int(window * 1e6)]))

    def _restamp(self, key: str, member: str, slots: int, window: float, force: bool) -> _Attempt:
        args: list[int | str] = [slots, int(window * 1e6), member, "1" if force else "0"]
        return _attempt(self._restamp_script(keys=self._keys(key), args=args))


class FileLimiter(_Blocking):
    """The same log in a JSON file per key (grant times from time.time()), under an flock."""

    def __init__(self, directory: Path, *, window_s: float = 1.010, fresh_s: float = 0.002) -> None:
        super().__init__(window_s=window_s, fresh_s=fresh_s)
        self._dir = directory
        self._dir.mkdir(parents=True, exist_ok=True)

    def log_path(self, key: str) -> Path:
        return self._dir / (key.replace("/", "_").replace(":", "_") + ".json")

    def _update(
        self, key: str, window: float, change: Callable[[list[float], float], _Attempt]
    ) -> _Attempt:
        """Apply `change(entries, now)` to the key's grants still in the window."""
        fd = os.open(self.log_path(key), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            now = time.time()
            raw = os.read(fd, 1 << 20)
            entries = [x for x in (json.loads(raw) if raw else []) if x > now - window]
            result = change(entries, now)
            entries.sort()
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(entries).encode())
            return result
        finally:
            os.close(fd)  # closing releases the flock

    @staticmethod
    def _take_from(
        entries: list[float], now: float, slots: int, window: float, force: bool
    ) -> _Attempt:
        if force or len(entries) < slots:
            entries.append(now)
            return 0.0, repr(now)  # an entry is its own time; repr round-trips a float
        return max(1e-6, min(entries) + window - now), ""

    def _take(self, key: str, slots: int, window: float) -> _Attempt:
        return self._update(
            key, window, lambda entries, now: self._take_from(entries, now, slots, window, False)
        )

    def _restamp(self, key: str, member: str, slots: int, window: float, force: bool) -> _Attempt:
        def change(entries: list[float], now: float) -> _Attempt:
            old = float(member)
            if old in entries:
                entries.remove(old)
                entries.append(now)
                return 0.0, repr(now)
            return self._take_from(entries, now, slots, window, force)

        return self._update(key, window, change)


def build_limiter(settings: Settings) -> Limiter:
    window = 1 + settings.rate_limit_margin_ms / 1000
    fresh = settings.rate_limit_restamp_ms / 1000
    if settings.redis_url:
        # Namespaced like the queues, so two deployments (or test runs) on one Redis do not
        # share buckets unless they share a prefix.
        return RedisLimiter(
            redis.Redis.from_url(settings.redis_url),
            window_s=window,
            fresh_s=fresh,
            prefix=f"{settings.queue_prefix}:rl:",
        )
    return FileLimiter(settings.home / "ratelimit", window_s=window, fresh_s=fresh)


def max_in_window(timestamps: list[float], window: float = 1.0) -> int:
    """The most timestamps in any half-open window [t, t + window)."""
    ts = sorted(timestamps)
    best = lo = 0
    for hi, t in enumerate(ts):
        while ts[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best
