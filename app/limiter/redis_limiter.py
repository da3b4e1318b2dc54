"""The shared limiter: the sliding-window log in Redis, with its line of waiters (see base)."""

from __future__ import annotations

import math
import time
from collections import defaultdict

import redis

from app.limiter.base import STATS_FLUSH_S, WAIT_BUCKETS_S, _Attempt, _Blocking

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
