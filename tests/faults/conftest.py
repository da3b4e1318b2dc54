"""Fault-test fixtures: a stack whose parts each test may kill, wipe or restart."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from app.broker.celery_app import celery_for
from app.broker.producer import CeleryProducer
from app.config import Settings
from app.jobs.schemas import JobCreate
from app.jobs.submit import Submitter, submit_job
from app.runtime import Runtime
from app.store.models import Job, Target
from tests.support.processes import Processes, wait_for
from tests.support.simulator import SECRET_ID, SECRET_KEY, Simulator, start_simulator

FIGURES = Path(__file__).resolve().parents[2] / "bench" / "results" / "faults.jsonl"
RATE = 50.0


@pytest.fixture
def sim() -> Iterator[Simulator]:
    s = start_simulator(rate_limit=RATE)
    yield s
    s.stop()


@pytest.fixture
def fsettings(settings: Settings, sim: Simulator) -> Settings:
    """Short leases and timeouts, so recovery is quick enough to test."""
    return settings.model_copy(
        update={
            "tencent_endpoint": sim.url,
            "tencentcloud_secret_id": SecretStr(SECRET_ID),
            "tencentcloud_secret_key": SecretStr(SECRET_KEY),
            "rate_limit": RATE,
            "lease_s": 4.0,
            "dispatch_lease_s": 4.0,
            "dispatch_interval_s": 0.5,
            "http_timeout_s": 1.0,
            "max_attempts": 12,
            "backoff_base_s": 0.1,
            "backoff_max_s": 1.0,
        }
    )


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    p = Processes(log_dir=tmp_path)
    yield p
    p.stop_all()


def submit(rt: Runtime, n: int, prefix: str) -> str:
    request = JobCreate(
        provider="tencent",
        region="ap-guangzhou",
        instance_ids=[f"ins-{prefix}{i:07d}" for i in range(n)],
        key_ids=["skey-3glfot13"],
    )
    job = submit_job(
        sessions=rt.sessions, request=request, submitter=Submitter("faults"), max_instances=n
    ).job
    # The broker may be the very thing under test; the scheduler's next tick starts the job.
    with contextlib.suppress(Exception):
        CeleryProducer(celery_for(rt.settings), rt.settings).kick_dispatch()
    return job.id


def progress(rt: Runtime, job_id: str) -> int:
    with rt.sessions() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job.n_succeeded + job.n_failed + job.n_cancelled


def wait_done(rt: Runtime, job_id: str, timeout: float) -> float:
    start = time.monotonic()

    def done() -> bool:
        try:
            with rt.sessions() as s:
                job = s.get(Job, job_id)
                return job is not None and job.finished_at is not None
        except Exception:
            return False

    wait_for(done, timeout=timeout, interval=0.25, what=f"job {job_id} to finish")
    return time.monotonic() - start


def check_invariants(rt: Runtime, job_id: str, total: int) -> dict[str, Any]:
    """Every target final, counters equal to the rows, nothing lost."""
    with rt.sessions() as s:
        job = s.get(Job, job_id)
        assert job is not None and job.finished_at is not None
        rows = dict(
            s.execute(
                select(Target.state, func.count())
                .where(Target.job_id == job_id)
                .group_by(Target.state)
            ).all()
        )
    counters = {
        "pending": job.n_pending,
        "running": job.n_running,
        "retrying": job.n_retrying,
        "succeeded": job.n_succeeded,
        "failed": job.n_failed,
        "cancelled": job.n_cancelled,
    }
    assert {k: v for k, v in counters.items() if v} == rows, (counters, rows)
    assert sum(rows.values()) == total
    lost = total - sum(rows.get(s, 0) for s in ("succeeded", "failed", "cancelled"))
    assert lost == 0
    return {"state": job.state, "succeeded": job.n_succeeded, "failed": job.n_failed, "lost": lost}


def record(name: str, figures: dict[str, Any]) -> None:
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    with FIGURES.open("a") as f:
        f.write(json.dumps({"fault": name, **figures}) + "\n")
    print(f"\nFAULT {name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
