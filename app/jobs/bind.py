"""A worker's bind turn: claim a batch of targets, wait for the limiter, call the cloud, record
what each target's answer means (domain/outcomes.py)."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from kombu.exceptions import KombuError
from redis.exceptions import RedisError
from sqlalchemy import Connection

from app.domain.claims import Claim
from app.domain.outcomes import Cloud, Split, Verify, after_bind
from app.jobs.cloud import all_failed, connect, pace
from app.jobs.ports import Producer
from app.providers.base import BindRequest, CallError, NoSlot, Outcome, ProviderSpec
from app.providers.registry import spec as provider_spec
from app.runtime import Runtime
from app.store import claims as store
from app.store.counters import CounterDeltas, apply_counts
from app.store.db import transaction, utcnow
from app.store.models import Job
from app.store.target_writes import Writes, add_attempts, attempt_rows

log = logging.getLogger(__name__)
# A bind call that had at least this many instances accepted sends their verify look itself.
OWN_LOOK_MIN = 50


def bind_targets(
    rt: Runtime, producer: Producer, target_ids: Sequence[int], *, front: bool = False
) -> int:
    """Bind the given targets (those still waiting and due) in one provider turn; returns the
    number of cloud calls made. `front`: the call came through the broker's front lane (a
    job's first call), so its verify look is asked for as soon as it is due."""
    if rt.engine.dialect.name != "postgresql":
        return _turn(rt, producer, None, target_ids, front)
    # One autocommit connection for the whole turn: the claim is one statement, and so is
    # the record whenever every target got the same change (the common case). Round trips to
    # the database, not CPU, are what a turn costs.
    with rt.autocommit.connect() as conn:
        return _turn(rt, producer, conn, target_ids, front)


def _turn(
    rt: Runtime,
    producer: Producer,
    conn: Connection | None,
    target_ids: Sequence[int],
    front: bool,
) -> int:
    claims, job = _claim(rt, conn, target_ids)
    if not claims or job is None:
        return 0
    provider = connect(rt, job)
    if isinstance(provider, CallError):
        outcome = all_failed((c.instance_id for c in claims), provider)
        _record(rt, conn, claims, outcome, spec=provider_spec(job.provider))
        return 0
    request = BindRequest(
        region=job.region,
        instance_ids=tuple(c.instance_id for c in claims),
        key_ids=tuple(job.key_ids),
        force_stop=job.power_policy == "force_stop",
        options=dict(job.options or {}),
    )
    try:
        outcome = provider.bind(request, pace(rt, job.provider, job.account, front=front))
    except NoSlot:
        # No slot within the bound: hand the targets back untouched rather than hold a
        # worker slot hostage; the dispatcher releases them again.
        outcome = Outcome()
    recorded = _record(rt, conn, claims, outcome, spec=provider.spec)
    try:
        if recorded.split:
            # Halves are due now; the next tick would release them anyway, a kick saves
            # waiting for it.
            producer.kick_dispatch()
        elif recorded.verifying and (front or len(recorded.verifying) >= OWN_LOOK_MIN):
            # Send the look for when it falls due instead of waiting up to a dispatcher tick
            # for it (the tick still hands it out if this message is lost). A small job's
            # whole wait is its look, so a front-lane call (a job's first) always gets its
            # own; so does a call of many instances, which fills a look by itself. A busy
            # account's one-per-call bulk keeps its looks batched 100 a call by the dispatcher.
            producer.enqueue_verifies(
                [recorded.verifying], countdown=rt.settings.verify_delay_s + 0.05
            )
    except (KombuError, RedisError, OSError) as exc:
        # Everything is recorded; the beat's next tick does what the kick would have.
        log.warning("could not kick the dispatcher (%s)", type(exc).__name__)
    return len(outcome.calls)


@dataclass(frozen=True, slots=True)
class Recorded:
    split: bool  # a call was split in halves, due now
    verifying: list[int]  # targets accepted, waiting for their verify look


def _claim(
    rt: Runtime, conn: Connection | None, target_ids: Sequence[int]
) -> tuple[list[Claim], Job | None]:
    now = utcnow()
    until = now + timedelta(seconds=rt.settings.lease_s)
    token = secrets.token_hex(16)
    if conn is not None:
        claims = store.claim_targets_at_once(
            conn, target_ids, now=now, lease_until=until, token=token
        )
        if not claims:
            return [], None
        job = rt.jobs.peek(claims[0].job_id)
        if job is None:
            with rt.sessions() as session:
                job = rt.jobs.get(session, claims[0].job_id)
        return claims, job
    deltas = CounterDeltas()
    with transaction(rt.sessions) as session:
        claims = store.claim_targets(
            session, deltas, target_ids, now=now, lease_until=until, token=token
        )
        job = rt.jobs.get(session, claims[0].job_id) if claims else None
        apply_counts(session, deltas, now)
    return claims, job


def _record(
    rt: Runtime,
    conn: Connection | None,
    claims: Sequence[Claim],
    outcome: Outcome,
    *,
    spec: ProviderSpec,
) -> Recorded:
    """Write the turn's results: one change per claimed target, with the calls' attempts."""
    now = utcnow()
    cloud = Cloud(spec.verify_action is not None, spec.names_an_instance)
    changes = after_bind(
        claims,
        outcome,
        cloud=cloud,
        now=now,
        policy=rt.retry_policy,
        verify=rt.verify_policy,
        jitter=rt.rng.random(),
    )
    writes = Writes(claims[0].job_id, claims[0].lease_token)
    for target_id, change in changes.items():
        writes.add(target_id, change, now)
    attempts = attempt_rows({c.instance_id: c.target_id for c in claims}, outcome.calls)
    if conn is not None and len(writes.groups) == 1:
        writes.flush_at_once(conn, attempts, now)
    else:
        deltas = CounterDeltas()
        with transaction(rt.sessions) as session:
            add_attempts(session, attempts)
            writes.flush(session, deltas)
            apply_counts(session, deltas, now)
    return Recorded(
        split=any(isinstance(c, Split) for c in changes.values()),
        verifying=[t for t, c in changes.items() if isinstance(c, Verify)],
    )
