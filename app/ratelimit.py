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

import fcntl
import json
import logging
import math
import os
import random
import time
import uuid
from collections import defaultdict
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


# Lua shared by both scripts. KEYS: the log, its entry counter, its line of waiters; times in
# µs from Redis TIME, so every host agrees on the clock. ARGV[1..4]: slots, window, waiter
# ("": take a slot even over the limit), stale (a waiter queued longer than this gave up or
# died). A grant returns {0, member}, a refusal {µs to wait}.
_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local slots = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local waiter = ARGV[3]
local stale = tonumber(ARGV[4])
local log, line = KEYS[1], KEYS[3]
local ttl = math.ceil(window / 1000) + 1000
redis.call('ZREMRANGEBYSCORE', log, '-inf', now - window)

local function grant()
  local member = now .. '-' .. redis.call('INCR', KEYS[2])
  redis.call('ZADD', log, now, member)
  redis.call('PEXPIRE', log, ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
  return {0, member}
end

-- Until `ahead` more entries have left the window (they leave oldest first); past the
-- newest, until the newest has.
local function wait_for(ahead)
  local entry = redis.call('ZRANGE', log, ahead, ahead, 'WITHSCORES')
  if #entry == 0 then entry = redis.call('ZRANGE', log, -1, -1, 'WITHSCORES') end
  if #entry == 0 then return {math.floor(window / slots)} end
  return {math.max(1, tonumber(entry[2]) + window - now)}
end

-- First come, first served: a caller that finds no slot free takes a place in line, and
-- freed slots go to the line in order, each waiter sleeping until its own slot frees. A
-- front-lane waiter (id starting with '!') joins as if it had come stale/2 earlier: ahead
-- of the bulk, which waits less than that with paced release, and behind earlier fronts.
local function take()
  if waiter == '' then return grant() end
  local free = slots - redis.call('ZCARD', log)
  redis.call('ZREMRANGEBYSCORE', line, '-inf', now - stale)
  local place = redis.call('ZRANK', line, waiter)
  if not place then
    local joined = now
    if string.sub(waiter, 1, 1) == '!' then joined = now - math.floor(stale / 2) end
    place = redis.call('ZCOUNT', line, '-inf', joined)
    if free > place then return grant() end
    redis.call('ZADD', line, joined, waiter)
    redis.call('PEXPIRE', line, math.ceil(stale / 1000) + 1000)
  elseif place < free then
    redis.call('ZREM', line, waiter)
    return grant()
  end
  return wait_for(place - free)
end
"""
_TAKE = _PRELUDE + "return take()\n"
# ARGV[5]: the grant's member.
_RESTAMP = (
    _PRELUDE
    + """
if redis.call('ZSCORE', log, ARGV[5]) then
  redis.call('ZADD', log, 'XX', now, ARGV[5])
  redis.call('PEXPIRE', log, ttl)
  return {0, ARGV[5]}
end
return take()
"""
)


def _attempt(reply: list[int | bytes]) -> _Attempt:
    if len(reply) == 2:
        member = reply[1]
        return 0.0, member.decode() if isinstance(member, bytes) else str(member)
    return int(reply[0]) / 1e6, ""


class RedisLimiter(_Blocking):
    # Waiters sleep until their own slot frees (the line), so none need spreading out.
    _jitter_s = 0.0

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
        self._pending: dict[str, defaultdict[str, float]] = {}  # wait statistics not yet in Redis
        self._flushed_at = -math.inf

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
        # Counted in Redis so /metrics sees the waits of every worker on every machine, but
        # sent at most once a second (or at once for a give-up): a round trip per call
        # would cost a bind turn a tenth of its time.
        counts = self._pending.setdefault(key, defaultdict(float))
        if waited is None:
            counts["gave_up"] += 1
        else:
            counts["count"] += 1
            counts["sum"] += waited
            for bound in WAIT_BUCKETS_S:
                if waited <= bound:
                    counts[f"le_{bound}"] += 1
        now = time.monotonic()
        if waited is None or now - self._flushed_at >= STATS_FLUSH_S:
            self._flushed_at = now
            self._flush_stats()

    def _flush_stats(self) -> None:
        pending, self._pending = self._pending, {}
        try:
            pipe = self._client.pipeline(transaction=False)
            for key, counts in pending.items():
                stats = self.stats_hash(key)
                pipe.sadd(self.stats_keys, key)
                for field, n in counts.items():
                    if field == "sum":
                        pipe.hincrbyfloat(stats, field, n)
                    else:
                        pipe.hincrby(stats, field, int(n))
            pipe.execute()
        except redis.RedisError:
            pass  # statistics must never cost a call its slot

    def line_key(self, key: str) -> str:
        """The sorted set of waiters for `key`, in the order they came."""
        return self.log_key(key) + ":q"

    def _keys(self, key: str) -> list[str]:
        full = self.log_key(key)
        return [full, full + ":n", self.line_key(key)]

    @staticmethod
    def _args(slots: int, window: float, waiter: str, max_wait: float) -> list[int | str]:
        # A waiter polls at least once a window and gives up at max_wait: a place older than
        # both (and a second more) is a waiter that died.
        stale = max_wait + window + 1.0
        return [slots, int(window * 1e6), waiter, int(stale * 1e6)]

    def _take(self, key: str, slots: int, window: float, waiter: str, max_wait: float) -> _Attempt:
        args = self._args(slots, window, waiter, max_wait)
        return _attempt(self._take_script(keys=self._keys(key), args=args))

    def _restamp(
        self, key: str, member: str, slots: int, window: float, waiter: str, max_wait: float
    ) -> _Attempt:
        args = [*self._args(slots, window, waiter, max_wait), member]
        return _attempt(self._restamp_script(keys=self._keys(key), args=args))

    def _leave(self, key: str, waiter: str) -> None:
        self._client.zrem(self.line_key(key), waiter)


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

    # One machine's few processes poll; no line is kept (the Redis limiter keeps one).
    def _take(self, key: str, slots: int, window: float, waiter: str, max_wait: float) -> _Attempt:
        return self._update(
            key, window, lambda entries, now: self._take_from(entries, now, slots, window, False)
        )

    def _restamp(
        self, key: str, member: str, slots: int, window: float, waiter: str, max_wait: float
    ) -> _Attempt:
        def change(entries: list[float], now: float) -> _Attempt:
            old = float(member)
            if old in entries:
                entries.remove(old)
                entries.append(now)
                return 0.0, repr(now)
            return self._take_from(entries, now, slots, window, waiter == "")

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
