"""/v1/jobs: submit, list, read, follow (Server-Sent Events) and cancel jobs; page instances."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from kombu.exceptions import KombuError
from starlette.concurrency import run_in_threadpool

from app.api.deps import (
    READ,
    BearerToken,
    BodiesDep,
    ProducerDep,
    Reader,
    RuntimeDep,
    Writer,
    admit,
)
from app.api.errors import ApiError
from app.auth.tokens import Principal, authenticate
from app.domain.states import JobState, TargetState
from app.jobs import cancel as cancelling
from app.jobs import reads, submit
from app.jobs.ports import Producer
from app.jobs.schemas import (
    CLI_AGENT,
    JOB_ID_PATTERN,
    ErrorResponse,
    JobCreated,
    JobPage,
    JobRequest,
    JobView,
    ProviderName,
    TargetPage,
    TargetView,
)
from app.jobs.status import Bodies, Status, read_status
from app.jobs.views import job_view
from app.providers.base import ProviderConfigError
from app.runtime import Runtime
from app.store.models import Job

log = logging.getLogger(__name__)
JobId = Annotated[str, Path(pattern=JOB_ID_PATTERN)]
router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 422, 503)
}
# How often an event stream re-reads the job's version; one indexed row read per tick.
EVENTS_POLL_S = 0.5
EVENTS_KEEPALIVE_S = 15.0


def submit_and_kick(
    rt: Runtime,
    producer: Producer,
    body: JobRequest,
    submitter: submit.Submitter,
    idempotency_key: str | None,
) -> JobCreated:
    """Store the job (or find the earlier one for this key), then wake the dispatcher."""
    try:
        accounts = rt.accounts.names(body.provider)
    except ProviderConfigError as exc:
        log.error("accounts configuration: %s", exc)
        raise ApiError(
            503, "misconfigured", "keybind's accounts configuration is invalid; see its log"
        ) from exc
    try:
        submission = submit.submit_job(
            sessions=rt.sessions,
            request=body,
            submitter=submitter,
            max_instances=rt.settings.max_instances,
            accounts=accounts,
            idempotency_key=idempotency_key,
            callbacks_enabled=rt.settings.callback_secret is not None,
            private_callbacks=rt.settings.callback_allow_private_networks,
        )
    except submit.CallbacksDisabled as exc:
        raise ApiError(
            422,
            "invalid_request",
            "callback_url: this server has no KEYBIND_CALLBACK_SECRET to sign callbacks with",
        ) from exc
    except submit.IdempotencyConflict as exc:
        raise ApiError(
            409,
            "idempotency_key_in_use",
            f"Idempotency-Key {idempotency_key!r}: its first request is still being processed",
            headers={"Retry-After": "1"},
        ) from exc
    except submit.IdempotencyMismatch as exc:
        raise ApiError(
            422,
            "idempotency_key_reused",
            f"Idempotency-Key {idempotency_key!r} was used before with a different body",
        ) from exc
    job = submission.job
    if not submission.replayed:
        try:
            producer.kick_dispatch()
        except (KombuError, OSError) as exc:
            # The job is safely stored; the dispatcher's next scheduled tick starts it.
            log.warning(
                "could not kick the dispatcher (%s); the next tick will", type(exc).__name__
            )
    return JobCreated(id=job.id, state=JobState(job.state), total=job.total)


def _load(rt: RuntimeDep, job_id: str, who: Principal) -> Job:
    job = reads.get_job(sessions=rt.sessions, job_id=job_id, tenant=who.tenant)
    if job is None:
        raise ApiError(404, "not_found", f"no job {job_id!r}")
    return job


def _source(request: Request) -> str:
    return "cli" if request.headers.get("user-agent", "").startswith(CLI_AGENT) else "api"


@router.post("", status_code=202, response_model=JobCreated, responses={**ERRORS, 409: {}})
def create(
    body: JobRequest,
    request: Request,
    rt: RuntimeDep,
    producer: ProducerDep,
    who: Writer,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=255)] = None,
) -> JobCreated:
    return submit_and_kick(
        rt,
        producer,
        body,
        submit.Submitter(name=who.name, source=_source(request), tenant=who.tenant),
        idempotency_key,
    )


# A job-list cursor is "<created_at in µs since the epoch>_<job id>"; clients treat it as
# opaque. The schema pattern admits only strings that decode, so no cursor can fail later.
JOB_CURSOR_PATTERN = r"^[0-9]{1,16}_[0-9a-f-]{36}$"


def _encode_cursor(job: Job) -> str:
    micros = int(job.created_at.timestamp()) * 1_000_000 + job.created_at.microsecond
    return f"{micros}_{job.id}"


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    micros, _, job_id = cursor.partition("_")
    at = datetime.fromtimestamp(int(micros) // 1_000_000, tz=UTC)
    return at.replace(microsecond=int(micros) % 1_000_000), job_id


def _aware(value: datetime | None) -> datetime | None:
    # A time without a zone is taken as UTC, like every time keybind returns.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


@router.get("", response_model=JobPage, responses=ERRORS)
def list_jobs(
    rt: RuntimeDep,
    who: Reader,
    state: JobState | None = None,
    provider: ProviderName | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(pattern=JOB_CURSOR_PATTERN)] = None,
) -> JobPage:
    """Jobs newest first; pass `next_cursor` back as `cursor` for the next page."""
    rows = reads.list_jobs(
        sessions=rt.sessions,
        flt=reads.JobFilter(
            state=state.value if state else None,
            provider=provider,
            created_after=_aware(created_after),
            created_before=_aware(created_before),
            tenant=who.tenant,
        ),
        before=_decode_cursor(cursor) if cursor else None,
        limit=limit,
    )
    items = [job_view(j, rate=rt.rates.job_rate(j)) for j in rows]
    next_cursor = _encode_cursor(rows[-1]) if len(rows) == limit else None
    return JobPage(items=items, next_cursor=next_cursor)


def _held_versions(job_id: str, if_none_match: str | None) -> frozenset[str]:
    """The versions of this job that the client's ETags (If-None-Match) name, as spelled."""
    if if_none_match is None:
        return frozenset()
    head = f'W/"{job_id}-'
    tags = (t.strip() for t in if_none_match.split(","))
    return frozenset(t[len(head) : -1] for t in tags if t.startswith(head) and t.endswith('"'))


