"""/v1/jobs: submit a job, read its status, page through its instances."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from kombu.exceptions import KombuError

from app.api.deps import Reader, RuntimeDep, Writer
from app.api.errors import ApiError
from app.jobs import service
from app.jobs.models import Job
from app.jobs.schemas import (
    Counts,
    ErrorResponse,
    JobCreate,
    JobCreated,
    JobView,
    TargetPage,
    TargetView,
)
from app.jobs.states import JobState, TargetState
from app.providers.base import ProviderConfigError

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 422, 503)
}


def _view(job: Job) -> JobView:
    return JobView(
        id=job.id,
        state=JobState(job.state),
        provider=job.provider,
        account=job.account,
        region=job.region,
        key_ids=job.key_ids,
        power_policy="force_stop" if job.power_policy == "force_stop" else "refuse",
        batch_size=job.batch_size,
        total=job.total,
        counts=Counts(
            pending=job.n_pending,
            running=job.n_running,
            retrying=job.n_retrying,
            succeeded=job.n_succeeded,
            failed=job.n_failed,
            cancelled=job.n_cancelled,
        ),
        submitted_by=job.submitted_by,
        source=job.source,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


@router.post("", status_code=202, response_model=JobCreated, responses={**ERRORS, 409: {}})
def submit(
    body: JobCreate,
    rt: RuntimeDep,
    who: Writer,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=255)] = None,
) -> JobCreated:
    try:
        accounts = rt.accounts.names(body.provider)
    except ProviderConfigError as exc:
        log.error("accounts configuration: %s", exc)
        raise ApiError(
            503, "misconfigured", "keybind's accounts configuration is invalid; see its log"
        ) from exc
    try:
        submission = service.submit_job(
            sessions=rt.sessions,
            request=body,
            submitter=service.Submitter(name=who.name, source="api"),
            max_instances=rt.settings.max_instances,
            accounts=accounts,
            idempotency_key=idempotency_key,
        )
    except service.IdempotencyConflict as exc:
        raise ApiError(
            409,
            "idempotency_key_in_use",
            f"Idempotency-Key {idempotency_key!r}: its first request is still being processed",
            headers={"Retry-After": "1"},
        ) from exc
    except service.IdempotencyMismatch as exc:
        raise ApiError(
            422,
            "idempotency_key_reused",
            f"Idempotency-Key {idempotency_key!r} was used before with a different body",
        ) from exc
    job = submission.job
    if submission.replayed:
        return JobCreated(id=job.id, state=JobState(job.state), total=job.total)
    try:
        rt.kick_dispatch()
    except (KombuError, OSError) as exc:
        # The job is safely stored; the dispatcher's next scheduled tick starts it.
        log.warning("could not kick the dispatcher (%s); the next tick will", type(exc).__name__)
    return JobCreated(id=job.id, state=JobState(job.state), total=job.total)


def _load(rt: RuntimeDep, job_id: str) -> Job:
    job = service.get_job(sessions=rt.sessions, job_id=job_id)
    if job is None:
        raise ApiError(404, "not_found", f"no job {job_id!r}")
    return job


@router.get("/{job_id}", response_model=JobView, responses={**ERRORS, 304: {}})
def status(
    job_id: str,
    rt: RuntimeDep,
    _: Reader,
    response: Response,
    if_none_match: Annotated[str | None, Header()] = None,
) -> JobView | Response:
    job = _load(rt, job_id)
    etag = f'W/"{job.id}-{job.version}"'
    if if_none_match is not None and etag in {t.strip() for t in if_none_match.split(",")}:
        return Response(status_code=304, headers={"ETag": etag})
    response.headers["ETag"] = etag
    return _view(job)


@router.get("/{job_id}/instances", response_model=TargetPage, responses=ERRORS)
def instances(
    job_id: str,
    rt: RuntimeDep,
    _: Reader,
    state: TargetState | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=20)] = None,
) -> TargetPage:
    _load(rt, job_id)
    after = 0
    if cursor:
        if not cursor.isdigit():
            raise ApiError(
                422, "invalid_request", f"cursor: not a cursor from this API: {cursor!r}"
            )
        after = int(cursor)
    rows = service.list_targets(
        sessions=rt.sessions, job_id=job_id, state=state, after_id=after, limit=limit
    )
    items = [
        TargetView(
            instance_id=t.instance_id,
            state=TargetState(t.state),
            attempts=t.attempts,
            error_code=t.error_code,
            error_message=t.error_message,
            request_id=t.request_id,
            verify_request_id=t.verify_request_id,
        )
        for t in rows
    ]
    next_cursor = str(rows[-1].id) if len(rows) == limit else None
    return TargetPage(items=items, next_cursor=next_cursor)
