"""A benchmark stack: fresh PostgreSQL database, Redis, the simulator and real workers."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from pydantic import SecretStr

from app.config import Settings
from app.jobs.schemas import JobCreate
from app.jobs.service import Submitter, get_job, submit_job
from app.migrate import upgrade
from app.runtime import Runtime
from tests.support.processes import Processes, settings_env
from tests.support.simulator import SECRET_ID, SECRET_KEY, Simulator, start_simulator

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Stack:
    settings: Settings
    rt: Runtime
    sim: Simulator
    procs: Processes

    def submit(self, instance_ids: list[str], **extra: Any) -> str:
        request = JobCreate(
            provider="tencent",
            region="ap-guangzhou",
            instance_ids=instance_ids,
            key_ids=["skey-3glfot13"],
            **extra,
        )
        sub = submit_job(
            sessions=self.rt.sessions,
            request=request,
            submitter=Submitter("bench", "cli"),
            max_instances=self.settings.max_instances,
        )
        self.rt.kick_dispatch()
        return sub.job.id

    def wait(self, job_id: str, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = get_job(sessions=self.rt.sessions, job_id=job_id, tenant=None)
            if job is not None and job.finished_at is not None:
                return job
            time.sleep(0.05)
        raise TimeoutError(f"job {job_id} not final after {timeout} s")


@contextmanager
def stack(
    *, workers: int, concurrency: int, sim_limit: float, rate_limit: float, **overrides: Any
) -> Iterator[Stack]:
    db = f"keybind_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    sim = start_simulator(rate_limit=sim_limit)
    home = Path(f"/tmp/{db}")
    settings = Settings(
        database_url=f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}",
        redis_url="redis://127.0.0.1:6379/3",
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
    home.mkdir(parents=True, exist_ok=True)
    env = settings_env(settings)
    for i in range(workers):
        procs.worker(env, concurrency=concurrency, beat=(i == 0))
    try:
        time.sleep(3)  # workers up and consuming
        yield Stack(settings, rt, sim, procs)
    finally:
        procs.stop_all()
        sim.stop()
        rt.close()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def report(name: str, figures: dict[str, Any]) -> None:
    """Print the figures as lines and write them as JSON under tests/bench/results/."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(figures, indent=2, default=str))
    for key, value in figures.items():
        shown = f"{value:.3f}" if isinstance(value, float) else value
        print(f"{name}: {key} = {shown}")
