"""The job row's counter UPDATE decides the final state in SQL; it must agree with the rule in
app/domain/states.py (final_job_state) for every mix of outcomes."""

from __future__ import annotations

import itertools
import uuid

from app.domain.states import Counts, JobState, TargetState, final_job_state
from app.runtime import Runtime
from app.store import counters as repo
from app.store.db import transaction, utcnow
from app.store.models import Job


def job_row(
    running: int, succeeded: int, failed: int, cancelled: int, *, cancel_requested: bool = False
) -> Job:
    now = utcnow()
    return Job(
        id=str(uuid.uuid4()),
        provider="tencent",
        account="default",
        region="ap-guangzhou",
        key_ids=["skey-3glfot13"],
        options={},
        power_policy="refuse",
        batch_size=1,
        priority=0,
        state=JobState.RUNNING.value,
        total=running + succeeded + failed + cancelled,
        n_pending=0,
        n_running=running,
        n_retrying=0,
        n_succeeded=succeeded,
        n_failed=failed,
        n_cancelled=cancelled,
        version=0,
        submitted_by="t",
        source="api",
        created_at=now,
        updated_at=now,
        cancel_requested_at=now if cancel_requested else None,
    )


def test_the_last_move_gives_the_state_final_job_state_gives(rt: Runtime) -> None:
    """The SQL CASE is rendered from the domain's rule list; this checks the rendering on
    PostgreSQL against the Python reading of the same list, for every mix of outcomes."""
    for succeeded, failed, cancelled, last, asked in itertools.product(
        (0, 2), (0, 3), (0, 1), (TargetState.SUCCEEDED, TargetState.FAILED), (False, True)
    ):
        job = job_row(1, succeeded, failed, cancelled, cancel_requested=asked)
        with transaction(rt.sessions) as s:
            s.add(job)
        with transaction(rt.sessions) as s:
            s.execute(
                repo.counts_update(
                    job.id, {TargetState.RUNNING: -1, last: 1}, utcnow(), started=False
                )
            )
        with rt.sessions() as s:
            after = s.get(Job, job.id)
            assert after is not None
            counts = Counts(
                succeeded=succeeded + (last is TargetState.SUCCEEDED),
                failed=failed + (last is TargetState.FAILED),
                cancelled=cancelled,
            )
            expected = final_job_state(counts, cancel_requested=asked)
            assert after.state == expected.value, (succeeded, failed, cancelled, last, asked)
            assert after.finished_at is not None and after.version == 1


def one_call_succeeds(rt: Runtime, job: Job) -> Job:
    """Store `job`, move one of its running targets to succeeded, and read it back."""
    with transaction(rt.sessions) as s:
        s.add(job)
    with transaction(rt.sessions) as s:
        s.execute(
            repo.counts_update(
                job.id,
                {TargetState.RUNNING: -1, TargetState.SUCCEEDED: 1},
                utcnow(),
                started=False,
            )
        )
    with rt.sessions() as s:
        after = s.get(Job, job.id)
        assert after is not None
        return after


def test_a_job_with_open_targets_stays_open(rt: Runtime) -> None:
    after = one_call_succeeds(rt, job_row(2, 0, 0, 0))
    assert (after.state, after.finished_at, after.n_running) == ("running", None, 1)


def test_a_job_asked_to_cancel_ends_cancelled_when_its_last_call_succeeds(rt: Runtime) -> None:
    """A cancel request leaves calls in flight to finish; when the last one lands, the job is
    cancelled (what the user asked for), not succeeded."""
    job = job_row(1, 0, 0, 0)
    job.cancel_requested_at = utcnow()
    after = one_call_succeeds(rt, job)
    assert (after.state, after.n_succeeded) == ("cancelled", 1)
    assert after.finished_at is not None


def test_applying_no_count_change_still_moves_the_version(rt: Runtime) -> None:
    """Cancel with nothing waiting changes the job (cancel_requested_at), so pollers' ETags
    must change too."""
    job = job_row(1, 0, 0, 0)
    with transaction(rt.sessions) as s:
        s.add(job)
    deltas = repo.CounterDeltas()
    deltas.by_job.setdefault(job.id, deltas.by_job.default_factory())  # type: ignore[misc]
    with transaction(rt.sessions) as s:
        repo.apply_counts(s, deltas, utcnow())
    with rt.sessions() as s:
        after = s.get(Job, job.id)
        assert after is not None
        assert (after.version, after.state) == (1, "running")
