"""Secrets stay secret: after a full run, no cloud credential or API token is found in any
process log, any database row, or any API response (including error responses)."""

from __future__ import annotations

from pathlib import Path

import httpx
from sqlalchemy import inspect, text

from app.auth.tokens import create_token
from app.config import Settings
from app.runtime import Runtime
from tests.support.processes import Processes, settings_env, wait_for
from tests.support.simulator import SECRET_ID, SECRET_KEY, Simulator, free_port

SESSION_TOKEN = "stsTOKENleakCHECKstsTOKENleakCHECK"


def all_rows_as_text(rt: Runtime) -> str:
    """Every row of every table, as JSON text: what a backup or a curious DBA would see."""
    with rt.engine.connect() as conn:
        tables = inspect(conn).get_table_names()
        return "\n".join(
            str(row[0])
            for table in tables
            for row in conn.execute(text(f'SELECT row_to_json(t)::text FROM "{table}" t'))
        )


def test_no_secret_reaches_logs_rows_or_responses(
    rt: Runtime, e2e_settings: Settings, simulator: Simulator, procs: Processes, tmp_path: Path
) -> None:
    token = create_token(rt.sessions, name="leak-check")
    env = settings_env(e2e_settings, TENCENTCLOUD_SESSION_TOKEN=SESSION_TOKEN)
    port = free_port()
    api = procs.start("api", ["api", f"--port={port}"], env)
    worker = procs.worker(env, concurrency=2, beat=True)
    url = f"http://127.0.0.1:{port}"
    http = httpx.Client(base_url=url, trust_env=False, timeout=10)
    wait_for(lambda: _up(http), timeout=20, what="api up")
    auth = {"Authorization": f"Bearer {token}"}

    missing = ["ins-x0000001"]
    simulator.set_missing(missing)
    body = {
        "provider": "tencent",
        "region": "ap-guangzhou",
        "key_ids": ["skey-3glfot13"],
        "instance_ids": [f"ins-s{i:07d}" for i in range(20)] + missing,
    }
    responses: list[str] = []
    created = http.post("/v1/jobs", json=body, headers=auth)
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]
    responses.append(created.text)

    def finished() -> bool:
        r = http.get(f"/v1/jobs/{job_id}", headers=auth)
        responses.append(r.text)
        return r.json()["finished_at"] is not None

    wait_for(finished, timeout=60, interval=0.5, what="the job to finish")
    page = http.get(f"/v1/jobs/{job_id}/instances", params={"limit": 1000}, headers=auth)
    assert any(i["error_code"] == "InvalidInstanceId.NotFound" for i in page.json()["items"])
    responses.append(page.text)
    # Error paths echo input back: make sure they never echo a credential.
    for bad in (
        http.get(f"/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {token}x"}),
        http.post("/v1/jobs", json={**body, "region": "mars-1"}, headers=auth),
        http.get("/v1/jobs/nope", headers=auth),
    ):
        assert bad.status_code in (401, 404, 422)
        responses.append(bad.text)
    http.close()
    api.stop()
    worker.stop()

    secrets = {
        "TENCENTCLOUD_SECRET_ID": SECRET_ID,
        "TENCENTCLOUD_SECRET_KEY": SECRET_KEY,
        "TENCENTCLOUD_SESSION_TOKEN": SESSION_TOKEN,
        "API token": token,
    }
    logs = {p.name: p.log() for p in (api, worker)}
    assert all(logs.values()), "the processes wrote logs, so there was something to search"
    rows = all_rows_as_text(rt)
    assert job_id in rows, "the database dump holds the run"
    for what, value in secrets.items():
        for name, log in logs.items():
            assert value not in log, f"{what} appears in the {name} log"
        assert value not in rows, f"{what} appears in a database row"
        assert not [r for r in responses if value in r], f"{what} appears in an API response"
    assert token[:12] not in rows, "only the token's hash is stored"


def _up(http: httpx.Client) -> bool:
    try:
        return http.get("/healthz").status_code == 200
    except httpx.HTTPError:
        return False
