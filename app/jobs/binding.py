"""A worker's turn at a batch of targets: claim, wait for the limiter, call the cloud, record."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlalchemy.orm import Session

from app.db import transaction, utcnow
from app.jobs import repository as repo
from app.jobs.models import Job, Target
from app.jobs.retry import decide
from app.jobs.states import TargetState
from app.providers.base import (
    BindRequest,
    CallError,
    CallResult,
    ErrorClass,
    InstanceResult,
    InstanceStatus,
    NoSlot,
    Outcome,
    ProviderConfigError,
    VerifyRequest,
)
from app.runtime import Runtime

log = logging.getLogger(__name__)
VERIFY_TIMEOUT = "keybind.VerifyTimeout"
CONFIG_ERROR = "keybind.AccountMisconfigured"
NO_REASON = CallError("keybind.NoReason", "the provider gave no reason", ErrorClass.RETRY)


def bind_targets(rt: Runtime, target_ids: Sequence[int]) -> int:
    """Bind the given targets (those still waiting and due) in one provider turn; returns the
    number of cloud calls made."""
    claims, job = _claim(rt, target_ids)
    if not claims or job is None:
        return 0
    try:
        provider = rt.provider(job.provider, job.account)
    except (ProviderConfigError, KeyError) as exc:
        # No credentials to call with: retrying cannot help until an operator fixes the
        # configuration, so each target fails saying what is missing (never a secret).
        log.error("cannot call %s account %r: %s", job.provider, job.account, exc)
        error = CallError(CONFIG_ERROR, str(exc).strip("'\""), ErrorClass.TERMINAL)
        failed = InstanceResult(InstanceStatus.FAILED, error)
        _record(rt, claims, Outcome([], {c.instance_id: failed for c in claims}), verify=False)
        return 0
    request = BindRequest(
        region=job.region,
        instance_ids=tuple(c.instance_id for c in claims),
        key_ids=tuple(job.key_ids),
        force_stop=job.power_policy == "force_stop",
        options=dict(job.options or {}),
    )
    try:
        outcome = provider.bind(request, rt.pace(job.provider, job.account))
    except NoSlot:
        # No slot within the bound: hand the targets back untouched rather than hold a
        # worker slot hostage; the dispatcher releases them again.
        outcome = Outcome()
    verify = provider.spec.verify_action is not None
    _record(rt, claims, outcome, verify=verify)
    return len(outcome.calls)


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


def _attempt_rows(
    session: Session,
    claims: Sequence[repo.Claim] | Sequence[repo.VerifyClaim],
    calls: Sequence[CallResult],
) -> None:
    """One attempts row per call per claimed instance it covered."""
    by_instance = {c.instance_id: c.target_id for c in claims}
    for call in calls:
        for iid in call.instance_ids:
            target_id = by_instance.get(iid)
            if target_id is None:
                continue
            error = call.error_for(iid)
            repo.add_attempt(
                session,
                target_id=target_id,
                action=call.action,
                started_at=call.started_at,
                latency_ms=call.latency_ms,
                http_status=call.http_status,
                request_id=call.request_id,
                error_code=error.code if error else None,
                error_message=error.message if error else None,
            )


def _record(rt: Runtime, claims: Sequence[repo.Claim], outcome: Outcome, *, verify: bool) -> None:
    now = utcnow()
    deltas = repo.CounterDeltas()
    untouched = [c for c in claims if c.instance_id not in outcome.results]
    with transaction(rt.sessions) as session:
        _attempt_rows(session, claims, outcome.calls)
        for c in claims:
            result = outcome.results.get(c.instance_id)
            if result is None:
                continue
            attempts = c.attempts + 1
            if verify and result.status in (InstanceStatus.ACCEPTED, InstanceStatus.OPERATING):
                # Accepted is not done: the target stays running, lease given up, and waits
                # in PostgreSQL (not in a sleeping worker) for its verify look.
                moved = repo.update_running(
                    session,
                    target_id=c.target_id,
                    holder=c.lease_token,
                    in_phase=repo.BIND,
                    phase=repo.VERIFY,
                    attempts=attempts,
                    request_id=result.request_id,
                    error_code=None,
                    error_message=None,
                    lease_until=None,
                    lease_token=None,
                    dispatched_until=None,
                    next_attempt_at=now + timedelta(seconds=rt.settings.verify_delay_s),
                    verify_started_at=now,
                    verify_checks=0,
                    **_notes(result.notes),
                )
                if not moved:
                    log.warning("lease lost for target %s before recording", c.target_id)
                continue
            error = None
            if result.status is InstanceStatus.FAILED:
                error = result.error or NO_REASON
            d = decide(
                error=error,
                attempts=attempts,
                first_attempt_at=c.first_attempt_at,
                now=now,
                policy=rt.retry_policy,
                rng=rt.rng,
            )
            values: dict[str, object] = {
                **_notes(result.notes),
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
    if untouched:
        _release(rt, untouched)


def _notes(notes: Mapping[str, str]) -> dict[str, object]:
    values: dict[str, object] = {"notes": dict(notes)} if notes else {}
    if "previous_key" in notes:
        values["previous_key"] = notes["previous_key"]  # its own column: JD replace
    return values


def verify_targets(rt: Runtime, target_ids: Sequence[int]) -> int:
    """Look up accepted binds (those due in the verify phase) in one provider turn; returns
    the number of cloud calls made."""
    claims, job = _claim_verify(rt, target_ids)
    if not claims or job is None:
        return 0
    try:
        provider = rt.provider(job.provider, job.account)
    except (ProviderConfigError, KeyError) as exc:
        log.error("cannot call %s account %r: %s", job.provider, job.account, exc)
        error = CallError(CONFIG_ERROR, str(exc).strip("'\""), ErrorClass.TERMINAL)
        failed = InstanceResult(InstanceStatus.FAILED, error)
        _record_verify(rt, claims, Outcome([], {c.instance_id: failed for c in claims}))
        return 0
    request = VerifyRequest(
        region=job.region,
        instance_ids=tuple(c.instance_id for c in claims),
        key_ids=tuple(job.key_ids),
        bind_request_ids={c.instance_id: c.bind_request_id for c in claims},
    )
    try:
        outcome = provider.verify(request, rt.pace(job.provider, job.account))
    except NoSlot:
        outcome = Outcome()
    _record_verify(rt, claims, outcome)
    return len(outcome.calls)


def _claim_verify(
    rt: Runtime, target_ids: Sequence[int]
) -> tuple[list[repo.VerifyClaim], Job | None]:
    now = utcnow()
    lease_until = now + timedelta(seconds=rt.settings.lease_s)
    claims: list[repo.VerifyClaim] = []
    with transaction(rt.sessions) as session:
        rows = repo.claimable_verify(session, target_ids, now)
        job = session.get(Job, rows[0].job_id) if rows else None
        for t in rows:
            if job is None or t.job_id != job.id:
                continue
            token = secrets.token_hex(16)
            if repo.update_running(
                session,
                target_id=t.id,
                holder=None,
                in_phase=repo.VERIFY,
                lease_until=lease_until,
                lease_token=token,
                dispatched_until=None,
            ):
                claims.append(
                    repo.VerifyClaim(
                        target_id=t.id,
                        job_id=t.job_id,
                        instance_id=t.instance_id,
                        bind_request_id=t.request_id,
                        verify_started_at=t.verify_started_at or now,
                        verify_checks=t.verify_checks,
                        lease_token=token,
                    )
                )
    return claims, job


def verify_backoff(checks: int, *, first_s: float, max_s: float) -> float:
    """Seconds until the next look after `checks` looks that found the bind still going."""
    return min(max_s, max(first_s, 0.5) * 2 ** max(0, checks - 1))


def _record_verify(rt: Runtime, claims: Sequence[repo.VerifyClaim], outcome: Outcome) -> None:
    now = utcnow()
    s = rt.settings
    deltas = repo.CounterDeltas()
    with transaction(rt.sessions) as session:
        _attempt_rows(session, claims, outcome.calls)
        for c in claims:
            result = outcome.results.get(c.instance_id)
            if result is None:
                # Not looked at (no slot): back to waiting for a look, no check counted.
                repo.update_running(
                    session,
                    target_id=c.target_id,
                    holder=c.lease_token,
                    in_phase=repo.VERIFY,
                    lease_until=None,
                    lease_token=None,
                    next_attempt_at=now,
                )
                continue
            error = result.error if result.status is InstanceStatus.FAILED else None
            if result.status is InstanceStatus.FAILED and error is None:
                error = NO_REASON
            common: dict[str, object] = {
                **_notes(result.notes),
                "verify_request_id": result.request_id,
                "lease_until": None,
                "lease_token": None,
            }
            if result.status is InstanceStatus.VERIFIED:
                _finish(session, deltas, c, TargetState.SUCCEEDED, now, None, None, **common)
                continue
            if error is not None and not error.error_class.retryable:
                _finish(
                    session, deltas, c, TargetState.FAILED, now, error.code, error.message, **common
                )
                continue
            # Still operating, or the look itself failed in a way worth repeating.
            checks = c.verify_checks + 1
            if (now - c.verify_started_at).total_seconds() >= s.verify_budget_s:
                seen = error.message if error else "the operation was still in progress"
                _finish(
                    session,
                    deltas,
                    c,
                    TargetState.FAILED,
                    now,
                    VERIFY_TIMEOUT,
                    f"the bind was accepted but not confirmed within {s.verify_budget_s:g} s"
                    f" ({checks} looks; last: {seen})",
                    **common,
                )
                continue
            wait = verify_backoff(checks, first_s=s.verify_delay_s, max_s=s.verify_interval_max_s)
            repo.update_running(
                session,
                target_id=c.target_id,
                holder=c.lease_token,
                in_phase=repo.VERIFY,
                verify_checks=checks,
                next_attempt_at=now + timedelta(seconds=wait),
                error_code=error.code if error else None,
                error_message=error.message if error else None,
                **common,
            )
        repo.apply_counts(session, deltas, now)


def _finish(
    session: Session,
    deltas: repo.CounterDeltas,
    c: repo.VerifyClaim,
    dst: TargetState,
    now: datetime,
    code: str | None,
    message: str | None,
    **values: object,
) -> None:
    moved = repo.move_target(
        session,
        deltas,
        target_id=c.target_id,
        job_id=c.job_id,
        src=TargetState.RUNNING,
        dst=dst,
        holder=c.lease_token,
        error_code=code,
        error_message=message,
        finished_at=now,
        **values,
    )
    if not moved:
        log.warning("lease lost for target %s before recording its verify", c.target_id)
