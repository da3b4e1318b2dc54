"""Cancelling a job: every target not yet called is cancelled at once; calls in flight finish,
then the job ends `cancelled` (states.FINAL_STATE_RULES)."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from app.domain.states import JobState, may_cancel
from app.jobs.reads import visible
from app.store import jobs as store
from app.store.counters import CounterDeltas, apply_counts
from app.store.db import transaction, utcnow
from app.store.models import Job
from app.store.targets import cancel_waiting


class JobFinal(Exception):
    """The job has already reached a final state (nothing to cancel)."""


def cancel_job(*, sessions: sessionmaker[Session], job_id: str, tenant: str | None) -> Job | None:
    """Cancel every target not yet called, at once; calls in flight finish, then the job
    ends `cancelled`. A second cancel is harmless. None if there is no such job."""
    now = utcnow()
    with transaction(sessions) as session:
        job = visible(store.get_job(session, job_id), tenant)
        if job is None:
            return None
        asked = job.cancel_requested_at is not None
        if not may_cancel(JobState(job.state), cancel_requested=asked):
            raise JobFinal(job_id)
        # Targets first, the job row last: the order workers lock in, so no deadlock.
        deltas = CounterDeltas()
        cancel_waiting(session, deltas, job_id, now)
        if not store.request_cancel(session, job_id, now) and not asked:
            raise JobFinal(job_id)  # it became final meanwhile; rolls back
        # Always bump the version (and finish the job if nothing is in flight).
        deltas.touch(job_id)
        apply_counts(session, deltas, now)
    with sessions() as session:
        return store.get_job(session, job_id)
