"""`GET /v1/jobs/{id}` on its lean path (one Core read, bodies kept per version) answers byte
for byte what the route answered when it loaded the ORM job and let FastAPI validate and
encode the `JobView`; and a body kept for an older version is never served."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.api.main import create_app
from app.auth.tokens import create_token
from app.domain.states import CallbackState, JobState, TargetState
from app.jobs.schemas import JobView
from app.jobs.views import job_view
from app.runtime import Runtime
from app.store import callbacks, counters
from app.store import jobs as repo
from app.store.db import transaction, utcnow
from app.store.models import CallbackAttempt, Job

T0 = datetime(2026, 11, 23, 9, 30, 0, tzinfo=UTC)  # whole seconds: no fraction in the JSON


def make_job(**fields: object) -> Job:
    values: dict[str, object] = {
        "id": str(uuid.uuid4()),
        "provider": "tencent",
        "account": "default",
        "region": "ap-guangzhou",
        "key_ids": ["skey-3glfot13", "skey-4hmgpu24"],
        "options": {"force_stop": False},
        "power_policy": "refuse",
        "batch_size": 1,
        "priority": 0,
        "state": JobState.QUEUED.value,
        "total": 3,
        "n_pending": 3,
        "n_running": 0,
        "n_retrying": 0,
        "n_succeeded": 0,
        "n_failed": 0,
        "n_cancelled": 0,
        "version": 0,
        "submitted_by": "ops",
        "tenant": None,
        "source": "api",
        "created_at": T0,
        "updated_at": T0,
    }
    values.update(fields)
    return Job(**values)


def _running(**more: object) -> dict[str, object]:
    return {
        "state": "running",
        "started_at": T0 + timedelta(seconds=1, microseconds=250_001),
        "total": 7,
        "n_pending": 1,
        "n_running": 2,
        "n_retrying": 1,
        "n_succeeded": 2,
        "n_failed": 1,
        "n_cancelled": 0,
        "version": 17,
        **more,
    }


def _final(state: str, succeeded: int, failed: int, cancelled: int) -> dict[str, object]:
    return {
        "state": state,
        "started_at": T0 + timedelta(seconds=1),
        "finished_at": T0 + timedelta(minutes=3, microseconds=7),
        "total": succeeded + failed + cancelled,
        "n_pending": 0,
        "n_succeeded": succeeded,
        "n_failed": failed,
        "n_cancelled": cancelled,
        "version": 40,
    }


CALLBACK = "https://hooks.example.com/keybind?team=ops"
# Jobs in every state the API shows, and the fields that vary most: callbacks, cancel
# requests, both providers and power policies, ETAs, odd fractions of progress.
JOBS: dict[str, dict[str, object]] = {
    "queued": {},
    "running": _running(),
    "running_coalesced_jd": _running(
        provider="jdcloud",
        region="cn-north-1",
        key_ids=["ops-2026"],
        options={"password_auth": "no", "replace": True},
        batch_size=20,
    ),
    "running_force_stop": _running(power_policy="force_stop", source="cli"),
    "cancel_requested": _running(cancel_requested_at=T0 + timedelta(seconds=9, microseconds=5)),
    "succeeded": _final("succeeded", 3, 0, 0),
    "partial": _final("partial", 2, 1, 0),
    "failed": _final("failed", 0, 3, 0),
    "cancelled": {
        **_final("cancelled", 1, 0, 2),
        "cancel_requested_at": T0 + timedelta(minutes=1),
    },
    "callback_pending": _running(callback_url=CALLBACK, callback_state="pending"),
    "callback_retried_then_delivered": {
        **_final("succeeded", 3, 0, 0),
        "callback_url": CALLBACK,
        "callback_state": "delivered",
    },
    "callback_failed": {
        **_final("failed", 0, 3, 0),
        "callback_url": CALLBACK,
        "callback_state": "failed",
    },
}
ATTEMPTS: dict[str, list[tuple[int | None, str | None, float]]] = {
    "callback_retried_then_delivered": [
        (500, "HTTP 500", 12.3456),
        (None, "ConnectTimeout", 10000.0),
        (204, None, 3.05),
    ],
    "callback_failed": [(None, "ConnectError", 0.4)] * 3,
}


def store(rt: Runtime, job: Job, attempts: list[tuple[int | None, str | None, float]]) -> None:
    with transaction(rt.sessions) as s:
        s.add(job)
        s.flush()
        for n, (status, error, latency) in enumerate(attempts, start=1):
            s.add(
                CallbackAttempt(
                    job_id=job.id,
                    attempt=n,
                    started_at=T0 + timedelta(minutes=4, seconds=n, microseconds=n * 1001),
                    latency_ms=latency,
                    http_status=status,
                    error=error,
                )
            )


@pytest.fixture
def old_route(rt: Runtime) -> Iterator[Callable[[str], bytes]]:
    """The body as the route made it before the lean path: the ORM job and its callback
    attempts, turned into a JobView and handed to FastAPI's `response_model=JobView`."""
    app = FastAPI()

    @app.get("/jobs/{job_id}", response_model=JobView)
    def old(job_id: str) -> JobView:
        with rt.sessions() as s:
            job = repo.get_job(s, job_id)
            assert job is not None
            calls = callbacks.callback_attempts(s, job_id) if job.callback_url else []
            return job_view(job, rate=rt.rates.job_rate(job), callbacks=calls)

    with TestClient(app) as c:

        def body(job_id: str) -> bytes:
            r = c.get(f"/jobs/{job_id}")
            assert r.status_code == 200, r.text
            return r.content

        yield body


