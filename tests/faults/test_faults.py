"""Faults mid-job: each ends with every target final, none lost, counters equal to the rows.

Each test prints (and appends to bench/results/faults.jsonl, gitignored) the targets lost, the time
from the fault until the job made progress again, and the instances bound more than once.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest
import redis
from sqlalchemy import func, select

from app.config import Settings
from app.runtime import Runtime
from app.store.models import Attempt, Target
from tests.faults.conftest import check_invariants, progress, record, submit, wait_done
from tests.support.processes import Processes, settings_env, wait_for
from tests.support.simulator import Simulator, free_port

N = 600  # about 12 s of work at the simulator's 50/s


def recovery_time(rt: Runtime, job_id: str, since: float, timeout: float = 60) -> float:
    """Seconds from `since` until the job finishes another target."""
    before = progress(rt, job_id)

    def moved() -> bool:
        try:
            return progress(rt, job_id) > before
        except Exception:
            return False

    wait_for(moved, timeout=timeout, interval=0.1, what="progress after the fault")
    return round(time.monotonic() - since, 2)


def started(rt: Runtime, job_id: str, at_least: int) -> None:
    wait_for(lambda: progress(rt, job_id) >= at_least, timeout=60, what=f"{at_least} targets done")


def test_worker_killed_twice_mid_job(
    rt: Runtime, fsettings: Settings, sim: Simulator, procs: Processes
) -> None:
    env = settings_env(fsettings)
    procs.beat(env)
    victim = procs.worker(env, concurrency=3)
    job_id = submit(rt, N, "k")
    recoveries = []
    for threshold in (100, 300):
        started(rt, job_id, threshold)
        victim.kill(signal.SIGKILL)  # the main process and its pool children, no goodbye
        t = time.monotonic()
        victim = procs.worker(env, concurrency=3)
        recoveries.append(recovery_time(rt, job_id, t))
    wait_done(rt, job_id, timeout=120)
    figures = check_invariants(rt, job_id, N)
    assert figures["state"] == "succeeded"
    record(
        "worker SIGKILL x2", {**figures, "recovery_s": recoveries, "bound_twice": sim.bound_twice()}
    )


def test_worker_sigterm_drains_then_a_new_worker_finishes(
    rt: Runtime, fsettings: Settings, sim: Simulator, procs: Processes
) -> None:
    """A redeploy: SIGTERM lets in-flight calls finish and record; nothing is left leased for
    the sweeper, so no target pays a lease timeout or a `keybind.WorkerLost` attempt."""
    env = settings_env(fsettings)
    procs.beat(env)
    victim = procs.worker(env, concurrency=3)
    job_id = submit(rt, N, "s")
    started(rt, job_id, 150)
    victim.terminate_main()
    t = time.monotonic()
    victim.popen.wait(30)
    drain_s = round(time.monotonic() - t, 2)
    with rt.sessions() as s:
        # Accepted binds waiting for their verify look are `running` without a lease; what a
        # drained worker must not leave behind is a lease only the sweeper could clear.
        held = s.scalar(
            select(func.count()).where(Target.job_id == job_id, Target.lease_token.is_not(None))
        )
    assert held == 0, "a drained worker must leave no target leased"
    assert "Warm shutdown" in victim.log()
    procs.worker(env, concurrency=3)
    recovery = recovery_time(rt, job_id, time.monotonic())
    wait_done(rt, job_id, timeout=120)
    figures = check_invariants(rt, job_id, N)
    assert figures["state"] == "succeeded"
    with rt.sessions() as s:
        counted = s.scalar(select(func.sum(Target.attempts)).where(Target.job_id == job_id))
        recorded = s.scalar(
            select(func.count())
            .select_from(Attempt)
            .join(Target, Target.id == Attempt.target_id)
            .where(Target.job_id == job_id, Attempt.action == "AssociateInstancesKeyPairs")
        )
    # `attempts` counts bind calls; the sweeper counts one without a call record, so
    # equality with the bind calls on record means it never had to step in.
    assert counted == recorded
    record(
        "worker SIGTERM (redeploy)",
        {**figures, "drain_s": drain_s, "recovery_s": recovery, "bound_twice": sim.bound_twice()},
    )


def test_redis_flushall_mid_job(
    rt: Runtime, fsettings: Settings, sim: Simulator, procs: Processes, redis_client: redis.Redis
) -> None:
    env = settings_env(fsettings)
    procs.worker(env, concurrency=3, beat=True)
    job_id = submit(rt, N, "f")
    started(rt, job_id, 150)
    redis_client.flushall()  # queues, limiter state, everything
    t = time.monotonic()
    recovery = recovery_time(rt, job_id, t)
    wait_done(rt, job_id, timeout=120)
    figures = check_invariants(rt, job_id, N)
    assert figures["state"] == "succeeded"
    record("redis FLUSHALL", {**figures, "recovery_s": recovery, "bound_twice": sim.bound_twice()})


@pytest.fixture
def private_redis() -> str:
    """A Redis of this test's own on a free port, so restarting it disturbs nobody else."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server binary not installed")
    return f"redis://127.0.0.1:{free_port()}/0"


