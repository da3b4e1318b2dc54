"""The README's first command, `keybind dev`, as a user runs it: SQLite, the filesystem broker,
the file limiter, the bundled simulator and a real worker process, with no server at all.

The same pipeline the PostgreSQL tests drive (submit, claim, call, retry, verify, cancel,
idempotency) runs here on the embedded stack exactly as `keybind dev` composes it.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.processes import Proc, Processes, wait_for
from tests.support.simulator import Simulator, free_port

TOKEN = re.compile(r"token\s+(kb_\S+)")


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[tuple[httpx.Client, Simulator, Path, Proc]]:
    home = tmp_path / "home"
    # Nothing of the test run's own configuration: what a fresh shell gives `keybind dev`.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KEYBIND_", "TENCENTCLOUD_", "JDCLOUD_"))
    }
    env.update({"KEYBIND_HOME": str(home), "PYTHONUNBUFFERED": "1", "NO_PROXY": "127.0.0.1"})
    api_port, sim_port = free_port(), free_port()
    procs = Processes(log_dir=tmp_path)
    proc = procs.start(
        "dev", ["dev", f"--port={api_port}", f"--simulator-port={sim_port}", "--concurrency=2"], env
    )
    found: list[str] = []

    def up() -> bool:
        assert proc.alive(), proc.log()
        found[:] = TOKEN.findall(proc.log())
        return bool(found)

    try:
        wait_for(up, timeout=60, what="keybind dev to print its token")
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{api_port}",
            headers={"Authorization": f"Bearer {found[0]}"},
            timeout=30,
            trust_env=False,
        )
        simulator = Simulator(sim_port, proc.popen, proc.log_path)  # driven, not owned
        yield client, simulator, home, proc
        client.close()
    finally:
        procs.stop_all()
        if proc.popen.returncode not in (0, None):
            print(proc.log()[-4000:])


def submit(client: httpx.Client, body: dict[str, Any], **headers: str) -> str:
    r = client.post("/v1/jobs", json=body, headers=headers)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def final(client: httpx.Client, job_id: str, timeout: float = 90) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def done() -> bool:
        seen.update(client.get(f"/v1/jobs/{job_id}").json())
        return seen["finished_at"] is not None

    wait_for(done, timeout=timeout, interval=0.3, what=f"job {job_id} to finish")
    return seen


def instances(client: httpx.Client, job_id: str) -> dict[str, dict[str, Any]]:
    page = client.get(f"/v1/jobs/{job_id}/instances", params={"limit": 1000}).json()
    return {i["instance_id"]: i for i in page["items"]}


def test_keybind_dev_binds_retries_verifies_and_cancels_with_no_servers(
    dev: tuple[httpx.Client, Simulator, Path, Proc],
) -> None:
    client, simulator, home, _ = dev
    busy = [f"ins-busy{n:04d}" for n in range(3)]
    missing = ["ins-gone0000"]
    fine = [f"ins-fine{n:04d}" for n in range(26)]
    simulator.put_instances(
        [{"id": i, "faults": [{"code": "MutexOperation.TaskRunning", "times": 2}]} for i in busy]
    )
    simulator.set_missing(missing)
    body = {
        "provider": "tencent",
        "region": "ap-guangzhou",
        "instance_ids": busy + missing + fine,
        "key_ids": ["skey-3glfot13"],
    }

    job_id = submit(client, body, **{"Idempotency-Key": "first"})
    # A repeat with the same key is the same job (SQLite's idempotency path).
    assert submit(client, body, **{"Idempotency-Key": "first"}) == job_id
    job = final(client, job_id)

    assert job["state"] == "partial", job
    assert job["counts"] == {
        "pending": 0,
        "running": 0,
        "retrying": 0,
        "succeeded": 29,
        "failed": 1,
        "cancelled": 0,
    }
    by_id = instances(client, job_id)
    assert all((by_id[i]["state"], by_id[i]["attempts"]) == ("succeeded", 3) for i in busy)
    assert by_id[missing[0]]["error_code"] == "InvalidInstanceId.NotFound"
    assert all(by_id[i]["verify_request_id"] for i in busy + fine)  # confirmed by a look
    # The file limiter held every worker process to Tencent's documented 10 calls/s.
    stats = simulator.stats("AssociateInstancesKeyPairs")
    assert stats["throttled"] == 0 and stats["max_in_any_second"] <= 10

    # A JD job on the same embedded stack.
    jd = submit(
        client,
        {
            "provider": "jdcloud",
            "region": "cn-north-1",
            "instance_ids": [f"i-embedded{n:02d}" for n in range(4)],
            "key_name": "ops-2026",
            "password_auth": "no",
        },
    )
    assert final(client, jd)["state"] == "succeeded"

    # Cancel: 300 calls at 10/s leave plenty waiting; the job ends cancelled, nothing open.
    big = submit(client, {**body, "instance_ids": [f"ins-many{n:04d}" for n in range(300)]})
    wait_for(
        lambda: client.get(f"/v1/jobs/{big}").json()["counts"]["succeeded"] > 0,
        timeout=30,
        what="the big job's first success",
    )
    r = client.post(f"/v1/jobs/{big}/cancel")
    assert r.status_code == 200 and r.json()["counts"]["cancelled"] > 0
    ended = final(client, big)
    assert ended["state"] == "cancelled"
    assert ended["counts"]["pending"] == ended["counts"]["running"] == 0

    # It all ran on the embedded parts: the SQLite file, the broker's folders, the limiter's.
    with sqlite3.connect(home / "keybind.sqlite3") as db:
        (jobs,) = db.execute("SELECT count(*) FROM jobs").fetchone()
    assert jobs == 3
    assert (home / "broker" / "queue").is_dir()
    assert list((home / "ratelimit").glob("tencent_default_AssociateInstancesKeyPairs*"))
