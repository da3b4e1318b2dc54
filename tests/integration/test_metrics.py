"""/metrics: Prometheus text computed from PostgreSQL and Redis, the same from any process."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from app.api.main import create_app
from app.broker.producer import CeleryProducer
from app.runtime import Runtime
from app.store.db import transaction, utcnow
from app.store.models import Target
from app.store.target_writes import add_attempts

BODY = {
    "provider": "tencent",
    "region": "ap-guangzhou",
    "instance_ids": ["ins-r8hr2upy", "ins-3e56fg78", "ins-1e4r6y8i"],
    "key_ids": ["skey-3glfot13"],
}
ACTION = "AssociateInstancesKeyPairs"


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def attempt(rt: Runtime, target_id: int, at: datetime, latency_ms: float, code: str | None) -> None:
    with transaction(rt.sessions) as s:
        add_attempts(
            s,
            [
                dict(
                    target_id=target_id,
                    action=ACTION,
                    started_at=at,
                    latency_ms=latency_ms,
                    http_status=200,
                    request_id="r",
                    error_code=code,
                    error_message=None,
                )
            ],
        )


@pytest.fixture
def clean_redis(rt: Runtime, redis_client: redis.Redis) -> Iterator[None]:
    yield
    prefix = rt.settings.queue_prefix
    keys = [*redis_client.scan_iter(f"{prefix}:rl:*"), f"{prefix}.control"]
    redis_client.delete(*keys)


def test_metrics_count_jobs_targets_calls_retries_waits_and_queue(
    client: TestClient, rt: Runtime, clean_redis: None, producer: CeleryProducer
) -> None:
    job_id = client.post("/v1/jobs", json=BODY).json()["id"]
    with rt.sessions() as s:
        t1, t2, t3 = s.scalars(select(Target.id).where(Target.job_id == job_id).order_by(Target.id))
    old = utcnow() - timedelta(hours=1)  # settled: folded into the running totals
    attempt(rt, t1, old, 80, None)
    attempt(rt, t2, old, 30, "RequestLimitExceeded")
    attempt(rt, t2, utcnow(), 200, None)  # recent: read from the tail on every scrape
    attempt(rt, t3, utcnow(), 1200, "InvalidInstanceId.NotFound")

    for _ in range(2):  # folding must not count anything twice
        m = scrape(client)
        assert m[("keybind_jobs", (("state", "queued"),))] == 1
        assert m[("keybind_targets", (("state", "pending"),))] == 3
        ok = (
            "keybind_cloud_calls_total",
            (("action", ACTION), ("error_code", ""), ("provider", "tencent")),
        )
        assert m[ok] == 2
        busy = (
            "keybind_cloud_calls_total",
            (("action", ACTION), ("error_code", "RequestLimitExceeded"), ("provider", "tencent")),
        )
        assert m[busy] == 1
        labels = (("action", ACTION), ("provider", "tencent"))
        assert m[("keybind_cloud_call_duration_seconds_count", labels)] == 4
        assert (
            m[
                (
                    "keybind_cloud_call_duration_seconds_bucket",
                    (*labels[:1], ("le", "0.1"), labels[1]),
                )
            ]
            == 2
        )
        assert (
            m[
                (
                    "keybind_cloud_call_duration_seconds_bucket",
                    (*labels[:1], ("le", "1.0"), labels[1]),
                )
            ]
            == 3
        )
        assert abs(m[("keybind_cloud_call_duration_seconds_sum", labels)] - 1.51) < 1e-6
        retries = (
            "keybind_cloud_retries_total",
            (("error_code", "RequestLimitExceeded"), ("provider", "tencent")),
        )
        assert m[retries] == 1

    attempt(rt, t3, old, 50, None)  # a later call lands below the watermark's reach
    m = scrape(client)
    assert m[ok] == 3
    retried_nf = (
        "keybind_cloud_retries_total",
        (("error_code", "InvalidInstanceId.NotFound"), ("provider", "tencent")),
    )
    # t3's old-dated call has a lower started_at but a higher id: it repeats the NotFound call.
    assert m[retried_nf] == 1

    # Limiter waits and give-ups come from counters the Redis limiter keeps.
    key = f"tencent:default:{ACTION}"
    assert rt.limiter.acquire(key, 1.0, max_wait=0.1) is not None
    assert rt.limiter.acquire(key, 1.0, max_wait=0.05) is None
    producer.kick_dispatch()
    m = scrape(client)
    assert m[("keybind_limiter_wait_seconds_count", (("key", key),))] == 1
    assert m[("keybind_limiter_gave_up_total", (("key", key),))] == 1
    # Two dispatcher kicks wait on the control queue (the submit's and ours): no worker runs.
    assert m[("keybind_queue_depth", (("queue", f"{rt.settings.queue_prefix}.control"),))] == 2


def test_metrics_need_a_token(rt: Runtime) -> None:
    with TestClient(create_app(rt.settings)) as anon:
        assert anon.get("/metrics").status_code == 401
