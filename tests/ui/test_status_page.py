"""The status page: sign-in rules through the app, then what a person sees in headless
Chromium against a real uvicorn server."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.auth.tokens import create_token, revoke_token
from app.domain.states import TargetState
from app.runtime import Runtime
from app.store.counters import CounterDeltas, apply_counts
from app.store.db import transaction, utcnow
from app.store.models import Target
from tests.support.moves import move
from tests.support.server import api_server

BODY = {
    "provider": "tencent",
    "region": "ap-guangzhou",
    "instance_ids": ["ins-r8hr2upy", "ins-3e56fg78", "ins-1e4r6y8i", "ins-9k2m4n6p"],
    "key_ids": ["skey-3glfot13"],
}
NOT_FOUND = "InvalidInstanceId.NotFound"


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def finish(rt: Runtime, target_id: int, job_id: str, dst: TargetState, code: str | None) -> None:
    """Claim, then record, in two transactions: what a worker does."""
    now = utcnow()
    with transaction(rt.sessions) as s:
        deltas = CounterDeltas()
        move(
            s,
            deltas,
            target_id=target_id,
            job_id=job_id,
            src=TargetState.PENDING,
            dst=TargetState.RUNNING,
            lease_token="t",
            lease_until=now + timedelta(minutes=1),
        )
        apply_counts(s, deltas, now)
    with transaction(rt.sessions) as s:
        deltas = CounterDeltas()
        move(
            s,
            deltas,
            target_id=target_id,
            job_id=job_id,
            src=TargetState.RUNNING,
            dst=dst,
            holder="t",
            attempts=1,
            error_code=code,
            finished_at=now,
            error_message="The instance does not exist." if code else None,
        )
        apply_counts(s, deltas, now)


def a_running_job_with_a_failure(client: TestClient, rt: Runtime) -> str:
    job_id = str(client.post("/v1/jobs", json=BODY).json()["id"])
    with rt.sessions() as s:
        t = list(s.scalars(select(Target.id).where(Target.job_id == job_id).order_by(Target.id)))
    finish(rt, t[0], job_id, TargetState.SUCCEEDED, None)
    finish(rt, t[1], job_id, TargetState.SUCCEEDED, None)
    finish(rt, t[2], job_id, TargetState.FAILED, NOT_FOUND)
    return job_id


def test_pages_need_a_signed_in_token(client: TestClient, rt: Runtime, token: str) -> None:
    anon = TestClient(client.app, follow_redirects=False)
    r = anon.get("/")
    assert r.status_code == 307 and r.headers["location"] == "/ui"
    r = anon.get("/ui/jobs/x")
    assert r.status_code == 303 and r.headers["location"] == "/ui/login?next=/ui/jobs/x"
    assert "Sign in" in anon.get("/ui/login").text
    r = anon.post(
        "/ui/login",
        content="token=kb_wrong&next=/ui",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert (
        r.status_code == 200
        and "unknown, revoked" in r.text
        and "keybind_token" not in r.headers.get("set-cookie", "")
    )
    r = anon.post(
        "/ui/login",
        content=f"token={token}&next=//evil.example/x",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 303 and r.headers["location"] == "/ui"  # no open redirect
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert anon.get("/ui").status_code == 200  # the cookie now signs us in
    reader = create_token(rt.sessions, name="viewer", scopes=("jobs:read",))
    viewer = TestClient(client.app, follow_redirects=False)
    assert viewer.get(f"/ui/login?token={reader}&next=/ui").status_code == 303
    assert viewer.get("/ui").status_code == 200
    revoke_token(rt.sessions, name="viewer")
    assert viewer.get("/ui").status_code == 303  # revoked: back to sign-in


def test_the_job_page_shows_progress_counts_and_failures(client: TestClient, rt: Runtime) -> None:
    job_id = a_running_job_with_a_failure(client, rt)
    page = client.get(
        f"/ui/login?token={client.headers['authorization'][7:]}&next=/ui/jobs/{job_id}"
    )
    assert page.status_code == 200
    html = page.text
    assert job_id in html and "<span class='state s-running'>running</span>" in html
    assert NOT_FOUND in html and "ins-1e4r6y8i" in html
    assert 'http-equiv="refresh"' in html  # not final: it refreshes itself
    assert "75.0%" in html


@pytest.mark.skipif(
    chromium() is None, reason="no chromium on PATH (Debian: apt-get install chromium)"
)
def test_a_person_sees_the_job_in_chromium(
    client: TestClient, rt: Runtime, token: str, tmp_path: Path
) -> None:
    browser = chromium()
    assert browser is not None
    job_id = a_running_job_with_a_failure(client, rt)
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
    ]

    def run(*args: str, profile: str = "signed-in") -> str:
        done = subprocess.run(
            [browser, *flags, f"--user-data-dir={tmp_path / profile}", *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    with api_server(rt.settings) as base:
        # Signing in sets the cookie and redirects to the job page, all in one browser load.
        dom = run("--dump-dom", f"{base}/ui/login?token={token}&next=/ui/jobs/{job_id}")
        assert f'<code id="job-id">{job_id}</code>' in dom
        assert '<span class="state s-running">running</span>' in dom
        assert "<td>succeeded</td><td>2</td>" in dom and "<td>failed</td><td>1</td>" in dom
        assert "<td>pending</td><td>1</td>" in dom
        assert NOT_FOUND in dom and "ins-1e4r6y8i" in dom
        assert 'id="progress">75.0%' in dom
        shot = tmp_path / "status-page.png"
        run(
            "--screenshot=" + str(shot),
            "--window-size=1200,800",
            "--hide-scrollbars",
            f"{base}/ui/login?token={token}&next=/ui/jobs/{job_id}",
        )
        assert shot.exists() and shot.stat().st_size > 10_000
        keep = os.environ.get("KEYBIND_UI_SCREENSHOT")
        if keep:
            shutil.copy(shot, keep)
        listing = run("--dump-dom", f"{base}/ui/login?token={token}&next=/ui")
        assert "Recent jobs" in listing and f"/ui/jobs/{job_id}" in listing
        # A browser that never signed in lands on the sign-in form.
        assert "Sign in" in run("--dump-dom", f"{base}/ui", profile="stranger")
