"""A worker's read-through cache of job rows: what a worker needs of a job (provider, account,
region, keys, policy) never changes once submitted, and keeping it saves a read per turn."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.store.models import Job


class JobCache:
    """Bounded: a long-lived worker sees many jobs. Read only the fields that never change."""

    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._jobs: dict[str, Job] = {}

    def get(self, session: Session, job_id: str) -> Job | None:
        job = self._jobs.get(job_id)
        if job is None:
            job = session.get(Job, job_id)
            if job is not None:
                if len(self._jobs) >= self._size:
                    self._jobs.clear()
                self._jobs[job_id] = job
        return job

    def peek(self, job_id: str) -> Job | None:
        """The job if it is cached, without a read."""
        return self._jobs.get(job_id)
