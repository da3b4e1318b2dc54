"""Submitting and reading jobs. Each function is one unit of work and owns its transaction."""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from app.db import transaction, utcnow
from app.jobs import repository as repo
from app.jobs.models import Job, Target
from app.jobs.schemas import FieldProblem, JDCloudJobCreate, JobCreate
from app.jobs.states import JobState, TargetState
from app.jobs.validation import validate_job
from app.providers.registry import spec
from app.webhooks import egress


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


class CallbacksDisabled(Exception):
    """A callback_url was given but this server has no secret to sign callbacks with."""


class JobFinal(Exception):
    """The job has already reached a final state (nothing to cancel)."""


@dataclass(frozen=True, slots=True)
class Submitter:
    name: str
    source: str = "api"
    tenant: str | None = None
    # Higher runs first on a shared account; webhook jobs outrank bulk API jobs.
    priority: int = 0


@dataclass(frozen=True, slots=True)
class Submission:
    job: Job
    replayed: bool  # True when an Idempotency-Key repeat returned the earlier job


def _options(request: JobCreate | JDCloudJobCreate) -> dict[str, object]:
    """What the provider needs beyond region, instances and keys, kept on the job row."""
    if isinstance(request, JDCloudJobCreate):
        return {"password_auth": request.password_auth, "replace": request.replace}
    return {"force_stop": request.force_stop}


def fingerprint(request: JobCreate | JDCloudJobCreate) -> str:
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
    request: JobCreate | JDCloudJobCreate,
    submitter: Submitter,
    max_instances: int,
    accounts: Collection[str] | None = None,
    idempotency_key: str | None = None,
    callbacks_enabled: bool = True,
    private_callbacks: bool = True,
) -> Submission:
    """Validate, then write the job and all its targets in one transaction.

    `accounts` are the provider's account names the request may use (None: not checked).
    With an idempotency key, a repeat of the same request returns the first job instead."""
    problems = validate_job(request, max_instances=max_instances, accounts=accounts)
    if problems:
        raise InvalidJob(problems)
    callback_url = getattr(request, "callback_url", None)
    if callback_url is not None and not callbacks_enabled:
        raise CallbacksDisabled(str(callback_url))
    if callback_url is not None and not private_callbacks:
        # Names that are plainly not public refuse now; the rest are checked when sent.
        reason = egress.literal_refusal(callback_url.host or "")
        if reason is not None:
            problem = FieldProblem(field="callback_url", value=str(callback_url), message=reason)
            raise InvalidJob([problem])
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
        options=_options(request),
        power_policy="force_stop" if request.force_stop else "refuse",
        batch_size=request.batch_size or spec(request.provider).bind_batch,
        priority=submitter.priority,
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
        tenant=submitter.tenant,
        source=submitter.source,
        created_at=now,
        updated_at=now,
        callback_url=str(callback_url) if callback_url is not None else None,
        callback_state="pending" if callback_url is not None else None,
        callback_next_at=now if callback_url is not None else None,
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


def _visible(job: Job | None, tenant: str | None) -> Job | None:
    # Another tenant's job answers exactly like a missing one; None (an operator) sees all.
    return job if job is not None and tenant in (None, job.tenant) else None


def get_job(*, sessions: sessionmaker[Session], job_id: str, tenant: str | None) -> Job | None:
    """The job, if it exists and `tenant` may see it."""
    with sessions() as session:
        return _visible(repo.get_job(session, job_id), tenant)


def get_job_version(
    *, sessions: sessionmaker[Session], job_id: str, tenant: str | None
) -> int | None:
    """The job's version alone: what a follower polls to see whether anything changed."""
    with sessions() as session:
        return repo.job_version(session, job_id, tenant)


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


def list_jobs(
    *,
    sessions: sessionmaker[Session],
    flt: repo.JobFilter,
    before: tuple[datetime, str] | None,
    limit: int,
) -> list[Job]:
    with sessions() as session:
        return repo.list_jobs(session, flt, before=before, limit=limit)


def cancel_job(*, sessions: sessionmaker[Session], job_id: str, tenant: str | None) -> Job | None:
    """Cancel every target not yet called, at once; calls in flight finish, then the job
    ends `cancelled`. A second cancel is harmless. None if there is no such job."""
    now = utcnow()
    with transaction(sessions) as session:
        job = _visible(repo.get_job(session, job_id), tenant)
        if job is None:
            return None
        # Targets first, the job row last: the order workers lock in, so no deadlock.
        deltas = repo.CounterDeltas()
        repo.cancel_waiting(session, deltas, job_id, now)
        if not repo.request_cancel(session, job_id, now) and job.cancel_requested_at is None:
            raise JobFinal(job_id)  # rolls back: a final job has nothing waiting anyway
        # Always bump the version (and finish the job if nothing is in flight).
        deltas.by_job.setdefault(job_id, Counter())
        repo.apply_counts(session, deltas, now)
    with sessions() as session:
        return repo.get_job(session, job_id)


# Webhook senders retry for a day or more (Svix: about 27 h), so their delivery ids are kept
# longer than API idempotency keys: a late retry must still find its job.
WEBHOOK_KEY_OWNER = "webhook"
KEEP_WEBHOOK_KEYS_FOR = timedelta(days=7)


def expire_idempotency_keys(*, sessions: sessionmaker[Session]) -> int:
    """Forget keys older than KEEP_KEYS_FOR (webhook delivery ids: KEEP_WEBHOOK_KEYS_FOR);
    their jobs stay."""
    now = utcnow()
    with transaction(sessions) as session:
        n = repo.expire_idempotency_keys(
            session, now - KEEP_KEYS_FOR, exclude_owner=WEBHOOK_KEY_OWNER
        )
        return n + repo.expire_idempotency_keys(
            session, now - KEEP_WEBHOOK_KEYS_FOR, owner=WEBHOOK_KEY_OWNER
        )
