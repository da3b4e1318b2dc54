"""Real workers: a webhook's small job overtakes a bulk job on the same account, and Flower
runs on keybind's broker and sees the workers."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi.testclient import TestClient
from pydantic import SecretStr
from standardwebhooks import Webhook

from app.api.main import create_app
from app.broker.names import NOOP_TASK
from app.config import Settings
from app.worker.celery_app import create_celery
from tests.support.processes import Processes, settings_env, wait_for
from tests.support.simulator import Simulator, free_port

SECRET = "whsec_" + base64.b64encode(b"e2e-webhook-secret-0123456789!").decode()


def body(ids: list[str]) -> dict[str, Any]:
    return {
        "provider": "tencent",
        "region": "ap-guangzhou",
        "instance_ids": ids,
        "key_ids": ["skey-3glfot13"],
    }


def test_a_webhook_rotation_overtakes_a_bulk_job(
    e2e_settings: Settings, token: str, simulator: Simulator, procs: Processes
) -> None:
    settings = e2e_settings.model_copy(
        update={"webhook_secret": SecretStr(SECRET), "rate_limit": 20.0}
    )
    simulator.configure(rate_limit=20)
    procs.worker(settings_env(settings), concurrency=4, beat=True)
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {token}"}) as client:
        bulk = client.post("/v1/jobs", json=body([f"ins-b{i:07d}" for i in range(600)]))
        assert bulk.status_code == 202
        wait_for(
            lambda: client.get(f"/v1/jobs/{bulk.json()['id']}").json()["counts"]["succeeded"] > 40,
            timeout=120,
            what="the bulk job to be under way",
        )
        raw = json.dumps(body([f"ins-w{i:07d}" for i in range(10)])).encode()
        msg_id, now = f"msg_{uuid.uuid4().hex}", datetime.now(UTC)
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(SECRET).sign(msg_id, now, raw.decode()),
        }
        urgent = client.post("/v1/hooks/rotate", content=raw, headers=headers)
        assert urgent.status_code == 202, urgent.text
        assert client.post("/v1/hooks/rotate", content=raw, headers=headers).json() == urgent.json()

        def final(job_id: str) -> dict[str, Any]:
            job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
            return job

        wait_for(
            lambda: final(urgent.json()["id"])["finished_at"] is not None,
            timeout=120,
            what="the webhook job",
        )
        small, big = final(urgent.json()["id"]), final(bulk.json()["id"])
    assert small["state"] == "succeeded" and small["source"] == "webhook"
    # Served first: it finished while the bulk job, which started well before it, still ran.
    assert big["finished_at"] is None, big
    assert big["counts"]["succeeded"] + big["counts"]["running"] < 600


def test_flower_runs_on_the_same_broker_and_sees_the_workers(
    e2e_settings: Settings, procs: Processes
) -> None:
    env = settings_env(e2e_settings)
    procs.worker(env, concurrency=1)
    port = free_port()
    # As deploy/ runs it: basic auth from the environment (Flower's own FLOWER_ variables).
    procs.start("flower", ["flower", f"--port={port}"], {**env, "FLOWER_BASIC_AUTH": "ops:s3cret"})
    base = f"http://127.0.0.1:{port}"
    auth = ("ops", "s3cret")

    def healthy() -> bool:
        try:
            return httpx.get(f"{base}/healthcheck", timeout=2, trust_env=False).text == "OK"
        except httpx.HTTPError:
            return False

    wait_for(healthy, timeout=60, what="Flower")

    def sees_worker() -> bool:
        page = httpx.get(f"{base}/workers?refresh=1", auth=auth, timeout=10, trust_env=False).text
        return "keybind-" in page

    # Workers name themselves keybind-<pid>@<host> (see app/cli/serve.py).
    wait_for(sees_worker, timeout=60, interval=1, what="Flower to list the keybind worker")

    # Workers send no task events of their own (they cost every task three publishes);
    # Flower switches them on, so the tasks it is shown are those run while it watches.
    celery = create_celery(e2e_settings)
    queue = f"{e2e_settings.queue_prefix}.bind"

    def sees_task() -> bool:
        celery.send_task(NOOP_TASK, queue=queue)
        tasks = httpx.get(f"{base}/api/tasks", auth=auth, timeout=10, trust_env=False).json()
        return any(t.get("name") == NOOP_TASK for t in tasks.values())

    wait_for(sees_task, timeout=60, interval=2, what="Flower to see a task the worker ran")
    assert httpx.get(f"{base}/workers", timeout=10, trust_env=False).status_code == 401
