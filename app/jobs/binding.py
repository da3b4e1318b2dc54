"""A worker's turn at a batch of targets: claim, wait for the limiter, call the cloud, record."""

from __future__ import annotations

import json
import logging
import random
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from kombu.exceptions import KombuError
from redis.exceptions import RedisError
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from app.db import transaction, utcnow
from app.jobs import batching
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
    Provider,
    ProviderConfigError,
    ProviderSpec,
    VerifyRequest,
)
from app.providers.registry import spec as provider_spec
from app.runtime import Runtime

log = logging.getLogger(__name__)
VERIFY_TIMEOUT = "keybind.VerifyTimeout"
CONFIG_ERROR = "keybind.AccountMisconfigured"
# A bind call that had at least this many instances accepted sends their verify look itself.
OWN_LOOK_MIN = 50
NO_REASON = CallError("keybind.NoReason", "the provider gave no reason", ErrorClass.RETRY)


def _connect(rt: Runtime, job: Job) -> Provider | CallError:
    """The job's provider, connected; or, with no credentials to call with, the error every
    target fails with: retrying cannot help until an operator fixes the configuration."""
    try:
        return rt.provider(job.provider, job.account)
    except (ProviderConfigError, KeyError) as exc:
        log.error("cannot call %s account %r: %s", job.provider, job.account, exc)
        # Says what is missing, never a secret.
        return CallError(CONFIG_ERROR, str(exc).strip("'\""), ErrorClass.TERMINAL)


def _all_failed(instance_ids: Iterable[str], error: CallError) -> Outcome:
    failed = InstanceResult(InstanceStatus.FAILED, error)
    return Outcome([], dict.fromkeys(instance_ids, failed))


def bind_targets(rt: Runtime, target_ids: Sequence[int], *, front: bool = False) -> int:
    """Bind the given targets (those still waiting and due) in one provider turn; returns the
    number of cloud calls made. `front`: the call came through the broker's front lane (a
    job's first call), so its verify look is asked for as soon as it is due."""
    if rt.engine.dialect.name != "postgresql":
        return _bind_turn(rt, None, target_ids, front)
    # One autocommit connection for the whole turn: the claim is one statement, and so is
    # the record whenever every target got the same change (the common case). Round trips to
    # the database, not CPU, are what a turn costs.
    with rt.autocommit.connect() as conn:
        return _bind_turn(rt, conn, target_ids, front)


def _bind_turn(rt: Runtime, conn: Connection | None, target_ids: Sequence[int], front: bool) -> int:
    claims, job = _claim(rt, conn, target_ids)
    if not claims or job is None:
        return 0
    provider = _connect(rt, job)
    if isinstance(provider, CallError):
        outcome = _all_failed((c.instance_id for c in claims), provider)
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
        outcome = provider.bind(request, rt.pace(job.provider, job.account, front=front))
    except NoSlot:
        # No slot within the bound: hand the targets back untouched rather than hold a
        # worker slot hostage; the dispatcher releases them again.
        outcome = Outcome()
    recorded = _record(rt, conn, claims, outcome, spec=provider.spec)
    try:
        if recorded.split:
            # Halves are due now; the next tick would release them anyway, a kick saves
            # waiting for it.
            rt.kick_dispatch()
        elif recorded.verifying and (front or len(recorded.verifying) >= OWN_LOOK_MIN):
            # Send the look for when it falls due instead of waiting up to a dispatcher tick
            # for it (the tick still hands it out if this message is lost). A small job's
            # whole wait is its look, so a front-lane call (a job's first) always gets its
            # own; so does a call of many instances, which fills a look by itself. A busy
            # account's one-per-call bulk keeps its looks batched 100 a call by the dispatcher.
            rt.enqueue_verifies([recorded.verifying], countdown=rt.settings.verify_delay_s + 0.05)
    except (KombuError, RedisError, OSError) as exc:
        # Everything is recorded; the beat's next tick does what the kick would have.
        log.warning("could not kick the dispatcher (%s)", type(exc).__name__)
    return len(outcome.calls)


@dataclass(frozen=True, slots=True)
class _Recorded:
    split: bool  # a call was split in halves, due now
    verifying: list[int]  # targets accepted, waiting for their verify look


# The facts of a job a worker needs (provider, account, region, keys, policy) never change;
# keeping them saves a read per turn. Bounded: a long-lived worker sees many jobs.
_JOBS: dict[str, Job] = {}
_JOBS_KEPT = 1024


