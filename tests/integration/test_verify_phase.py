"""The verify phase in PostgreSQL: a worker dying mid-look, and the verify budget."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from app.broker.producer import CeleryProducer
from app.jobs.cancel import cancel_job
from app.jobs.dispatch import dispatch
from app.jobs.schemas import JobCreate
from app.jobs.submit import Submitter, submit_job
from app.runtime import Runtime
from app.store.db import utcnow
from app.store.models import Job, Target

BODY = {
    "provider": "tencent",
    "region": "ap-guangzhou",
    "instance_ids": ["ins-r8hr2upy"],
    "key_ids": ["skey-3glfot13"],
}


def verifying_target(rt: Runtime, *, accepted_ago_s: float) -> tuple[str, int]:
    """A job whose one target had its bind accepted and whose verifying worker vanished."""
    job = submit_job(
        sessions=rt.sessions,
        request=JobCreate.model_validate(BODY),
        submitter=Submitter("test"),
        max_instances=10,
    ).job
    now = utcnow()
    with rt.sessions.begin() as s:
        # Claimed, then accepted: two moves, as a worker makes them.
        s.execute(update(Target).where(Target.job_id == job.id).values(state="running"))
        s.execute(
            update(Target)
            .where(Target.job_id == job.id)
            .values(
                phase="verify",
                attempts=1,
                request_id="req-bind",
                lease_token="dead-worker",
                lease_until=now - timedelta(seconds=1),
                verify_started_at=now - timedelta(seconds=accepted_ago_s),
            )
        )
        s.execute(update(Job).where(Job.id == job.id).values(n_pending=0, n_running=1))
        target_id = s.scalar(select(Target.id).where(Target.job_id == job.id))
    assert target_id is not None
    return job.id, target_id


def test_a_worker_lost_mid_look_leaves_the_target_waiting_for_its_next_look(
    rt: Runtime,
    producer: CeleryProducer,
) -> None:
    job_id, target_id = verifying_target(rt, accepted_ago_s=5)
    tick = dispatch(rt, producer)
    assert tick.recovered == 1
    # Recovered and handed straight back out for a look, in one verify batch.
    assert tick.verifying == [[target_id]] and tick.released == []
    with rt.sessions() as s:
        t = s.get(Target, target_id)
        job = s.get(Job, job_id)
    assert t is not None and job is not None
    assert (t.state, t.phase, t.lease_token) == ("running", "verify", None)
    assert t.attempts == 1  # a look is not a bind attempt
    assert t.verify_checks == 1 and t.dispatched_until is not None
    assert (job.n_running, job.finished_at) == (1, None)


def test_past_the_verify_budget_the_target_fails_with_a_clear_code(
    rt: Runtime, producer: CeleryProducer
) -> None:
    job_id, target_id = verifying_target(rt, accepted_ago_s=rt.settings.verify_budget_s + 1)
    assert dispatch(rt, producer).recovered == 1
    with rt.sessions() as s:
        t = s.get(Target, target_id)
        job = s.get(Job, job_id)
    assert t is not None and job is not None
    assert (t.state, t.error_code) == ("failed", "keybind.VerifyTimeout")
    assert t.request_id == "req-bind"  # the accepted bind stays on record
    assert (job.state, job.n_running, job.n_failed) == ("failed", 0, 1)


def test_a_cancelled_job_still_looks_at_binds_the_cloud_accepted(
    rt: Runtime, producer: CeleryProducer
) -> None:
    """A cancel stops new calls, not the looks that decide calls already made: an accepted
    bind ends with what the cloud says, so the job becomes final."""
    job_id, target_id = verifying_target(rt, accepted_ago_s=5)
    with rt.sessions.begin() as s:
        s.execute(
            update(Target)
            .where(Target.id == target_id)
            .values(lease_token=None, lease_until=None, next_attempt_at=utcnow())
        )
    assert cancel_job(sessions=rt.sessions, job_id=job_id, tenant=None) is not None
    tick = dispatch(rt, producer)
    assert tick.verifying == [[target_id]] and tick.released == []
