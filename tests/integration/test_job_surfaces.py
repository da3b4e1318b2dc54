"""Listing, progress and ETA, cancel, Server-Sent Events, and webhook priority in the
dispatcher, against real PostgreSQL and Redis."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from typing import Any

import redis
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.auth.tokens import create_token
from app.broker.producer import CeleryProducer
from app.domain.states import TargetState
from app.jobs import submit as service
from app.jobs.dispatch import dispatch
from app.jobs.schemas import JobCreate
from app.runtime import Runtime
from app.store.counters import CounterDeltas, apply_counts
from app.store.db import transaction, utcnow
from app.store.models import Job, Target
from tests.support.moves import move

BODY: dict[str, Any] = {
    "provider": "tencent",
    "region": "ap-guangzhou",
    "instance_ids": ["ins-r8hr2upy", "ins-3e56fg78", "ins-1e4r6y8i", "ins-9k2m4n6p"],
    "key_ids": ["skey-3glfot13"],
}


def ids(n: int, prefix: str) -> list[str]:
    return [f"ins-{prefix}{i:07d}" for i in range(n)]


def submit(client: TestClient, **extra: Any) -> str:
    r = client.post("/v1/jobs", json={**BODY, **extra})
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def run_targets(
    rt: Runtime, job_id: str, n: int, dst: TargetState, code: str | None = None
) -> None:
    """Move n pending targets through running to `dst`, as a worker's claim and record would."""
    now = utcnow()
    with transaction(rt.sessions) as s:
        rows = s.scalars(
            select(Target)
            .where(Target.job_id == job_id, Target.state == "pending")
            .order_by(Target.id)
            .limit(n)
        ).all()
        deltas = CounterDeltas()
        for t in rows:
            assert move(
                s,
                deltas,
                target_id=t.id,
                job_id=job_id,
                src=TargetState.PENDING,
                dst=TargetState.RUNNING,
                lease_token="tok",
                lease_until=now + timedelta(minutes=1),
            )
            if dst is not TargetState.RUNNING:
                assert move(
                    s,
                    deltas,
                    target_id=t.id,
                    job_id=job_id,
                    src=TargetState.RUNNING,
                    dst=dst,
                    holder="tok",
                    attempts=1,
                    error_code=code,
                    finished_at=now,
                    next_attempt_at=now,
                    lease_token=None,
                )
        apply_counts(s, deltas, now)


def rt_job(rt: Runtime, job_id: str) -> Job:
    with rt.sessions() as s:
        job = s.get(Job, job_id)
    assert job is not None
    return job


def test_progress_and_eta_come_from_the_counters(client: TestClient, rt: Runtime) -> None:
    job_id = submit(client)
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["progress"] == 0.0
    rate = rt.rates.job_rate(rt_job(rt, job_id))
    assert job["eta_seconds"] == 4 / rate
    run_targets(rt, job_id, 1, TargetState.SUCCEEDED)
    run_targets(rt, job_id, 1, TargetState.FAILED, "InvalidInstanceId.NotFound")
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["progress"] == 0.5 and job["eta_seconds"] == 2 / rate
    run_targets(rt, job_id, 2, TargetState.SUCCEEDED)
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["state"] == "partial" and job["progress"] == 1.0 and job["eta_seconds"] is None
    r = client.post(f"/v1/jobs/{job_id}/cancel")
    assert r.status_code == 409 and r.json()["error"]["code"] == "job_final"
    assert client.get(f"/v1/jobs/{job_id}").json()["state"] == "partial"


def test_the_list_filters_and_pages_newest_first(client: TestClient, rt: Runtime) -> None:
    made = [submit(client, instance_ids=ids(2, f"{i:01d}")) for i in range(5)]
    run_targets(rt, made[1], 2, TargetState.SUCCEEDED)
    page = client.get("/v1/jobs", params={"limit": 2}).json()
    assert [j["id"] for j in page["items"]] == [made[4], made[3]]
    seen = [j["id"] for j in page["items"]]
    while page["next_cursor"]:
        page = client.get("/v1/jobs", params={"limit": 2, "cursor": page["next_cursor"]}).json()
        seen += [j["id"] for j in page["items"]]
    assert seen == made[::-1]
    done = client.get("/v1/jobs", params={"state": "succeeded"}).json()["items"]
    assert [j["id"] for j in done] == [made[1]]
    assert client.get("/v1/jobs", params={"provider": "jdcloud"}).json()["items"] == []
    with rt.sessions() as s:
        middle = s.get(Job, made[2]).created_at  # type: ignore[union-attr]
    window = client.get(
        "/v1/jobs",
        params={"created_after": middle.isoformat(), "created_before": utcnow().isoformat()},
    ).json()["items"]
    assert [j["id"] for j in window] == [made[4], made[3], made[2]]
    r = client.get("/v1/jobs", params={"cursor": "nonsense"})
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "cursor"
    r = client.get("/v1/jobs", params={"state": "sleeping"})
    assert r.status_code == 422 and r.json()["error"]["details"][0]["value"] == "sleeping"