@pytest.mark.parametrize("case", sorted(JOBS))
def test_the_body_is_byte_for_byte_the_response_model_s(
    case: str, client: TestClient, rt: Runtime, old_route: Callable[[str], bytes]
) -> None:
    job = make_job(**JOBS[case])
    store(rt, job, ATTEMPTS.get(case, []))
    expected = old_route(job.id)
    for _ in range(2):  # rendered, then from the kept body
        r = client.get(f"/v1/jobs/{job.id}")
        assert r.status_code == 200
        assert r.content == expected
        assert r.headers["content-type"] == "application/json"
        assert r.headers["etag"] == f'W/"{job.id}-{job.version}"'
    if case in ATTEMPTS:
        assert [c["attempt"] for c in r.json()["callbacks"]] == [1, 2, 3]
    again = client.get(f"/v1/jobs/{job.id}", headers={"If-None-Match": r.headers["etag"]})
    assert (again.status_code, again.content) == (304, b"")


def test_a_submitted_job_reads_as_the_old_route_read_it(
    client: TestClient, old_route: Callable[[str], bytes]
) -> None:
    body = {
        "provider": "tencent",
        "region": "ap-guangzhou",
        "instance_ids": ["ins-r8hr2upy", "ins-3e56fg78", "ins-1e4r6y8i"],
        "key_ids": ["skey-3glfot13"],
    }
    job_id = client.post("/v1/jobs", json=body).json()["id"]
    assert client.get(f"/v1/jobs/{job_id}").content == old_route(job_id)


def test_tenants_see_their_own_jobs_and_others_exactly_as_missing(
    client: TestClient, rt: Runtime, old_route: Callable[[str], bytes]
) -> None:
    acme = {"Authorization": f"Bearer {create_token(rt.sessions, name='a', tenant='acme')}"}
    other = {"Authorization": f"Bearer {create_token(rt.sessions, name='u', tenant='umbrella')}"}
    job = make_job(**_running(tenant="acme"))
    untenanted = make_job()
    store(rt, job, [])
    store(rt, untenanted, [])

    mine = client.get(f"/v1/jobs/{job.id}", headers=acme)
    assert mine.status_code == 200 and mine.content == old_route(job.id)
    etag = mine.headers["etag"]
    missing_id = str(uuid.uuid4())
    missing = client.get(f"/v1/jobs/{missing_id}", headers=other)
    for job_id, headers in (
        (job.id, other),
        (job.id, {**other, "If-None-Match": etag}),  # the right ETag is no way in either
        (untenanted.id, acme),  # a job with no tenant is only an operator's
    ):
        r = client.get(f"/v1/jobs/{job_id}", headers=headers)
        assert r.status_code == 404
        assert r.text == missing.text.replace(missing_id, job_id)
        assert "etag" not in r.headers
    # The operator's token (no tenant) sees both, the same bytes as the tenant did.
    assert client.get(f"/v1/jobs/{job.id}").content == mine.content
    assert client.get(f"/v1/jobs/{untenanted.id}").status_code == 200


