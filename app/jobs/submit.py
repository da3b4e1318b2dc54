"""Submitting a job: validate, then write the job and every target in one transaction, once per
Idempotency-Key however often the client repeats the request."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from app.domain.states import CallbackState, JobState
from app.jobs.schemas import FieldProblem, JDCloudJobCreate, JobCreate
from app.jobs.validation import validate_job
from app.providers.registry import spec
from app.store import idempotency
from app.store import jobs as store
from app.store.db import transaction, utcnow
from app.store.models import Job
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


class CallbacksDisabled(Exception):
    """A callback_url was given but this server has no secret to sign callbacks with."""


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
        held = idempotency.claim_key(session, owner=owner, key=key, fingerprint=fp, now=now)
        if held is None:
            return None
        if held.job_id is None:
            if now - held.created_at > ABANDONED_KEY_AFTER and idempotency.take_over_key(
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
                found = store.get_job(session, earlier)
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
        callback_state=CallbackState.PENDING.value if callback_url is not None else None,
        callback_next_at=now if callback_url is not None else None,
    )
    try:
        with transaction(sessions) as session:
            store.insert_job(session, job, request.instance_ids, now)
            if idempotency_key is not None:
                idempotency.bind_key(
                    session, owner=submitter.name, key=idempotency_key, job_id=job.id
                )
    except BaseException:
        if idempotency_key is not None:
            with transaction(sessions) as session:
                idempotency.release_key(session, owner=submitter.name, key=idempotency_key)
        raise
    return Submission(job, replayed=False)
