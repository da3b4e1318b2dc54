"""A job row as the API, the status page and callbacks show it. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from app.domain.states import JobState
from app.jobs.schemas import CallbackAttemptView, Counts, JobView


class JobFields(Protocol):
    """What a view reads from a job: an ORM `Job` or the poll path's lean row."""

    @property
    def id(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def provider(self) -> str: ...
    @property
    def account(self) -> str: ...
    @property
    def region(self) -> str: ...
    @property
    def key_ids(self) -> list[str]: ...
    @property
    def power_policy(self) -> str: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def total(self) -> int: ...
    @property
    def n_pending(self) -> int: ...
    @property
    def n_running(self) -> int: ...
    @property
    def n_retrying(self) -> int: ...
    @property
    def n_succeeded(self) -> int: ...
    @property
    def n_failed(self) -> int: ...
    @property
    def n_cancelled(self) -> int: ...
    @property
    def submitted_by(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def started_at(self) -> datetime | None: ...
    @property
    def finished_at(self) -> datetime | None: ...
    @property
    def cancel_requested_at(self) -> datetime | None: ...
    @property
    def callback_url(self) -> str | None: ...
    @property
    def callback_state(self) -> str | None: ...


class CallbackFields(Protocol):
    """What a view reads from one callback attempt (ORM object or row)."""

    @property
    def attempt(self) -> int: ...
    @property
    def started_at(self) -> datetime: ...
    @property
    def http_status(self) -> int | None: ...
    @property
    def error(self) -> str | None: ...
    @property
    def latency_ms(self) -> float: ...


def progress(job: JobFields) -> float:
    done = job.n_succeeded + job.n_failed + job.n_cancelled
    return round(done / job.total, 4) if job.total else 1.0


def eta_seconds(job: JobFields, rate: float) -> float | None:
    """What is left over the account's configured rate: a floor, since other jobs on the
    same account share that rate and retries wait their backoff."""
    if JobState(job.state).final:
        return None
    left = job.n_pending + job.n_running + job.n_retrying
    return round(left / rate, 1) if rate > 0 else None


def job_view(job: JobFields, *, rate: float, callbacks: Sequence[CallbackFields] = ()) -> JobView:
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
        progress=progress(job),
        eta_seconds=eta_seconds(job, rate),
        cancel_requested_at=job.cancel_requested_at,
        callback_url=job.callback_url,
        callback_state=job.callback_state,  # type: ignore[arg-type]
        callbacks=[
            CallbackAttemptView(
                attempt=c.attempt,
                at=c.started_at,
                http_status=c.http_status,
                error=c.error,
                latency_ms=round(c.latency_ms, 1),
            )
            for c in callbacks
        ],
    )