def _status_turn(
    rt: Runtime, bodies: Bodies, token: str, job_id: str, held: frozenset[str]
) -> tuple[Principal | None, Status | None]:
    """The caller and the job's status on one connection in one threadpool turn: what a poll
    costs is its round trips to the database and its thread hand-offs, not its CPU."""
    with rt.autocommit.connect() as conn:
        who = authenticate(conn, token)
        if who is None or not who.allows(READ):
            return who, None
        found = read_status(
            conn=conn,
            bodies=bodies,
            job_id=job_id,
            tenant=who.tenant,
            rate=rt.rates.job_rate,
            held=held,
        )
        return who, found


@router.get("/{job_id}", response_model=JobView, responses={**ERRORS, 304: {}})
async def status(
    job_id: JobId,
    rt: RuntimeDep,
    bodies: BodiesDep,
    token: BearerToken,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    held = _held_versions(job_id, if_none_match)
    who, found = await run_in_threadpool(_status_turn, rt, bodies, token, job_id, held)
    admit(who, READ)  # 401 or 403, exactly as every other route answers
    if found is None:
        raise ApiError(404, "not_found", f"no job {job_id!r}")
    headers = {"ETag": f'W/"{job_id}-{found.version}"'}
    if found.body is None:
        return Response(status_code=304, headers=headers)
    return Response(found.body, media_type="application/json", headers=headers)


@router.post("/{job_id}/cancel", response_model=JobView, responses={**ERRORS, 409: {}})
def cancel(job_id: JobId, rt: RuntimeDep, who: Writer) -> JobView:
    """Targets not yet called become `cancelled` now; calls in flight finish; the job ends
    `cancelled`. Repeating it is harmless; a job already final is a 409."""
    try:
        job = cancelling.cancel_job(sessions=rt.sessions, job_id=job_id, tenant=who.tenant)
    except cancelling.JobFinal as exc:
        raise ApiError(409, "job_final", f"job {job_id!r} is already final") from exc
    if job is None:
        raise ApiError(404, "not_found", f"no job {job_id!r}")
    return job_view(job, rate=rt.rates.job_rate(job))


def _sse(event: str, data: str, event_id: str | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {data}\n\n"


@router.get(
    "/{job_id}/events",
    responses={
        **ERRORS,
        200: {"content": {"text/event-stream": {}}, "description": "a stream of `job` events"},
    },
    response_class=StreamingResponse,
)
async def events(
    job_id: JobId,
    request: Request,
    rt: RuntimeDep,
    who: Reader,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Server-Sent Events: a `job` event (the job, as GET returns it) whenever it changes, an
    `end` event once it is final, then the stream closes. The event id is the job's version,
    so a reconnect with Last-Event-ID skips an unchanged job."""
    first = await run_in_threadpool(
        reads.get_job, sessions=rt.sessions, job_id=job_id, tenant=who.tenant
    )
    if first is None:
        raise ApiError(404, "not_found", f"no job {job_id!r}")

    async def stream() -> AsyncIterator[str]:
        seen = last_event_id
        quiet = 0.0
        job: Job | None = first
        while job is not None:
            if str(job.version) != seen:
                seen = str(job.version)
                view = job_view(job, rate=rt.rates.job_rate(job))
                yield _sse("job", view.model_dump_json(exclude={"callbacks"}), seen)
                quiet = 0.0
            if JobState(job.state).final:
                yield _sse("end", json.dumps({"state": job.state}))
                return
            if quiet >= EVENTS_KEEPALIVE_S:
                yield ": keepalive\n\n"  # a comment: keeps proxies from closing the stream
                quiet = 0.0
            await asyncio.sleep(EVENTS_POLL_S)
            quiet += EVENTS_POLL_S
            if await request.is_disconnected():
                return
            version = await run_in_threadpool(
                reads.get_job_version, sessions=rt.sessions, job_id=job_id, tenant=who.tenant
            )
            if version is None:
                return
            if str(version) != seen:
                job = await run_in_threadpool(
                    reads.get_job, sessions=rt.sessions, job_id=job_id, tenant=who.tenant
                )

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


@router.get("/{job_id}/instances", response_model=TargetPage, responses=ERRORS)
def instances(
    job_id: JobId,
    rt: RuntimeDep,
    who: Reader,
    state: TargetState | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=20)] = None,
) -> TargetPage:
    _load(rt, job_id, who)
    after = 0
    if cursor:
        if not cursor.isdigit():
            raise ApiError(
                422, "invalid_request", f"cursor: not a cursor from this API: {cursor!r}"
            )
        after = int(cursor)
    rows = reads.list_targets(
        sessions=rt.sessions, job_id=job_id, state=state, after_id=after, limit=limit
    )
    # TargetView's fields are the target's own columns, by name.
    items = [TargetView.model_validate(t, from_attributes=True) for t in rows]
    next_cursor = str(rows[-1].id) if len(rows) == limit else None
    return TargetPage(items=items, next_cursor=next_cursor)
