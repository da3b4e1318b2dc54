"""`/metrics` in Prometheus text format, computed at scrape time from shared state only.

Workers run on many machines, so nothing here lives in one process's memory: job and target
counts come from the job rows' counters; cloud calls, latency and retries from the `attempts`
table (every call is a row with action, error code and latency); limiter waits from counters
the Redis limiter keeps; queue depth from Redis `LLEN`. Every API process therefore reports
the same numbers, and Prometheus may scrape any of them.

Attempts are aggregated incrementally: rows up to a watermark are folded into running totals
once; the tail above it is re-read on each scrape. The watermark only passes calls that
started more than `lease_s` ago, because a call's row is committed within its lease (a
worker that overruns its lease loses the target), so a row with a lower id committing after
the fold is not missed.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import redis
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from app.broker import names
from app.domain.states import JobState, TargetState
from app.limiter.base import WAIT_BUCKETS_S
from app.limiter.redis_limiter import RedisLimiter
from app.runtime import Runtime
from app.store import metrics as store
from app.store.db import utcnow

LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class _CallTotals:
    count: int = 0
    latency_ms_sum: float = 0.0
    under: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS_S))

    def add(self, agg: store.CallAggregate) -> None:
        self.count += agg.count
        self.latency_ms_sum += agg.latency_ms_sum
        self.under = [a + b for a, b in zip(self.under, agg.under, strict=True)]


@dataclass
class _Folded:
    upto_id: int = 0
    calls: defaultdict[tuple[str, str, str], _CallTotals] = field(
        default_factory=lambda: defaultdict(_CallTotals)
    )
    retries: defaultdict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))


class KeybindCollector(Collector):
    """A prometheus_client collector reading the database and Redis on each scrape."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._folded = _Folded()
        self._lock = threading.Lock()

    def collect(self) -> Iterable[Metric]:
        yield from self._job_metrics()
        yield from self._call_metrics()
        yield from self._redis_metrics()

    def _job_metrics(self) -> Iterator[Metric]:
        with self.rt.sessions() as session:
            jobs = store.jobs_by_state(session)
            targets = store.targets_by_state(session)
        g = GaugeMetricFamily("keybind_jobs", "Jobs by state.", labels=["state"])
        for state in JobState:
            g.add_metric([state.value], jobs.get(state.value, 0))
        yield g
        t = GaugeMetricFamily(
            "keybind_targets", "Instances (targets) by state, over all jobs.", labels=["state"]
        )
        for tstate in TargetState:
            t.add_metric([tstate.value], targets.get(tstate.value, 0))
        yield t

    def _call_metrics(self) -> Iterator[Metric]:
        bounds_ms = [b * 1000 for b in LATENCY_BUCKETS_S]
        settled_before = utcnow() - timedelta(seconds=self.rt.settings.lease_s)
        with self._lock, self.rt.sessions() as session:
            folded = self._folded
            upto = store.attempts_settled_upto(session, folded.upto_id, settled_before)
            if upto > folded.upto_id:
                for agg in store.call_aggregates(session, folded.upto_id, upto, bounds_ms):
                    folded.calls[(agg.provider, agg.action, agg.error_code)].add(agg)
                for provider, code, n in store.retry_aggregates(session, folded.upto_id, upto):
                    folded.retries[(provider, code)] += n
                folded.upto_id = upto
            calls: defaultdict[tuple[str, str, str], _CallTotals] = defaultdict(_CallTotals)
            for k, v in folded.calls.items():
                calls[k].add(store.CallAggregate(*k, v.count, v.latency_ms_sum, tuple(v.under)))
            for agg in store.call_aggregates(session, folded.upto_id, None, bounds_ms):
                calls[(agg.provider, agg.action, agg.error_code)].add(agg)
            retries = defaultdict(int, folded.retries)
            for provider, code, n in store.retry_aggregates(session, folded.upto_id, None):
                retries[(provider, code)] += n

        total = CounterMetricFamily(
            "keybind_cloud_calls",
            "Calls to the cloud by provider, action and error code ('' = accepted).",
            labels=["provider", "action", "error_code"],
        )
        for (provider, action, code), v in sorted(calls.items()):
            total.add_metric([provider, action, code], v.count)
        yield total

        per_action: defaultdict[tuple[str, str], _CallTotals] = defaultdict(_CallTotals)
        for (provider, action, code), v in calls.items():
            per_action[(provider, action)].add(
                store.CallAggregate(
                    provider, action, code, v.count, v.latency_ms_sum, tuple(v.under)
                )
            )
        hist = HistogramMetricFamily(
            "keybind_cloud_call_duration_seconds",
            "Latency of calls to the cloud.",
            labels=["provider", "action"],
        )
        for (provider, action), v in sorted(per_action.items()):
            buckets = [(str(b), float(n)) for b, n in zip(LATENCY_BUCKETS_S, v.under, strict=True)]
            buckets.append(("+Inf", float(v.count)))
            hist.add_metric([provider, action], buckets, v.latency_ms_sum / 1000)
        yield hist

        r = CounterMetricFamily(
            "keybind_cloud_retries",
            "Calls that repeated an earlier call on the same instance, by the error code of "
            "the call before.",
            labels=["provider", "error_code"],
        )
        for (provider, code), n in sorted(retries.items()):
            r.add_metric([provider, code], n)
        yield r

    def _redis_metrics(self) -> Iterator[Metric]:
        settings = self.rt.settings
        broker = settings.effective_broker_url
        depth = GaugeMetricFamily(
            "keybind_queue_depth", "Messages waiting in the broker queue.", labels=["queue"]
        )
        acquired = CounterMetricFamily(
            "keybind_limiter_gave_up",
            "Times a worker found no limiter slot within KEYBIND_RATE_LIMIT_MAX_WAIT_S.",
            labels=["key"],
        )
        waits = HistogramMetricFamily(
            "keybind_limiter_wait_seconds",
            "How long workers waited for a rate-limit slot.",
            labels=["key"],
        )
        try:
            if broker.startswith(("redis://", "rediss://")):
                client = redis.Redis.from_url(broker)
                try:
                    for queue in (names.bind_queue(settings), names.control_queue(settings)):
                        depth.add_metric([queue], int(client.llen(queue)))
                finally:
                    client.close()
            limiter = self.rt.limiter
            if isinstance(limiter, RedisLimiter):
                for key, stats in _limiter_stats(limiter):
                    count = int(stats.get("count", 0))
                    buckets = [(str(b), float(stats.get(f"le_{b}", 0))) for b in WAIT_BUCKETS_S]
                    buckets.append(("+Inf", float(count)))
                    waits.add_metric([key], buckets, float(stats.get("sum", 0.0)))
                    acquired.add_metric([key], int(stats.get("gave_up", 0)))
        except redis.RedisError:
            # Redis down: the database's metrics still answer; these are left empty.
            pass
        yield depth
        yield waits
        yield acquired


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _limiter_stats(limiter: RedisLimiter) -> list[tuple[str, dict[str, str]]]:
    """(limiter key, its counters) for every key the Redis limiter has counted."""
    client = limiter.client
    keys = sorted(_text(k) for k in client.smembers(limiter.stats_keys))
    out: list[tuple[str, dict[str, str]]] = []
    for key in keys:
        raw = client.hgetall(limiter.stats_hash(key))
        out.append((key, {_text(k): _text(v) for k, v in raw.items()}))
    return out