def test_auth_answers_as_on_every_other_route(client: TestClient, rt: Runtime) -> None:
    job = make_job()
    store(rt, job, [])
    anon = TestClient(client.app)
    writer_only = create_token(rt.sessions, name="w", scopes=("jobs:write",))
    for headers, status in (
        ({}, 401),
        ({"Authorization": "Bearer kb_unknown"}, 401),
        ({"Authorization": f"Bearer {writer_only}"}, 403),
    ):
        r = anon.get(f"/v1/jobs/{job.id}", headers=headers)
        listed = anon.get("/v1/jobs", headers=headers)
        assert (r.status_code, r.json()) == (status, listed.json())
        assert r.headers.get("www-authenticate") == listed.headers.get("www-authenticate")


def bump(rt: Runtime, job_id: str, deltas: dict[TargetState, int]) -> None:
    with transaction(rt.sessions) as s:
        s.execute(counters.counts_update(job_id, deltas, utcnow(), started=True))


def test_a_changed_job_is_never_answered_with_the_body_kept_for_its_old_version(
    client: TestClient, rt: Runtime, old_route: Callable[[str], bytes]
) -> None:
    job = make_job(**_running(callback_url=CALLBACK, callback_state="pending"))
    store(rt, job, [])
    first = client.get(f"/v1/jobs/{job.id}")
    assert client.get(f"/v1/jobs/{job.id}").content == first.content  # kept
    for step in range(3):
        bump(
            rt, job.id, {TargetState.PENDING: 0, TargetState.RUNNING: -1, TargetState.SUCCEEDED: 1}
        )
        r = client.get(f"/v1/jobs/{job.id}", headers={"If-None-Match": first.headers["etag"]})
        assert r.status_code == 200, step
        assert r.content == old_route(job.id)
        assert r.json()["counts"]["succeeded"] == 3 + step
        assert r.headers["etag"] == f'W/"{job.id}-{job.version + 1 + step}"'
    # A callback attempt moves the version in the same transaction: it shows at once.
    now = utcnow()
    with transaction(rt.sessions) as s:
        s.get(Job, job.id).callback_next_at = now  # type: ignore[union-attr]
    with transaction(rt.sessions) as s:
        assert callbacks.record_callback_attempt(
            s,
            job_id=job.id,
            leased_until=now,
            attempt=CallbackAttempt(
                job_id=job.id, attempt=1, started_at=now, latency_ms=8.0, http_status=204
            ),
            state=CallbackState.DELIVERED,
            next_at=None,
        )
    r = client.get(f"/v1/jobs/{job.id}")
    assert r.json()["callback_state"] == "delivered" and len(r.json()["callbacks"]) == 1
    assert r.content == old_route(job.id)


def test_two_api_processes_keep_their_own_bodies_and_agree(
    client: TestClient, rt: Runtime, token: str
) -> None:
    """A second app (another uvicorn worker) renders its own; a change read by one is read
    by the other too, whatever either kept."""
    job = make_job(**_running())
    store(rt, job, [])
    with TestClient(create_app(rt.settings), headers={"Authorization": f"Bearer {token}"}) as c2:
        assert c2.get(f"/v1/jobs/{job.id}").content == client.get(f"/v1/jobs/{job.id}").content
        bump(rt, job.id, {TargetState.RUNNING: -1, TargetState.FAILED: 1})
        a, b = client.get(f"/v1/jobs/{job.id}"), c2.get(f"/v1/jobs/{job.id}")
        assert a.content == b.content and a.json()["counts"]["failed"] == 2
