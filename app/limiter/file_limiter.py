"""The embedded limiter for `keybind dev`: the same log in a JSON file per key, under an flock.
One machine's few processes poll it; no line of waiters is kept (the Redis limiter keeps one)."""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from app.limiter.base import _Attempt, _Blocking


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