def _start_redis(url: str) -> subprocess.Popen[bytes]:
    port = url.rsplit(":", 1)[1].split("/")[0]
    proc = subprocess.Popen(
        ["redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    wait_for(lambda: _pings(url), timeout=10, what="redis up")
    return proc


def _pings(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url).ping())
    except redis.RedisError:
        return False


def test_redis_restarted_mid_job(
    fsettings: Settings, sim: Simulator, procs: Processes, private_redis: str
) -> None:
    server = _start_redis(private_redis)
    settings = fsettings.model_copy(update={"redis_url": private_redis})
    rt = Runtime(settings)
    try:
        env = settings_env(settings)
        procs.worker(env, concurrency=3, beat=True)
        job_id = submit(rt, N, "r")
        started(rt, job_id, 150)
        server.send_signal(signal.SIGKILL)  # nothing on disk: the restarted Redis is empty
        server.wait(5)
        time.sleep(2)
        server = _start_redis(private_redis)
        t = time.monotonic()
        recovery = recovery_time(rt, job_id, t, timeout=90)
        wait_done(rt, job_id, timeout=150)
        figures = check_invariants(rt, job_id, N)
        assert figures["state"] == "succeeded"
        record(
            "redis restart (empty)",
            {**figures, "recovery_s": recovery, "bound_twice": sim.bound_twice()},
        )
    finally:
        rt.close()
        server.kill()


def _pg(action: str) -> None:
    version = sorted(os.listdir("/etc/postgresql"))[0]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
        check=True,
        capture_output=True,
    )


@pytest.mark.skipif(not os.path.isdir("/etc/postgresql"), reason="needs the machine's own cluster")
def test_postgres_restarted_mid_job_api_answers_503(
    rt: Runtime, fsettings: Settings, sim: Simulator, procs: Processes
) -> None:
    from fastapi.testclient import TestClient

    from app.api.main import create_app
    from app.auth.tokens import create_token

    token = create_token(rt.sessions, name="pg-fault")
    env = settings_env(fsettings)
    procs.worker(env, concurrency=3, beat=True)
    job_id = submit(rt, N, "g")
    started(rt, job_id, 150)
    client = TestClient(create_app(fsettings), headers={"Authorization": f"Bearer {token}"})
    try:
        _pg("stop")
        t = time.monotonic()
        down = client.get(f"/v1/jobs/{job_id}")
        assert down.status_code == 503
        assert down.json()["error"]["code"] == "database_unavailable"
        assert "Traceback" not in down.text and "postgresql" not in down.text.lower()
        time.sleep(3)
    finally:
        _pg("start")
    recovery = recovery_time(rt, job_id, t, timeout=90)
    wait_done(rt, job_id, timeout=150)
    figures = check_invariants(rt, job_id, N)
    assert figures["state"] == "succeeded"
    assert client.get(f"/v1/jobs/{job_id}").status_code == 200
    record(
        "postgres restart", {**figures, "recovery_s": recovery, "bound_twice": sim.bound_twice()}
    )


def test_api_restarted_while_pollers_poll(
    rt: Runtime, fsettings: Settings, sim: Simulator, procs: Processes
) -> None:
    import httpx

    from app.auth.tokens import create_token

    token = create_token(rt.sessions, name="poller")
    env = settings_env(fsettings)
    port = free_port()
    api = procs.start("api", ["api", f"--port={port}"], env)
    procs.worker(env, concurrency=3, beat=True)
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _up(url), timeout=20, what="api up")
    headers = {"Authorization": f"Bearer {token}"}
    body = {
        "provider": "tencent",
        "region": "ap-guangzhou",
        "key_ids": ["skey-3glfot13"],
        "instance_ids": [f"ins-q{i:07d}" for i in range(N)],
    }
    job_id = httpx.post(f"{url}/v1/jobs", json=body, headers=headers, trust_env=False).json()["id"]
    errors = ok = 0
    restarted_at = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"{url}/v1/jobs/{job_id}", headers=headers, timeout=2, trust_env=False)
            assert r.status_code == 200, r.text
            ok += 1
            if r.json()["finished_at"]:
                break
        except httpx.TransportError:
            errors += 1
        if restarted_at is None and ok > 10:
            api.kill(signal.SIGTERM)
            api.popen.wait(10)
            api = procs.start("api", ["api", f"--port={port}"], env)
            restarted_at = time.monotonic()
        time.sleep(0.1)
    figures = check_invariants(rt, job_id, N)
    assert figures["state"] == "succeeded" and restarted_at is not None
    record(
        "api restart",
        {
            **figures,
            "polls_ok": ok,
            "polls_refused_while_down": errors,
            "bound_twice": sim.bound_twice(),
        },
    )


def _up(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url + "/healthz", timeout=1, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def test_thirty_percent_transient_faults(
    rt: Runtime, fsettings: Settings, sim: Simulator, procs: Processes
) -> None:
    sim.configure(timeout_fault_s=2.0)
    sim.set_faults(
        0.3, ["mutex", "in_progress", "internal", "throttle", "http5xx", "timeout"], seed=5
    )
    env = settings_env(fsettings)
    procs.worker(env, concurrency=4, beat=True)
    job_id = submit(rt, 300, "t")
    elapsed = wait_done(rt, job_id, timeout=180)
    figures = check_invariants(rt, job_id, 300)
    assert figures["state"] == "succeeded", figures
    stats = sim.stats("AssociateInstancesKeyPairs", detail=False)
    record(
        "30% transient replies",
        {
            **figures,
            "calls": stats["total"],
            "errors": stats["errors"],
            "wall_s": round(elapsed, 1),
            "bound_twice": sim.bound_twice(),
        },
    )
