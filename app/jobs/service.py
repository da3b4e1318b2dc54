"""Submitting and reading jobs. Each function is one unit of work and owns its transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from app.db import transaction, utcnow
from app.jobs import repository as repo
from app.jobs.models import Job, Target
from app.jobs.schemas import FieldProblem, JobCreate
from app.jobs.states import JobState, TargetState
from app.jobs.validation import validate_job


class InvalidJob(Exception):
    """The request names something keybind cannot accept; `problems` says what, field by field."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Submitter:
    name: str
    source: str = "api"


def submit_job(
    *,
    sessions: sessionmaker[Session],
    request: JobCreate,
    submitter: Submitter,
    max_instances: int,
    account: str = "default",
) -> Job:
    """Validate, then write the job and all its targets in one transaction."""
    problems = validate_job(request, max_instances=max_instances)
    if problems:
        raise InvalidJob(problems)
    now = utcnow()
    job = Job(
        id=str(uuid.uuid4()),
        provider=request.provider,
        account=account,
        region=request.region,
        key_ids=list(request.key_ids),
        options={"force_stop": request.force_stop},
        power_policy="force_stop" if request.force_stop else "refuse",
        batch_size=1,
        priority=0,
        state=JobState.QUEUED.value,
        total=len(request.instance_ids),
        n_pending=len(request.instance_ids),
        n_running=0,
        n_retrying=0,
        n_succeeded=0,
        n_failed=0,
        n_cancelled=0,
        version=0,
        submitted_by=submitter.name,
        source=submitter.source,
        created_at=now,
        updated_at=now,
    )
    with transaction(sessions) as session:
        repo.insert_job(session, job, request.instance_ids, now)
    return job


def get_job(*, sessions: sessionmaker[Session], job_id: str) -> Job | None:
    with sessions() as session:
        return repo.get_job(session, job_id)


def list_targets(
    *,
    sessions: sessionmaker[Session],
    job_id: str,
    state: TargetState | None,
    after_id: int,
    limit: int,
) -> list[Target]:
    with sessions() as session:
        return repo.list_targets(session, job_id, state=state, after_id=after_id, limit=limit)
