"""The API under a 100,000-instance job, over HTTP against a real uvicorn process:

- POST /v1/jobs time for 10,000 and 100,000 instances (targets <= 0.3 s and <= 2 s);
- GET /v1/jobs/{id} p50/p99 with 100 concurrent pollers, each once a second, while the 100k
  job runs (target p99 <= 20 ms), first without and then with If-None-Match (the share
  answered 304: near none, since a running job's version moves ~20 times a second). The
  pollers run in a process of their own on a lean client (tests/bench/pollers.py); the API's
  and the pollers' CPU per poll and the cores each role used meanwhile are reported with the
  latencies (cores_*: api, workers, simulator, postgres, redis, bench, pollers, other,
  machine), so a figure always says what load it was taken under;
- Redis memory (INFO used_memory, server-wide, minus its value before the submission) while
  the 100k job runs to the end, and the most messages the broker held (target <= 50 MB).

The jobs run coalesced (batch_size 100) at the real 10/s, so the 100k job finishes in about
100 s (the floor) and the whole run stays short.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from typing import Any

from tests.bench.harness import Stack, instance_ids, percentile, report, stack
from tests.bench.load import CpuWatch
from tests.support.processes import REPO

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


def _poll(s: Stack, job_id: str, seconds: float, etag: bool) -> dict[str, Any]:
    """100 dashboards polling `job_id` for `seconds`, from their own process (see
    tests/bench/pollers.py), and the CPU every role used meanwhile."""
    assert s.api is not None
    argv = [sys.executable, "-m", "tests.bench.pollers", s.api.url, s.api.token, job_id]
    argv += ["--seconds", str(seconds), "--pollers", str(POLLERS), "--every", str(POLL_EVERY_S)]
    watch = CpuWatch(
        {
            "api": [s.api.proc.popen.pid],
            "workers": [p.popen.pid for p in s.procs.procs if p.name == "worker"],
            "simulator": [s.sim.process.pid],
            "bench": [os.getpid()],
        },
        database=s.settings.queue_prefix,  # the stack's database is named like its queues
    )
    done_before = _finished(s, job_id)
    watch.start()
    done = subprocess.run(
        argv + (["--etag"] if etag else []), capture_output=True, text=True, check=True, cwd=REPO
    )
    out = json.loads(done.stdout)
    cores = watch.stop(ended={"pollers": out["cpu_s"]})
    # The load the poll is measured under: the job's own progress (at 10 calls/s of 100).
    job_rate = (_finished(s, job_id) - done_before) / watch.wall_s
    latencies = [ms for _, ms, _ in out["polls"]]
    codes = Counter(status for _, _, status in out["polls"])
    n = len(latencies)
    return {
        "requests": n,
        "requests_per_s": n / seconds,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies, default=float("nan")),
        "mean_ms": statistics.fmean(latencies) if latencies else float("nan"),
        "share_200": codes[200] / n if n else 0.0,
        "share_304": codes[304] / n if n else 0.0,
        "other_statuses": {k: v for k, v in codes.items() if k not in (200, 304)},
        # The server's own cost, which the machine's load does not distort...
        "api_cpu_ms_per_poll": cores["api"] * watch.wall_s * 1000 / n if n else float("nan"),
        # ...and the pollers', which on a real deployment would be other machines'.
        "pollers_cpu_ms_per_poll": out["cpu_s"] * 1000 / n if n else float("nan"),
        "job_instances_done_per_s": job_rate,
        **{f"cores_{role}": used for role, used in cores.items()},
    }


def _finished(s: Stack, job_id: str) -> int:
    counts = s.counts(job_id)
    return counts["succeeded"] + counts["failed"]


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
            plain = _poll(s, big_id, poll_s, etag=False)
            tagged = _poll(s, big_id, poll_s, etag=True)
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
