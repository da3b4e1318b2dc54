"""A worker's verify turn: look at accepted binds (one provider turn per job) and record what
each look found (domain/outcomes.after_look)."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import timedelta

from app.domain.calls import CallError
from app.domain.claims import LookClaim
from app.domain.outcomes import after_look
from app.jobs.cloud import all_failed, connect, pace
from app.providers.base import NoSlot, Outcome, VerifyRequest
from app.runtime import Runtime
from app.store import claims as store
from app.store.counters import CounterDeltas, apply_counts
from app.store.db import transaction, utcnow
from app.store.models import Job
from app.store.target_writes import Writes, add_attempts, attempt_rows


def verify_targets(rt: Runtime, target_ids: Sequence[int]) -> int:
    """Look up accepted binds (those due in the verify phase) in one provider turn per job;
    returns the number of cloud calls made."""
    now = utcnow()
    token = secrets.token_hex(16)
    until = now + timedelta(seconds=rt.settings.lease_s)
    with transaction(rt.sessions) as session:
        claims = store.claim_looks(session, target_ids, now, token=token, lease_until=until)
        jobs = {j: rt.jobs.get(session, j) for j in {c.job_id for c in claims}}
    calls = 0
    for job_id, job in jobs.items():  # the dispatcher batches one job's targets; be safe
        assert job is not None  # a target's job cannot vanish while the target exists
        calls += _look(rt, job, [c for c in claims if c.job_id == job_id])
    return calls


def _look(rt: Runtime, job: Job, claims: list[LookClaim]) -> int:
    provider = connect(rt, job)
    if isinstance(provider, CallError):
        _record(rt, claims, all_failed((c.instance_id for c in claims), provider))
        return 0
    request = VerifyRequest(
        region=job.region,
        instance_ids=tuple(c.instance_id for c in claims),
        key_ids=tuple(job.key_ids),
        bind_request_ids={c.instance_id: c.bind_request_id for c in claims},
    )
    try:
        outcome = provider.verify(request, pace(rt, job.provider, job.account))
    except NoSlot:
        outcome = Outcome()
    _record(rt, claims, outcome)
    return len(outcome.calls)


def _record(rt: Runtime, claims: Sequence[LookClaim], outcome: Outcome) -> None:
    now = utcnow()
    changes = after_look(claims, outcome, now=now, verify=rt.verify_policy)
    writes = Writes(claims[0].job_id, claims[0].lease_token)
    for target_id, change in changes.items():
        writes.add(target_id, change, now)
    deltas = CounterDeltas()
    with transaction(rt.sessions) as session:
        add_attempts(
            session, attempt_rows({c.instance_id: c.target_id for c in claims}, outcome.calls)
        )
        writes.flush(session, deltas)
        apply_counts(session, deltas, now)
