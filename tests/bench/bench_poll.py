"""Polling cost: p50/p99 of `GET /v1/jobs/{id}` on a 100,000-instance job while it runs,
with 100 concurrent pollers each polling once a second with If-None-Match, like dashboards.

Two phases of `--seconds` each: while the job really runs (one worker at Tencent's 10 calls/s
against the simulator, so its version changes about 20 times a second and a poller a second
apart nearly always sees a new version: 200), then after cancelling it (the ~100k waiting
targets in one request, timed), when every poll with the ETag is a 304. The API runs as
`keybind api --workers 2` in its own processes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

import httpx

from app.auth.tokens import create_token
from tests.bench.harness import report, stack
from tests.support.processes import settings_env
from tests.support.simulator import free_port


async def poller(
    client: httpx.AsyncClient, url: str, until: float, interval: float, out: list[tuple[int, float]]
) -> None:
    etag: str | None = None
    # Spread the pollers over the interval, as independent dashboards would be.
    await asyncio.sleep(interval * (hash(asyncio.current_task()) % 1000) / 1000)
    while time.monotonic() < until:
        headers = {"If-None-Match": etag} if etag else {}
        t0 = time.perf_counter()
        r = await client.get(url, headers=headers)
        out.append((r.status_code, (time.perf_counter() - t0) * 1000))
        etag = r.headers.get("etag", etag)
        await asyncio.sleep(interval)


async def poll(
    url: str, token: str, pollers: int, seconds: float, interval: float
) -> list[tuple[int, float]]:
    out: list[tuple[int, float]] = []
    limits = httpx.Limits(max_connections=pollers, max_keepalive_connections=pollers)
    async with httpx.AsyncClient(
        headers={"Authorization": f"Bearer {token}"}, limits=limits, timeout=30, trust_env=False
    ) as client:
        until = time.monotonic() + seconds
        await asyncio.gather(*(poller(client, url, until, interval, out) for _ in range(pollers)))
    return out


def cpu_seconds(root: int) -> float:
    """User+system CPU of `root` and its children (the uvicorn workers), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry), int(fields[1])
        if pid == root or ppid == root:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(instances: int, pollers: int, seconds: float, interval: float) -> dict[str, object]:
    with stack(workers=1, concurrency=2, sim_limit=10, rate_limit=10) as s:
        token = create_token(s.rt.sessions, name="bench-poll")
        port = free_port()
        api = s.procs.start(
            "api", ["api", f"--port={port}", "--workers=2"], settings_env(s.settings)
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(base + "/healthz", timeout=1, trust_env=False)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        t0 = time.monotonic()
        job_id = s.submit([f"ins-{i:08x}" for i in range(instances)])
        submit_s = time.monotonic() - t0
        time.sleep(3)  # running
        url = f"{base}/v1/jobs/{job_id}"
        figures: dict[str, object] = {
            "instances": instances,
            "pollers": pollers,
            "poll_interval_s": interval,
            "duration_s": seconds,
            "submit_s": submit_s,
        }
        cpu0 = cpu_seconds(api.popen.pid)
        running = asyncio.run(poll(url, token, pollers, seconds, interval))
        figures.update(summarise("running", running, seconds))
        # The API's own CPU per poll: a figure the machine's load does not distort.
        figures["running_api_cpu_ms_per_poll"] = (
            (cpu_seconds(api.popen.pid) - cpu0) * 1000 / len(running)
        )
        # Cancel it: ~100k waiting targets in one request, then poll the final job.
        t0 = time.monotonic()
        r = httpx.post(
            f"{url}/cancel",
            headers={"Authorization": f"Bearer {token}"},
            timeout=120,
            trust_env=False,
        )
        figures["cancel_s"] = time.monotonic() - t0
        figures["cancelled_targets"] = r.json()["counts"]["cancelled"]
        time.sleep(2)
        cpu0 = cpu_seconds(api.popen.pid)
        final = asyncio.run(poll(url, token, pollers, seconds, interval))
        figures.update(summarise("final", final, seconds))
        # The API's own CPU per poll: a figure the machine's load does not distort.
        figures["final_api_cpu_ms_per_poll"] = (
            (cpu_seconds(api.popen.pid) - cpu0) * 1000 / len(final)
        )
        return figures


def summarise(phase: str, results: list[tuple[int, float]], seconds: float) -> dict[str, object]:
    lat = [ms for _, ms in results]
    n304 = sum(1 for code, _ in results if code == 304)
    n200 = sum(1 for code, _ in results if code == 200)
    return {
        f"{phase}_requests": len(results),
        f"{phase}_requests_per_s": len(results) / seconds,
        f"{phase}_status_200": n200,
        f"{phase}_status_304": n304,
        f"{phase}_other_status": len(results) - n200 - n304,
        f"{phase}_share_304": n304 / len(results),
        f"{phase}_p50_ms": statistics.median(lat),
        f"{phase}_p99_ms": pct(lat, 0.99),
        f"{phase}_max_ms": max(lat),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--pollers", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    report("poll", run(args.instances, args.pollers, args.seconds, args.interval))


if __name__ == "__main__":
    main()
