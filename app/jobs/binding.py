"""A worker's turn at a batch of targets: claim, wait for the limiter, call the cloud, record."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import func

from app.db import transaction, utcnow
from app.jobs import repository as repo
from app.jobs.models import Job, Target
from app.jobs.retry import decide
from app.jobs.states import TargetState
from app.providers.base import BindRequest, CallResult
from app.runtime import Runtime

log = logging.getLogger(__name__)


def bind_targets(rt: Runtime, target_ids: Sequence[int]) -> int:
    """Run one call for the given targets (those still waiting and due); returns calls made."""
    claims, job = _claim(rt, target_ids)
    if not claims or job is None:
        return 0
    provider = rt.provider(job.provider, job.account)
    key = rt.limiter_key(job.provider, job.account, provider.bind_action)
    waited = rt.limiter.acquire(
        key, rt.rate_for(job.provider), max_wait=rt.settings.rate_limit_max_wait_s
    )
    if waited is None:
        # No slot within the bound: hand the targets back untouched rather than hold a
        # worker slot hostage; the dispatcher releases them again.
        _release(rt, claims)
        return 0
    started = utcnow()
    result = provider.bind(
        BindRequest(
            region=job.region,
            instance_ids=tuple(c.instance_id for c in claims),
            key_ids=tuple(job.key_ids),
            force_stop=job.power_policy == "force_stop",
        )
    )
    _record(rt, claims, result, started)
    return 1


def _claim(rt: Runtime, target_ids: Sequence[int]) -> tuple[list[repo.Claim], Job | None]:
    now = utcnow()
    lease_until = now + timedelta(seconds=rt.settings.lease_s)
    claims: list[repo.Claim] = []
    deltas = repo.CounterDeltas()
    with transaction(rt.sessions) as session:
        rows = repo.claimable(session, target_ids, now)
        job = session.get(Job, rows[0].job_id) if rows else None
        for t in rows:
            if job is None or t.job_id != job.id:
                continue  # a batch is always one job's; anything else waits for its own
            token = secrets.token_hex(16)
            prior = TargetState(t.state)
            moved = repo.move_target(
                session,
                deltas,
                target_id=t.id,
                job_id=t.job_id,
                src=prior,
                dst=TargetState.RUNNING,
                lease_until=lease_until,
                lease_token=token,
                dispatched_until=None,
                first_attempt_at=func.coalesce(Target.first_attempt_at, now),
            )
            if moved:
                claims.append(
                    repo.Claim(
                        target_id=t.id,
                        job_id=t.job_id,
                        instance_id=t.instance_id,
                        prior_state=prior,
                        attempts=t.attempts,
                        first_attempt_at=t.first_attempt_at or now,
                        lease_token=token,
                    )
                )
        repo.apply_counts(session, deltas, now)
    return claims, job


def _release(rt: Runtime, claims: Sequence[repo.Claim]) -> None:
    now = utcnow()
    deltas = repo.CounterDeltas()
    with transaction(rt.sessions) as session:
        for c in claims:
            repo.move_target(
                session,
                deltas,
                target_id=c.target_id,
                job_id=c.job_id,
                src=TargetState.RUNNING,
                dst=c.prior_state,
                holder=c.lease_token,
                lease_until=None,
                lease_token=None,
                dispatched_until=None,
                next_attempt_at=now,
            )
        repo.apply_counts(session, deltas, now)


def _record(
    rt: Runtime, claims: Sequence[repo.Claim], result: CallResult, started: datetime
) -> None:
    now = utcnow()
    deltas = repo.CounterDeltas()
    with transaction(rt.sessions) as session:
        for c in claims:
            error = result.failed_instances.get(c.instance_id, result.error)
            repo.add_attempt(
                session,
                target_id=c.target_id,
                action=result.action,
                started_at=started,
                latency_ms=result.latency_ms,
                http_status=result.http_status,
                request_id=result.request_id,
                error_code=error.code if error else None,
                error_message=error.message if error else None,
            )
            attempts = c.attempts + 1
            d = decide(
                error=error,
                attempts=attempts,
                first_attempt_at=c.first_attempt_at,
                now=now,
                policy=rt.retry_policy,
                rng=rt.rng,
            )
            values: dict[str, object] = {
                "attempts": attempts,
                "error_code": d.error_code,
                "error_message": d.error_message,
                "request_id": result.request_id,
                "lease_until": None,
                "lease_token": None,
            }
            if d.next_attempt_at is not None:
                values["next_attempt_at"] = d.next_attempt_at
            if d.state.final:
                values["finished_at"] = now
            moved = repo.move_target(
                session,
                deltas,
                target_id=c.target_id,
                job_id=c.job_id,
                src=TargetState.RUNNING,
                dst=d.state,
                holder=c.lease_token,
                **values,
            )
            if not moved:
                # Our lease ran out and the sweeper handed the target on; the call above
                # still happened and is on record as an attempt.
                log.warning("lease lost for target %s before recording", c.target_id)
        repo.apply_counts(session, deltas, now)
