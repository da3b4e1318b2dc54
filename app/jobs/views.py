"""A job row as the API, the status page and callbacks show it. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Sequence

from app.jobs.models import CallbackAttempt, Job
from app.jobs.schemas import CallbackAttemptView, Counts, JobView
from app.jobs.states import JobState


def progress(job: Job) -> float:
    done = job.n_succeeded + job.n_failed + job.n_cancelled
    return round(done / job.total, 4) if job.total else 1.0


def eta_seconds(job: Job, rate: float) -> float | None:
    """What is left over the account's configured rate: a floor, since other jobs on the
    same account share that rate and retries wait their backoff."""
    if JobState(job.state).final:
        return None
    left = job.n_pending + job.n_running + job.n_retrying
    return round(left / rate, 1) if rate > 0 else None


def job_view(job: Job, *, rate: float, callbacks: Sequence[CallbackAttempt] = ()) -> JobView:
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
