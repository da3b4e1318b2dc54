"""A benchmark stack: fresh PostgreSQL database, Redis, the simulator, real workers, and
(optionally) the real API served by uvicorn in its own process.

Figures are printed as `name: key = value` lines and written as JSON under bench/results/
(gitignored), so a run never dirties the tracked tree.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis
from pydantic import SecretStr
from sqlalchemy import func, select

from app.auth.tokens import create_token
from app.broker import names
from app.broker.celery_app import celery_for
from app.broker.producer import CeleryProducer
from app.config import Settings
from app.jobs.reads import get_job
from app.jobs.schemas import JobCreate
from app.jobs.submit import Submitter, submit_job
from app.migrate import upgrade
from app.runtime import Runtime
from app.store.models import Job
from tests.support.processes import REPO, Proc, Processes, settings_env
from tests.support.simulator import SECRET_ID, SECRET_KEY, Simulator, free_port, start_simulator

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/3"
RESULTS = REPO / "bench" / "results"
BIND = "AssociateInstancesKeyPairs"
KEY = "skey-3glfot13"


def instance_ids(n: int, prefix: str = "b") -> list[str]:
    """`n` well-formed, distinct instance IDs (`ins-` + 8 lower-case letters or digits)."""
    return [f"ins-{prefix}{i:07d}" for i in range(n)]


@dataclass
class Api:
    url: str
    token: str
    proc: Proc

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.token}"},
            trust_env=False,
            timeout=60,
            **kwargs,
        )


@dataclass
class Stack:
    settings: Settings
    rt: Runtime
    sim: Simulator
    procs: Processes
    redis: redis.Redis
    api: Api | None = None
    layout: list[int] = field(default_factory=list)  # pool size of each worker process

    @property
    def bind_queue(self) -> str:
        return names.bind_queue(self.settings)

    @cached_property
    def producer(self) -> CeleryProducer:
        return CeleryProducer(celery_for(self.settings), self.settings)

    def submit(self, ids: list[str], *, kick: bool = True, **extra: Any) -> str:
        """Submit in-process (the API's own service function) and kick the dispatcher."""
        request = JobCreate(
            provider="tencent", region="ap-guangzhou", instance_ids=ids, key_ids=[KEY], **extra
        )
        sub = submit_job(
            sessions=self.rt.sessions,
            request=request,
            submitter=Submitter("bench", "cli"),
            max_instances=self.settings.max_instances,
        )
        if kick:
            self.producer.kick_dispatch()
        return sub.job.id

    def job(self, job_id: str) -> Job:
        job = get_job(sessions=self.rt.sessions, job_id=job_id, tenant=None)
        assert job is not None
        return job

    def wait(self, job_id: str, timeout: float, interval: float = 0.05) -> Job:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job.finished_at is not None:
                return job
            time.sleep(interval)
        raise TimeoutError(f"job {job_id} not final after {timeout} s: {self.counts(job_id)}")

    def counts(self, job_id: str) -> dict[str, int]:
        j = self.job(job_id)
        return {
            "pending": j.n_pending,
            "running": j.n_running,
            "retrying": j.n_retrying,
            "succeeded": j.n_succeeded,
            "failed": j.n_failed,
        }

    def queued_messages(self) -> int:
        """Messages waiting in this stack's broker queues (all lanes)."""
        return sum(int(self.redis.llen(k)) for k in self.redis.scan_iter(f"{self.bind_queue}*"))

    def own_redis_bytes(self) -> int:
        """Bytes held by this stack's own keys: its queues and its limiter buckets."""
        total = 0
        for pattern in (f"{self.settings.queue_prefix}*", f"*{self.settings.queue_prefix}*"):
            for key in self.redis.scan_iter(pattern, count=1000):
                total += int(self.redis.memory_usage(key) or 0)
        return total

    def jobs_total(self) -> int:
        with self.rt.sessions() as s:
            return int(s.scalar(select(func.count()).select_from(Job)) or 0)


@contextmanager
def stack(
    *,
    layout: list[int],
    sim_limit: float,
    rate_limit: float,
    beat: bool = True,
    api: bool = False,
    **overrides: Any,
) -> Iterator[Stack]:
    """`layout`: one entry per `keybind worker` process, each its pool size (processes)."""
    db = f"keybind_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    sim = start_simulator(rate_limit=sim_limit)
    home = Path(f"/tmp/{db}")
    home.mkdir(parents=True, exist_ok=True)
    settings = Settings(
        database_url=f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}",
        redis_url=REDIS_URL,
        queue_prefix=db,
        home=home,
        tencent_endpoint=sim.url,
        tencentcloud_secret_id=SecretStr(SECRET_ID),
        tencentcloud_secret_key=SecretStr(SECRET_KEY),
        rate_limit=rate_limit,
        **overrides,
    )
    upgrade(settings)
    rt = Runtime(settings)
    procs = Processes(log_dir=home)
    env = settings_env(settings)
    client = redis.Redis.from_url(REDIS_URL)
    try:
        for i, pool in enumerate(layout):
            procs.worker(env, concurrency=pool, beat=beat and i == 0)
        served: Api | None = None
        if api:
            port = free_port()
            token = create_token(rt.sessions, name="bench")
            proc = procs.start("api", ["api", "--port", str(port)], env)
            served = Api(f"http://127.0.0.1:{port}", token, proc)
            _wait_http(served.url + "/healthz", proc)
        _wait_workers(settings, [p for p in procs.procs if p.name == "worker"])
        yield Stack(settings, rt, sim, procs, client, served, layout)
    finally:
        procs.stop_all()
        sim.stop()
        rt.close()
        for key in client.scan_iter(f"*{db}*", count=1000):
            client.delete(key)
        client.close()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def _wait_http(url: str, proc: Proc, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited:\n{proc.log()[-3000:]}")
        try:
            if httpx.get(url, timeout=1.0, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up within {timeout:.0f} s")


def _wait_workers(settings: Settings, workers: list[Proc], timeout: float = 60.0) -> None:
    """Until every worker process answers a ping, so timings do not include start-up. By
    name: Celery's control channel is shared by every worker on the Redis database."""
    celery = celery_for(settings)
    hostnames = [f"keybind-{w.popen.pid}@{socket.gethostname()}" for w in workers]
    deadline = time.monotonic() + timeout
    answered: set[str] = set()
    while time.monotonic() < deadline:
        for reply in celery.control.ping(destination=hostnames, timeout=0.5) or []:
            answered.update(reply)
        if answered >= set(hostnames):
            return
        for w in workers:
            if not w.alive():
                raise RuntimeError(f"worker exited:\n{w.log()[-3000:]}")
    missing = sorted(set(hostnames) - answered)
    raise RuntimeError(f"workers {missing} did not answer in {timeout:.0f} s")


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (0-100) by nearest rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, round(p / 100 * len(ordered) + 0.5 - 1e-9))
    return ordered[min(len(ordered), rank) - 1]


def report(name: str, figures: dict[str, Any]) -> dict[str, Any]:
    """Print the figures as `name: key = value` lines and write them to bench/results/."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(figures, indent=2, default=str) + "\n")
    for key, value in figures.items():
        shown = f"{value:.3f}" if isinstance(value, float) else value
        print(f"{name}: {key} = {shown}", flush=True)
    return figures
