"""Submitting and reading jobs. Each function is one unit of work and owns its transaction."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import timedelta

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


class IdempotencyConflict(Exception):
    """The key is being used by a request that has not finished yet (409)."""


class IdempotencyMismatch(Exception):
    """The key was used before with a different request body (422)."""


# A key whose first request never committed a job is free again after this.
ABANDONED_KEY_AFTER = timedelta(minutes=5)
KEEP_KEYS_FOR = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class Submitter:
    name: str
    source: str = "api"


@dataclass(frozen=True, slots=True)
class Submission:
    job: Job
    replayed: bool  # True when an Idempotency-Key repeat returned the earlier job


def fingerprint(request: JobCreate) -> str:
    return hashlib.sha256(request.model_dump_json().encode()).hexdigest()


def _reserve_key(sessions: sessionmaker[Session], *, owner: str, key: str, fp: str) -> str | None:
    """Hold `key` for this request; returns the job of an earlier identical request."""
    now = utcnow()
    with transaction(sessions) as session:
        held = repo.claim_idempotency_key(session, owner=owner, key=key, fingerprint=fp, now=now)
        if held is None:
            return None
        if held.job_id is None:
            if now - held.created_at > ABANDONED_KEY_AFTER and repo.take_over_idempotency_key(
                session, held.id, fp, now
            ):
                return None
            raise IdempotencyConflict(key)
        if held.fingerprint != fp:
            raise IdempotencyMismatch(key)
        return held.job_id


def submit_job(
    *,
    sessions: sessionmaker[Session],
    request: JobCreate,
    submitter: Submitter,
    max_instances: int,
    accounts: Collection[str] | None = None,
    idempotency_key: str | None = None,
) -> Submission:
    """Validate, then write the job and all its targets in one transaction.

    `accounts` are the provider's account names the request may use (None: not checked).
    With an idempotency key, a repeat of the same request returns the first job instead."""
    problems = validate_job(request, max_instances=max_instances, accounts=accounts)
    if problems:
        raise InvalidJob(problems)
    if idempotency_key is not None:
        earlier = _reserve_key(
            sessions, owner=submitter.name, key=idempotency_key, fp=fingerprint(request)
        )
        if earlier is not None:
            with sessions() as session:
                found = repo.get_job(session, earlier)
            assert found is not None  # the key row cascades away with its job
            return Submission(found, replayed=True)
    now = utcnow()
    job = Job(
        id=str(uuid.uuid4()),
        provider=request.provider,
        account=request.account,
        region=request.region,
        key_ids=list(request.key_ids),
        options={"force_stop": request.force_stop},
        power_policy="force_stop" if request.force_stop else "refuse",
        batch_size=request.batch_size,
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
    try:
        with transaction(sessions) as session:
            repo.insert_job(session, job, request.instance_ids, now)
            if idempotency_key is not None:
                repo.bind_idempotency_key(
                    session, owner=submitter.name, key=idempotency_key, job_id=job.id
                )
    except BaseException:
        if idempotency_key is not None:
            with transaction(sessions) as session:
                repo.release_idempotency_key(session, owner=submitter.name, key=idempotency_key)
        raise
    return Submission(job, replayed=False)


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


def expire_idempotency_keys(*, sessions: sessionmaker[Session]) -> int:
    """Forget keys older than KEEP_KEYS_FOR; their jobs stay."""
    with transaction(sessions) as session:
        return repo.expire_idempotency_keys(session, utcnow() - KEEP_KEYS_FOR)
