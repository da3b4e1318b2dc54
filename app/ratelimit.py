"""The global rate limiter: a sliding-window log shared by every worker on every machine.

A key allows at most `slots` grants in any window of `window` seconds. Redis keeps the log
(a sorted set of grant times, clock from Redis `TIME` so hosts agree); `FileLimiter` is the
embedded twin for `keybind dev`, one file per key under an flock.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import random
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import redis

if TYPE_CHECKING:
    from app.config import Settings


def slots_and_window(limit: float, window_s: float) -> tuple[int, float]:
    """A limit of L calls/s: floor(L) slots (at least 1) per window scaled to match.
    10 -> 10 per window_s; 0.5 -> 1 per 2 * window_s."""
    slots = max(1, math.floor(limit))
    return slots, window_s * slots / limit


class Limiter(Protocol):
    def try_acquire(self, key: str, limit: float, *, now: float | None = None) -> float:
        """Take a slot if one is free: 0.0 when granted, else seconds until one frees."""
        ...

    def acquire(self, key: str, limit: float, *, max_wait: float) -> float | None:
        """Block until granted (returns seconds waited) or until max_wait would pass (None)."""
        ...


# Upper bounds (seconds) of the limiter-wait histogram kept in Redis for /metrics.
WAIT_BUCKETS_S = (0.005, 0.05, 0.25, 0.5, 1.0, 2.0, 5.0)
STATS_FLUSH_S = 1.0


class _Blocking:
    def try_acquire(self, key: str, limit: float, *, now: float | None = None) -> float:
        raise NotImplementedError

    def _record_wait(self, key: str, waited: float | None) -> None:
        """Count one acquire (None: gave up); only the shared Redis limiter keeps counts."""

    def acquire(self, key: str, limit: float, *, max_wait: float) -> float | None:
        start = time.monotonic()
        while True:
            wait = self.try_acquire(key, limit)
            waited = time.monotonic() - start
            if wait <= 0:
                self._record_wait(key, waited)
                return waited
            if waited + wait > max_wait:
                self._record_wait(key, None)
                return None
            # A little jitter so processes woken for the same free slot do not stampede.
            time.sleep(wait + random.uniform(0, 0.002))


# KEYS[1] log key, KEYS[2] counter key; ARGV: slots, window (µs). Returns wait in µs (0 = granted).
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local slots = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < slots then
  local n = redis.call('INCR', KEYS[2])
  redis.call('ZADD', KEYS[1], now, now .. '-' .. n)
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1000)
  redis.call('PEXPIRE', KEYS[2], math.ceil(window / 1000) + 1000)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now)
"""


class RedisLimiter(_Blocking):
    def __init__(
        self, client: redis.Redis, *, window_s: float = 1.010, prefix: str = "keybind:rl:"
    ) -> None:
        self._client = client
        self._window_s = window_s
        self._prefix = prefix
        self._script = client.register_script(_SCRIPT)
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

    def try_acquire(self, key: str, limit: float, *, now: float | None = None) -> float:
        slots, window = slots_and_window(limit, self._window_s)
        full = self._prefix + key
        wait_us = self._script(keys=[full, full + ":n"], args=[slots, int(window * 1e6)])
        return int(wait_us) / 1e6


class FileLimiter(_Blocking):
    def __init__(self, directory: Path, *, window_s: float = 1.010) -> None:
        self._dir = directory
        self._dir.mkdir(parents=True, exist_ok=True)
        self._window_s = window_s

    def try_acquire(self, key: str, limit: float, *, now: float | None = None) -> float:
        slots, window = slots_and_window(limit, self._window_s)
        path = self._dir / (key.replace("/", "_").replace(":", "_") + ".json")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            t = time.time() if now is None else now
            raw = os.read(fd, 1 << 20)
            log = [x for x in (json.loads(raw) if raw else []) if x > t - window]
            if len(log) < slots:
                log.append(t)
                wait = 0.0
            else:
                wait = max(1e-6, log[0] + window - t)
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(log).encode())
            return wait
        finally:
            os.close(fd)  # closing releases the flock


def build_limiter(settings: Settings) -> Limiter:
    window = 1 + settings.rate_limit_margin_ms / 1000
    if settings.redis_url:
        # Namespaced like the queues, so two deployments (or test runs) on one Redis do not
        # share buckets unless they share a prefix.
        return RedisLimiter(
            redis.Redis.from_url(settings.redis_url),
            window_s=window,
            prefix=f"{settings.queue_prefix}:rl:",
        )
    return FileLimiter(settings.home / "ratelimit", window_s=window)


def max_in_window(timestamps: list[float], window: float = 1.0) -> int:
    """The most timestamps in any half-open window [t, t + window)."""
    ts = sorted(timestamps)
    best = lo = 0
    for hi, t in enumerate(ts):
        while ts[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best