def _job(session: Session, job_id: str) -> Job | None:
    job = _JOBS.get(job_id)
    if job is None:
        job = session.get(Job, job_id)
        if job is not None:
            if len(_JOBS) >= _JOBS_KEPT:
                _JOBS.clear()
            _JOBS[job_id] = job
    return job


def _claim(
    rt: Runtime, conn: Connection | None, target_ids: Sequence[int]
) -> tuple[list[repo.Claim], Job | None]:
    now = utcnow()
    lease = {
        "now": now,
        "lease_until": now + timedelta(seconds=rt.settings.lease_s),
        "token": secrets.token_hex(16),
    }
    if conn is not None:
        claims = repo.claim_targets_at_once(conn, target_ids, **lease)
        if not claims:
            return [], None
        job = _JOBS.get(claims[0].job_id)
        if job is None:
            with rt.sessions() as session:
                job = _job(session, claims[0].job_id)
        return claims, job
    deltas = repo.CounterDeltas()
    with transaction(rt.sessions) as session:
        claims = repo.claim_targets(session, deltas, target_ids, **lease)
        job = _job(session, claims[0].job_id) if claims else None
        repo.apply_counts(session, deltas, now)
    return claims, job


def _release(rt: Runtime, claims: Sequence[repo.Claim]) -> None:
    """Hand claimed targets back untouched (no call was made for them)."""
    now = utcnow()
    deltas = repo.CounterDeltas()
    with transaction(rt.sessions) as session:
        for prior in {c.prior_state for c in claims}:
            mine = [c for c in claims if c.prior_state == prior]
            repo.move_targets(
                session,
                deltas,
                target_ids=[c.target_id for c in mine],
                job_id=mine[0].job_id,
                src=TargetState.RUNNING,
                dst=prior,
                holder=mine[0].lease_token,
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
    """One attempts row per call per claimed instance it covered, in one INSERT."""
    repo.add_attempts(session, _attempt_values(claims, calls))


def _attempt_values(
    claims: Sequence[repo.Claim] | Sequence[repo.VerifyClaim], calls: Sequence[CallResult]
) -> list[dict[str, Any]]:
    by_instance = {c.instance_id: c.target_id for c in claims}
    rows: list[dict[str, object]] = []
    for call in calls:
        for iid in call.instance_ids:
            target_id = by_instance.get(iid)
            if target_id is None:
                continue
            error = call.error_for(iid)
            rows.append(
                {
                    "target_id": target_id,
                    "action": call.action,
                    "started_at": call.started_at,
                    "latency_ms": call.latency_ms,
                    "http_status": call.http_status,
                    "request_id": call.request_id,
                    "error_code": error.code if error else None,
                    "error_message": error.message if error else None,
                }
            )
    return rows


@dataclass(frozen=True, slots=True)
class _Group:
    dst: TargetState | None
    in_phase: str
    values: dict[str, Any]
    count: tuple[str, ...]  # columns incremented by one
    ids: list[int]


@dataclass
class _Writes:
    """The target updates of one turn, gathered per identical change and written as one
    statement each: a call of 100 that succeeded is one UPDATE, not 100."""

    job_id: str
    holder: str
    groups: dict[tuple[Any, ...], _Group] = field(default_factory=dict)

    def add(
        self,
        target_id: int,
        *,
        dst: TargetState | None,
        in_phase: str = repo.BIND,
        count: tuple[str, ...] = (),
        **values: Any,
    ) -> None:
        """`dst` None: the target stays running (a phase move, a verify look). `count`:
        columns incremented by one."""
        frozen = tuple(
            sorted(
                (k, json.dumps(v, sort_keys=True) if isinstance(v, dict) else v)
                for k, v in values.items()
            )
        )
        key = (dst, in_phase, count, frozen)
        if key not in self.groups:
            self.groups[key] = _Group(dst, in_phase, values, count, [])
        self.groups[key].ids.append(target_id)

    def flush_at_once(
        self, conn: Connection, attempts: Sequence[dict[str, Any]], now: datetime
    ) -> None:
        """The one group of changes, the attempts and the counters as one statement."""
        (g,) = self.groups.values()
        moved = repo.record_at_once(
            conn,
            job_id=self.job_id,
            holder=self.holder,
            target_ids=g.ids,
            dst=g.dst,
            in_phase=g.in_phase,
            values=g.values,
            count=g.count,
            attempts=attempts,
            now=now,
        )
        if moved < len(g.ids):
            log.warning("lease lost for %d targets before recording", len(g.ids) - moved)
        self.groups.clear()

    def flush(self, session: Session, deltas: repo.CounterDeltas) -> None:
        for g in self.groups.values():
            dst, in_phase, ids = g.dst, g.in_phase, g.ids
            values = dict(g.values)
            for column in g.count:
                values[column] = getattr(Target, column) + 1
            if dst is None:
                moved = repo.update_running_many(
                    session, target_ids=ids, holder=self.holder, in_phase=in_phase, **values
                )
            else:
                moved = repo.move_targets(
                    session,
                    deltas,
                    target_ids=ids,
                    job_id=self.job_id,
                    src=TargetState.RUNNING,
                    dst=dst,
                    holder=self.holder,
                    **values,
                )
            if moved < len(ids):
                # Our lease ran out and the sweeper handed them on; the call still happened
                # and is on record as an attempt.
                log.warning("lease lost for %d targets before recording", len(ids) - moved)
        self.groups.clear()


def _splitting(
    claims: Sequence[repo.Claim], outcome: Outcome, spec: ProviderSpec
) -> dict[str, tuple[str, CallResult, int]]:
    """Instances whose call failed as a whole for a reason one of them may have caused:
    instance -> (its half's new bisect group, the call, how many the call carried)."""
    out: dict[str, tuple[str, CallResult, int]] = {}
    for call in outcome.calls:
        if call.error is None:
            continue
        covered = set(call.instance_ids)
        mine = [c for c in claims if c.instance_id in covered]
        if not batching.splits(call.error.code, len(mine), spec.names_an_instance(call.error.code)):
            continue
        for half in batching.halves(mine):
            group = batching.new_group()
            for c in half:
                out[c.instance_id] = (group, call, len(mine))
    return out


def _record(
    rt: Runtime,
    conn: Connection | None,
    claims: Sequence[repo.Claim],
    outcome: Outcome,
    *,
    spec: ProviderSpec,
) -> _Recorded:
    """Write the turn's results."""
    now = utcnow()
    verify = spec.verify_action is not None
    deltas = repo.CounterDeltas()
    writes = _Writes(claims[0].job_id, claims[0].lease_token)
    untouched = [c for c in claims if c.instance_id not in outcome.results]
    splitting = _splitting(claims, outcome, spec)
    # One draw per turn: instances that failed together retry together, as one call again.
    jitter = rt.rng.random()
    verifying: list[int] = []
    for c in claims:
        result = outcome.results.get(c.instance_id)
        if result is None:
            continue
        if c.instance_id in splitting:
            group, call, n = splitting[c.instance_id]
            assert call.error is not None
            # The call says one of its instances is at fault, not which: this one is
            # retried at once in its half. The call included it, so it is an attempt; it
            # says nothing about this instance, so it does not count towards giving up.
            writes.add(
                c.target_id,
                dst=TargetState.RETRYING,
                count=("attempts", "bisect_calls"),
                error_code=call.error.code,
                error_message=(
                    f"a call with {n} instances failed with {call.error.code}"
                    f" ({call.error.message}); retrying in halves to find the instance"
                ),
                request_id=call.request_id,
                lease_until=None,
                lease_token=None,
                next_attempt_at=now,
                bisect_group=group,
            )
            continue
        if verify and result.status in (InstanceStatus.ACCEPTED, InstanceStatus.OPERATING):
            # Accepted is not done: the target stays running, lease given up, and waits
            # in PostgreSQL (not in a sleeping worker) for its verify look.
            verifying.append(c.target_id)
            writes.add(
                c.target_id,
                dst=None,
                count=("attempts",),
                phase=repo.VERIFY,
                request_id=result.request_id,
                error_code=None,
                error_message=None,
                lease_until=None,
                lease_token=None,
                dispatched_until=None,
                next_attempt_at=now + timedelta(seconds=rt.settings.verify_delay_s),
                verify_started_at=now,
                verify_checks=0,
                bisect_group=None,
                **_notes(result.notes),
            )
            continue
        error = None
        if result.status is InstanceStatus.FAILED:
            error = result.error or NO_REASON
        d = decide(
            error=error,
            # Calls that only told us "one of these" are not this instance's attempts.
            attempts=c.attempts + 1 - c.bisect_calls,
            first_attempt_at=c.first_attempt_at,
            now=now,
            policy=rt.retry_policy,
            rng=random.Random(jitter),
        )
        values: dict[str, Any] = {
            **_notes(result.notes),
            "error_code": d.error_code,
            "error_message": d.error_message,
            "request_id": result.request_id,
            "lease_until": None,
            "lease_token": None,
            "bisect_group": None,
        }
        if d.next_attempt_at is not None:
            values["next_attempt_at"] = d.next_attempt_at
        if d.state.final:
            values["finished_at"] = now
        writes.add(c.target_id, dst=d.state, count=("attempts",), **values)
    if conn is not None and len(writes.groups) == 1:
        writes.flush_at_once(conn, _attempt_values(claims, outcome.calls), now)
    elif writes.groups:
        with transaction(rt.sessions) as session:
            _attempt_rows(session, claims, outcome.calls)
            writes.flush(session, deltas)
            repo.apply_counts(session, deltas, now)
    if untouched:
        _release(rt, untouched)
    return _Recorded(split=bool(splitting), verifying=verifying)


def _notes(notes: Mapping[str, str]) -> dict[str, object]:
    values: dict[str, object] = {"notes": dict(notes)} if notes else {}
    if "previous_key" in notes:
        values["previous_key"] = notes["previous_key"]  # its own column: JD replace
    return values


def verify_targets(rt: Runtime, target_ids: Sequence[int]) -> int:
    """Look up accepted binds (those due in the verify phase) in one provider turn per job;
    returns the number of cloud calls made."""
    now = utcnow()
    token = secrets.token_hex(16)
    with transaction(rt.sessions) as session:
        claims = repo.claim_verify(
            session,
            target_ids,
            now,
            token=token,
            lease_until=now + timedelta(seconds=rt.settings.lease_s),
        )
        jobs = {j: session.get(Job, j) for j in {c.job_id for c in claims}}
    calls = 0
    for job_id, job in jobs.items():  # the dispatcher batches one job's targets; be safe
        assert job is not None  # a target's job cannot vanish while the target exists
        calls += _verify_job(rt, job, [c for c in claims if c.job_id == job_id])
    return calls


def _verify_job(rt: Runtime, job: Job, claims: list[repo.VerifyClaim]) -> int:
    provider = _connect(rt, job)
    if isinstance(provider, CallError):
        _record_verify(rt, claims, _all_failed((c.instance_id for c in claims), provider))
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


def verify_backoff(checks: int, *, first_s: float, max_s: float) -> float:
    """Seconds until the next look after `checks` looks that found the bind still going."""
    return min(max_s, max(first_s, 0.5) * 2 ** max(0, checks - 1))


def _record_verify(rt: Runtime, claims: Sequence[repo.VerifyClaim], outcome: Outcome) -> None:
    now = utcnow()
    s = rt.settings
    deltas = repo.CounterDeltas()
    writes = _Writes(claims[0].job_id, claims[0].lease_token)
    for c in claims:
        result = outcome.results.get(c.instance_id)
        if result is None:
            # Not looked at (no slot): back to waiting for a look, no check counted.
            writes.add(
                c.target_id,
                dst=None,
                in_phase=repo.VERIFY,
                lease_until=None,
                lease_token=None,
                next_attempt_at=now,
            )
            continue
        error = result.error if result.status is InstanceStatus.FAILED else None
        if result.status is InstanceStatus.FAILED and error is None:
            error = NO_REASON
        common: dict[str, Any] = {
            **_notes(result.notes),
            "verify_request_id": result.request_id,
            "lease_until": None,
            "lease_token": None,
        }
        if result.status is InstanceStatus.VERIFIED:
            writes.add(
                c.target_id,
                dst=TargetState.SUCCEEDED,
                error_code=None,
                error_message=None,
                finished_at=now,
                **common,
            )
            continue
        if error is not None and not error.error_class.retryable:
            writes.add(
                c.target_id,
                dst=TargetState.FAILED,
                error_code=error.code,
                error_message=error.message,
                finished_at=now,
                **common,
            )
            continue
        # Still operating, or the look itself failed in a way worth repeating.
        checks = c.verify_checks + 1
        if (now - c.verify_started_at).total_seconds() >= s.verify_budget_s:
            seen = error.message if error else "the operation was still in progress"
            writes.add(
                c.target_id,
                dst=TargetState.FAILED,
                error_code=VERIFY_TIMEOUT,
                error_message=(
                    f"the bind was accepted but not confirmed within {s.verify_budget_s:g} s"
                    f" ({checks} looks; last: {seen})"
                ),
                finished_at=now,
                **common,
            )
            continue
        wait = verify_backoff(checks, first_s=s.verify_delay_s, max_s=s.verify_interval_max_s)
        writes.add(
            c.target_id,
            dst=None,
            in_phase=repo.VERIFY,
            count=("verify_checks",),
            next_attempt_at=now + timedelta(seconds=wait),
            error_code=error.code if error else None,
            error_message=error.message if error else None,
            **common,
        )
    with transaction(rt.sessions) as session:
        _attempt_rows(session, claims, outcome.calls)
        writes.flush(session, deltas)
        repo.apply_counts(session, deltas, now)