def test_cancel_stops_waiting_targets_at_once_and_lets_running_ones_finish(
    client: TestClient, rt: Runtime, producer: CeleryProducer
) -> None:
    job_id = submit(client, instance_ids=ids(5000, "c"))
    run_targets(rt, job_id, 2, TargetState.SUCCEEDED)
    run_targets(rt, job_id, 1, TargetState.RUNNING)  # a call in flight
    etag = client.get(f"/v1/jobs/{job_id}").headers["etag"]
    r = client.post(f"/v1/jobs/{job_id}/cancel")
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["counts"] == {
        "pending": 0,
        "running": 1,
        "retrying": 0,
        "succeeded": 2,
        "failed": 0,
        "cancelled": 4997,
    }
    assert job["state"] == "running" and job["cancel_requested_at"] is not None
    # The change is visible to pollers holding the old ETag.
    assert client.get(f"/v1/jobs/{job_id}", headers={"If-None-Match": etag}).status_code == 200
    # Again: harmless.
    assert client.post(f"/v1/jobs/{job_id}/cancel").json()["counts"]["cancelled"] == 4997
    # The call in flight ends with a retryable error: the next dispatcher tick cancels it
    # rather than call it again, and the job ends cancelled.
    now = utcnow()
    with transaction(rt.sessions) as s:
        t = s.scalars(
            select(Target).where(Target.job_id == job_id, Target.state == "running")
        ).one()
        deltas = CounterDeltas()
        assert move(
            s,
            deltas,
            target_id=t.id,
            job_id=job_id,
            src=TargetState.RUNNING,
            dst=TargetState.RETRYING,
            holder="tok",
            next_attempt_at=now,
            lease_token=None,
        )
        apply_counts(s, deltas, now)
    tick = dispatch(rt, producer)
    assert all(job_id not in str(b) for b in tick.released)
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["state"] == "cancelled" and job["finished_at"] is not None
    assert job["counts"]["cancelled"] == 4998 and job["counts"]["succeeded"] == 2
    # Cancelling a cancelled job again is a harmless repeat.
    assert client.post(f"/v1/jobs/{job_id}/cancel").json()["state"] == "cancelled"
    page = client.get(f"/v1/jobs/{job_id}/instances", params={"state": "cancelled", "limit": 1})
    assert page.json()["items"][0]["error_code"] == "keybind.Cancelled"


def test_cancel_needs_write_scope_and_a_job(client: TestClient, rt: Runtime) -> None:
    job_id = submit(client)
    reader = create_token(rt.sessions, name="reader", scopes=("jobs:read",))
    r = client.post(f"/v1/jobs/{job_id}/cancel", headers={"Authorization": f"Bearer {reader}"})
    assert r.status_code == 403
    assert client.post("/v1/jobs/nope/cancel").status_code == 404
    assert client.get(f"/v1/jobs/{job_id}").json()["state"] == "queued"


def test_a_cancelled_queued_job_is_final_at_once(client: TestClient) -> None:
    job_id = submit(client)
    job = client.post(f"/v1/jobs/{job_id}/cancel").json()
    assert job["state"] == "cancelled" and job["counts"]["cancelled"] == 4
    assert job["eta_seconds"] is None and job["progress"] == 1.0


def read_events(client: TestClient, url: str, out: list[tuple[str, dict[str, Any]]]) -> None:
    with client.stream("GET", url) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        event = ""
        for line in r.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                out.append((event, json.loads(line[6:])))


def test_events_stream_each_change_and_end_when_final(client: TestClient, rt: Runtime) -> None:
    job_id = submit(client)
    events: list[tuple[str, dict[str, Any]]] = []
    reader = threading.Thread(
        target=read_events, args=(client, f"/v1/jobs/{job_id}/events", events)
    )
    reader.start()
    time.sleep(1.0)
    run_targets(rt, job_id, 2, TargetState.SUCCEEDED)
    time.sleep(1.0)
    run_targets(rt, job_id, 2, TargetState.SUCCEEDED)
    reader.join(15)
    assert not reader.is_alive(), "the stream did not end when the job did"
    kinds = [e for e, _ in events]
    assert kinds[0] == "job" and kinds[-1] == "end" and kinds.count("end") == 1
    jobs = [d for e, d in events if e == "job"]
    assert jobs[0]["counts"]["succeeded"] == 0
    assert jobs[-1]["state"] == "succeeded" and jobs[-1]["progress"] == 1.0
    assert len(jobs) >= 2 and events[-1][1] == {"state": "succeeded"}
    assert client.get("/v1/jobs/nope/events").status_code == 404


def test_webhook_jobs_are_served_before_a_bulk_job_on_the_same_account(
    rt: Runtime, producer: CeleryProducer, redis_client: redis.Redis
) -> None:
    bulk = service.submit_job(
        sessions=rt.sessions,
        request=JobCreate.model_validate({**BODY, "instance_ids": ids(2000, "b")}),
        submitter=service.Submitter(name="ops"),
        max_instances=100_000,
    ).job
    urgent = service.submit_job(
        sessions=rt.sessions,
        request=JobCreate.model_validate({**BODY, "instance_ids": ids(12, "u")}),
        submitter=service.Submitter(name="webhook", source="webhook", priority=10),
        max_instances=100_000,
    ).job
    try:
        tick = dispatch(rt, producer)
        released = [i for batch in tick.released for i in batch]
        with rt.sessions() as s:
            owners = [s.get(Target, i).job_id for i in released]  # type: ignore[union-attr]
        capacity = int(rt.rates.job_rate(bulk) * rt.settings.dispatch_horizon_s)
        assert len(released) == capacity
        # All 12 of the webhook's instances go out in the first tick, and the first call in
        # the broker's queue is the webhook's: it never waits behind the bulk job's backlog.
        assert owners.count(urgent.id) == 12 and owners[0] == urgent.id
        assert owners.count(bulk.id) == capacity - 12
    finally:
        redis_client.delete(
            f"{rt.settings.queue_prefix}.bind", f"{rt.settings.queue_prefix}.control"
        )
