"""The API under a 100,000-instance job, over HTTP against a real uvicorn process:

- POST /v1/jobs time for 10,000 and 100,000 instances (targets <= 0.3 s and <= 2 s);
- GET /v1/jobs/{id} p50/p99 with 100 concurrent pollers while the 100k job runs (target
  p99 <= 20 ms), first without and then with If-None-Match (the share answered 304);
- Redis memory (INFO used_memory, server-wide, minus its value before the submission) while
  the 100k job runs to the end, and the most messages the broker held (target <= 50 MB).

The jobs run coalesced (batch_size 100) at the real 10/s, so the 100k job finishes in about
100 s (the floor) and the whole run stays short.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from typing import Any

import httpx

from tests.bench.harness import Stack, instance_ids, percentile, report, stack

LIMIT = 10.0
POLLERS = 100
POLL_EVERY_S = 1.0  # each poller's pause between polls: 100 pollers ~ 100 requests/s


def post(s: Stack, ids: list[str], batch_size: int) -> tuple[float, str]:
    assert s.api is not None
    body = {
        "provider": "tencent",
        "region": "ap-guangzhou",
        "instance_ids": ids,
        "key_ids": ["skey-3glfot13"],
        "batch_size": batch_size,
    }
    with s.api.client() as c:
        c.get("/healthz")  # connection open before the clock starts
        started = time.perf_counter()
        r = c.post("/v1/jobs", json=body)
        elapsed = time.perf_counter() - started
    assert r.status_code == 202, r.text
    return elapsed, str(r.json()["id"])


async def _poll(s: Stack, job_id: str, seconds: float, etag: bool) -> dict[str, Any]:
    assert s.api is not None
    latencies: list[float] = []
    codes: dict[int, int] = {}
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=POLLERS, max_keepalive_connections=POLLERS)
    async with httpx.AsyncClient(
        base_url=s.api.url,
        headers={"Authorization": f"Bearer {s.api.token}"},
        limits=limits,
        trust_env=False,
        timeout=30,
    ) as client:

        async def poller(offset: float) -> None:
            await asyncio.sleep(offset)  # spread the pollers over one interval
            tag: str | None = None
            while time.monotonic() < stop:
                headers = {"If-None-Match": tag} if etag and tag else {}
                t0 = time.perf_counter()
                r = await client.get(f"/v1/jobs/{job_id}", headers=headers)
                latencies.append((time.perf_counter() - t0) * 1000)
                codes[r.status_code] = codes.get(r.status_code, 0) + 1
                tag = r.headers.get("etag", tag)
                await asyncio.sleep(POLL_EVERY_S)

        await asyncio.gather(*(poller(i * POLL_EVERY_S / POLLERS) for i in range(POLLERS)))
    n = len(latencies)
    return {
        "requests": n,
        "requests_per_s": n / seconds,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "mean_ms": statistics.fmean(latencies) if latencies else float("nan"),
        "share_200": codes.get(200, 0) / n if n else 0.0,
        "share_304": codes.get(304, 0) / n if n else 0.0,
        "other_statuses": {k: v for k, v in codes.items() if k not in (200, 304)},
    }


class MemoryWatch:
    """Samples Redis's used_memory and the broker's queue length until stopped."""

    def __init__(self, s: Stack) -> None:
        self.s = s
        self.baseline = int(s.redis.info("memory")["used_memory"])
        self.peak = self.baseline
        self.peak_own = 0
        self.max_queued = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, int(self.s.redis.info("memory")["used_memory"]))
            self.max_queued = max(self.max_queued, self.s.queued_messages())
            self.peak_own = max(self.peak_own, self.s.own_redis_bytes())
            self._stop.wait(0.25)

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def main(quick: bool = False) -> list[dict[str, Any]]:
    small, big = (2_000, 20_000) if quick else (10_000, 100_000)
    poll_s = 5.0 if quick else 10.0
    with stack(layout=[2, 2], sim_limit=LIMIT, rate_limit=LIMIT, api=True) as s:
        post(s, instance_ids(1, "w"), 100)  # warm-up: first request's imports and pools
        t_small, _ = post(s, instance_ids(small, "s"), 100)
        with MemoryWatch(s) as mem:
            t_big, big_id = post(s, instance_ids(big, "l"), 100)
            plain = asyncio.run(_poll(s, big_id, poll_s, etag=False))
            tagged = asyncio.run(_poll(s, big_id, poll_s, etag=True))
            job = s.wait(big_id, timeout=big / 100 / LIMIT * 4 + 120, interval=0.5)
        figures = [
            report(
                "api_post",
                {
                    f"post_{small}_s": t_small,
                    f"post_{big}_s": t_big,
                    "api_processes": 1,
                },
            ),
            report(
                "api_poll",
                {
                    "job_instances": big,
                    "pollers": POLLERS,
                    "poll_every_s": POLL_EVERY_S,
                    **{f"plain_{k}": v for k, v in plain.items()},
                    **{f"etag_{k}": v for k, v in tagged.items()},
                },
            ),
            report(
                "redis_memory",
                {
                    "job_instances": big,
                    "batch_size": 100,
                    "job_state": job.state,
                    "job_wall_s": (job.finished_at - job.created_at).total_seconds(),
                    "used_memory_baseline_mb": mem.baseline / 1e6,
                    "used_memory_peak_delta_mb": (mem.peak - mem.baseline) / 1e6,
                    "own_keys_peak_mb": mem.peak_own / 1e6,
                    "max_messages_in_broker": mem.max_queued,
                },
            ),
        ]
    return figures
