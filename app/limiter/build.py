"""The limiter a deployment uses: Redis when it has one, else the embedded file limiter."""

from __future__ import annotations

import redis

from app.config import Settings
from app.limiter.base import Limiter
from app.limiter.file_limiter import FileLimiter
from app.limiter.redis_limiter import RedisLimiter


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
