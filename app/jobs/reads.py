"""Reading jobs and their instances, as a tenant may see them (the poll path is status.py)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from app.domain.states import TargetState
from app.store import jobs as store
from app.store import targets
from app.store.jobs import JobFilter
from app.store.models import Job, Target

__all__ = ["JobFilter", "get_job", "get_job_version", "list_jobs", "list_targets", "visible"]


def visible(job: Job | None, tenant: str | None) -> Job | None:
    # Another tenant's job answers exactly like a missing one; None (an operator) sees all.
    return job if job is not None and tenant in (None, job.tenant) else None


def get_job(*, sessions: sessionmaker[Session], job_id: str, tenant: str | None) -> Job | None:
    """The job, if it exists and `tenant` may see it."""
    with sessions() as session:
        return visible(store.get_job(session, job_id), tenant)


def get_job_version(
    *, sessions: sessionmaker[Session], job_id: str, tenant: str | None
) -> int | None:
    """The job's version alone: what a follower polls to see whether anything changed."""
    with sessions() as session:
        return store.job_version(session, job_id, tenant)


def list_targets(
    *,
    sessions: sessionmaker[Session],
    job_id: str,
    state: TargetState | None,
    after_id: int,
    limit: int,
) -> list[Target]:
    with sessions() as session:
        return targets.list_targets(session, job_id, state=state, after_id=after_id, limit=limit)


def list_jobs(
    *,
    sessions: sessionmaker[Session],
    flt: JobFilter,
    before: tuple[datetime, str] | None,
    limit: int,
) -> list[Job]:
    with sessions() as session:
        return store.list_jobs(session, flt, before=before, limit=limit)
