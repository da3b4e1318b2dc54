"""Outbound callbacks: POST a final job's summary to its callback_url, signed the Standard
Webhooks way, retried with backoff. The job row holds the schedule, callback_attempts the
history, so a worker or broker restart loses neither."""

from __future__ import annotations

import json
import logging
import random
import time
from datetime import timedelta

import httpx

from app.domain.states import CallbackState, next_callback_state
from app.jobs.views import job_view
from app.runtime import Runtime
from app.store import callbacks as store
from app.store.db import transaction, utcnow
from app.store.models import CallbackAttempt, Job
from app.webhooks import egress
from app.webhooks.signing import Secret, parse_secrets, standard_headers

log = logging.getLogger(__name__)

EVENT_TYPE = "job.finished"
MAX_PER_TICK = 50  # one tick sends at most this many, so a backlog cannot hog a worker
REFUSED = "keybind.CallbackAddressRefused"


def payload(job: Job, rate: float) -> bytes:
    """The Standard Webhooks envelope: {"type", "timestamp", "data": <the job>}."""
    view = job_view(job, rate=rate)
    data = view.model_dump(mode="json", exclude={"callbacks"})
    body = {"type": EVENT_TYPE, "timestamp": utcnow().isoformat(), "data": data}
    return json.dumps(body, separators=(",", ":")).encode()


def backoff_s(rt: Runtime, attempt: int) -> float:
    """Exponential with full jitter, like target retries: uniform in [0, min(max, base·2^(n-1))],
    never under half the step so a failing receiver is not hammered."""
    s = rt.settings
    cap = min(s.callback_backoff_max_s, s.callback_backoff_base_s * 2 ** max(0, attempt - 1))
    return random.uniform(cap / 2, cap)


def deliver_due(rt: Runtime, client: httpx.Client | None = None) -> int:
    """Send every callback that is due now (up to MAX_PER_TICK); returns attempts made."""
    secret = rt.settings.callback_secret
    if secret is None:
        return 0
    signers = parse_secrets(secret.get_secret_value())
    own = client is None
    http = client or httpx.Client(timeout=rt.settings.callback_timeout_s, trust_env=False)
    made = 0
    try:
        for _ in range(MAX_PER_TICK):
            if not _deliver_one(rt, http, signers):
                break
            made += 1
    finally:
        if own:
            http.close()
    return made


def _post(
    rt: Runtime, http: httpx.Client, url: str, body: bytes, headers: dict[str, str]
) -> httpx.Response:
    if rt.settings.callback_allow_private_networks:
        return http.post(url, content=body, headers=headers)
    pinned = egress.pin(url)
    return http.post(
        pinned.url,
        content=body,
        headers={**headers, **pinned.headers},
        extensions=pinned.extensions,
    )


def _deliver_one(rt: Runtime, http: httpx.Client, signers: list[Secret]) -> bool:
    now = utcnow()
    lease_until = now + timedelta(seconds=rt.settings.callback_timeout_s + 30)
    with transaction(rt.sessions) as session:
        job = store.claim_due_callback(session, now, lease_until)
        if job is None:
            return False
        number = store.count_callback_attempts(session, job.id) + 1
    assert job.callback_url is not None
    body = payload(job, rt.rates.job_rate(job))
    # The id stays the same across retries, so the receiver can drop duplicates.
    headers = standard_headers(
        signers,
        msg_id=f"msg_{job.id}",
        timestamp=int(time.time()),
        body=body,
    )
    headers["content-type"] = "application/json"
    headers["user-agent"] = "keybind-callbacks/1"
    started = utcnow()
    t0 = time.monotonic()
    status: int | None = None
    error: str | None = None
    refused = False
    try:
        response = _post(rt, http, job.callback_url, body, headers)
        status = response.status_code
        if not 200 <= status < 300:
            error = f"HTTP {status}"
    except egress.EgressRefused as exc:
        # Says which address, never the URL (its query may carry the receiver's token).
        error, refused = f"{REFUSED}: {exc}"[:256], True
    except httpx.HTTPError as exc:
        error = type(exc).__name__
    latency_ms = (time.monotonic() - t0) * 1000
    state = next_callback_state(
        delivered=error is None,
        refused=refused,
        attempt=number,
        max_attempts=rt.settings.callback_max_attempts,
    )
    next_at = None
    if state is CallbackState.PENDING:
        next_at = utcnow() + timedelta(seconds=backoff_s(rt, number))
    with transaction(rt.sessions) as session:
        recorded = store.record_callback_attempt(
            session,
            job_id=job.id,
            leased_until=lease_until,
            attempt=CallbackAttempt(
                job_id=job.id,
                attempt=number,
                started_at=started,
                latency_ms=latency_ms,
                http_status=status,
                error=error,
            ),
            state=state,
            next_at=next_at,
        )
    if not recorded:
        log.warning("callback lease for job %s ran out before its result was recorded", job.id)
    elif error is not None:
        # The URL may carry a token in its query; log the job, not the URL.
        log.info("callback for job %s attempt %d failed: %s", job.id, number, error)
    return True
