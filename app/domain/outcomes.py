"""From what the cloud answered to what happens to each target. Pure: no I/O.

A worker claims targets, a provider calls the cloud and returns an `Outcome`; the functions
here turn it into one change per target (succeed, verify later, retry at T, split, fail with
a code, or hand back uncalled). The store writes the changes (store/target_writes.py); each
change names the move it makes, and that move must be in states.TARGET_MOVES.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType

from app.domain import batching, codes
from app.domain.calls import CallError, ErrorClass, InstanceStatus, Outcome
from app.domain.claims import Claim, LookClaim
from app.domain.retry import RetryPolicy, VerifyPolicy
from app.domain.states import At, Move, Phase, TargetState, check_target_move

_NONE: Mapping[str, str] = MappingProxyType({})
_RUNNING = At(TargetState.RUNNING, Phase.BIND)
_LOOKING = At(TargetState.RUNNING, Phase.VERIFY)

NO_REASON = CallError(codes.NO_REASON, "the provider gave no reason", ErrorClass.RETRY)
POWER_STATE_HINT = (
    " (the job's power policy is 'refuse': stop the instance first, or submit with"
    " force_stop=true to let the cloud stop, bind and restart it)"
)


# -- what may happen to a target after its bind call ---------------------------------------


@dataclass(frozen=True, slots=True)
class _Answered:
    """The call or look that decided, and what the provider noted about the instance."""

    request_id: str | None
    notes: Mapping[str, str] = field(default_factory=lambda: _NONE)


@dataclass(frozen=True, slots=True)
class _Failure:
    code: str
    message: str
    request_id: str | None
    notes: Mapping[str, str] = field(default_factory=lambda: _NONE)


@dataclass(frozen=True, slots=True)
class Release:
    """No call was made for it (no limiter slot): back as it was, no attempt counted."""

    to: TargetState

    @property
    def move(self) -> Move:
        return Move(_RUNNING, At(self.to, Phase.BIND))


@dataclass(frozen=True, slots=True)
class Split:
    """Its call failed as a whole for a reason one of its instances may have caused: retried at
    once in half `group`. The call counts as an attempt, but not towards giving up."""

    group: str
    code: str
    message: str
    request_id: str | None
    move = Move(_RUNNING, At(TargetState.RETRYING, Phase.BIND))


@dataclass(frozen=True, slots=True)
class Verify(_Answered):
    """The cloud accepted the bind: wait (in the database, not in a worker) for a look at
    `look_at`."""

    look_at: datetime = field(kw_only=True)
    move = Move(_RUNNING, _LOOKING)


@dataclass(frozen=True, slots=True)
class Succeed(_Answered):
    """The bind call's answer is final: done (a cloud without a verify phase)."""

    move = Move(_RUNNING, At(TargetState.SUCCEEDED, Phase.BIND))


@dataclass(frozen=True, slots=True)
class Retry(_Failure):
    """Call again at `at`, after a failure worth repeating."""

    at: datetime = field(kw_only=True)
    move = Move(_RUNNING, At(TargetState.RETRYING, Phase.BIND))


@dataclass(frozen=True, slots=True)
class Fail(_Failure):
    """Done, failed: retrying cannot help, or it is out of attempts or time."""

    move = Move(_RUNNING, At(TargetState.FAILED, Phase.BIND))


@dataclass(frozen=True, slots=True)
class WorkerLost:
    """Its worker stopped mid-call (the lease ran out). The call may have reached the cloud,
    so it counts as an attempt; a target that keeps killing workers ends failed."""

    give_up: bool
    code: str
    at: datetime
    message: str = "the worker holding this target stopped before recording a result"

    @property
    def move(self) -> Move:
        dst = TargetState.FAILED if self.give_up else TargetState.RETRYING
        return Move(_RUNNING, At(dst, Phase.BIND))


BindChange = Release | Split | Verify | Succeed | Retry | Fail | WorkerLost


# -- what may happen to a target after a look at its accepted bind -------------------------


@dataclass(frozen=True, slots=True)
class Unlooked:
    """No look was made (no limiter slot): it waits for its next look, no look counted."""

    move = Move(_LOOKING, _LOOKING)


@dataclass(frozen=True, slots=True)
class Confirmed(_Answered):
    """The look found the key on the instance."""

    move = Move(_LOOKING, At(TargetState.SUCCEEDED, Phase.VERIFY))


@dataclass(frozen=True, slots=True)
class LookAgain(_Answered):
    """Still under way (or the look itself failed in a way worth repeating, `error`): look
    again at `at`."""

    at: datetime = field(kw_only=True)
    error: CallError | None = field(default=None, kw_only=True)
    move = Move(_LOOKING, _LOOKING)


@dataclass(frozen=True, slots=True)
class Disproved(_Failure):
    """The look found the bind failed, or it was not confirmed in time."""

    move = Move(_LOOKING, At(TargetState.FAILED, Phase.VERIFY))


@dataclass(frozen=True, slots=True)
class LookLost:
    """The worker looking at it stopped. A look changes nothing at the cloud: it waits for its
    next look (counted as one), unless its verify budget is spent."""

    give_up: bool
    at: datetime
    message: str = "the bind was accepted but the workers verifying it kept stopping"

    @property
    def move(self) -> Move:
        return Move(_LOOKING, At(TargetState.FAILED, Phase.VERIFY) if self.give_up else _LOOKING)


LookChange = Unlooked | Confirmed | LookAgain | Disproved | LookLost
Change = BindChange | LookChange


# -- the decisions ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cloud:
    """What the decisions need to know of the cloud the outcome came from."""

    verifies: bool  # an accepted bind is confirmed by a look (else the answer is final)
    # True when a call-level error code can be one instance's fault (all-or-nothing clouds).
    names_an_instance: Callable[[str], bool]


def after_call(
    error: CallError | None,
    *,
    attempts: int,
    first_attempt_at: datetime,
    now: datetime,
    policy: RetryPolicy,
    rng: random.Random,
    request_id: str | None = None,
    notes: Mapping[str, str] = _NONE,
) -> Succeed | Retry | Fail:
    """A target's change after its `attempts`-th call ended with `error` (None: done)."""
    if error is None:
        return Succeed(request_id, notes)
    if error.error_class is ErrorClass.POWER_STATE:
        return Fail(error.code, error.message + POWER_STATE_HINT, request_id, notes)
    if not error.error_class.retryable:
        return Fail(error.code, error.message, request_id, notes)
    wait = policy.delay(attempts, error.error_class, rng)
    out_of_budget = (now - first_attempt_at).total_seconds() + wait > policy.budget_s
    if attempts >= policy.max_attempts or out_of_budget:
        why = f"gave up after {attempts} attempts: {error.message}"
        return Fail(error.code, why, request_id, notes)
    at = now + timedelta(seconds=wait)
    return Retry(error.code, error.message, request_id, notes, at=at)


def _splits(
    claims: Sequence[Claim], outcome: Outcome, cloud: Cloud, new_group: Callable[[], str]
) -> dict[str, Split]:
    """Instances whose call failed as a whole for a reason one of them may have caused."""
    out: dict[str, Split] = {}
    for call in outcome.calls:
        if call.error is None:
            continue
        covered = set(call.instance_ids)
        mine = [c for c in claims if c.instance_id in covered]
        names = cloud.names_an_instance(call.error.code)
        if not batching.splits(call.error.code, len(mine), names):
            continue
        message = (
            f"a call with {len(mine)} instances failed with {call.error.code}"
            f" ({call.error.message}); retrying in halves to find the instance"
        )
        for half in batching.halves(mine):
            group = new_group()
            for c in half:
                out[c.instance_id] = Split(group, call.error.code, message, call.request_id)
    return out


def after_bind(
    claims: Sequence[Claim],
    outcome: Outcome,
    *,
    cloud: Cloud,
    now: datetime,
    policy: RetryPolicy,
    verify: VerifyPolicy,
    jitter: float,
    new_group: Callable[[], str] = batching.new_group,
) -> dict[int, BindChange]:
    """Each claimed target's change after one bind turn, by target id. `jitter` seeds the
    backoff: one draw per turn, so instances that failed together retry together."""
    splitting = _splits(claims, outcome, cloud, new_group)
    changes: dict[int, BindChange] = {}
    for c in claims:
        result = outcome.results.get(c.instance_id)
        change: BindChange
        if result is None:
            change = Release(c.prior_state)
        elif c.instance_id in splitting:
            change = splitting[c.instance_id]
        elif cloud.verifies and result.status in (
            InstanceStatus.ACCEPTED,
            InstanceStatus.OPERATING,
        ):
            look_at = now + timedelta(seconds=verify.delay_s)
            change = Verify(result.request_id, result.notes, look_at=look_at)
        else:
            error = None
            if result.status is InstanceStatus.FAILED:
                error = result.error or NO_REASON
            change = after_call(
                error,
                # Calls that only told us "one of these" are not this instance's attempts.
                attempts=c.attempts + 1 - c.bisect_calls,
                first_attempt_at=c.first_attempt_at,
                now=now,
                policy=policy,
                rng=random.Random(jitter),
                request_id=result.request_id,
                notes=result.notes,
            )
        check_target_move(change.move)
        changes[c.target_id] = change
    return changes


def after_look(
    claims: Sequence[LookClaim], outcome: Outcome, *, now: datetime, verify: VerifyPolicy
) -> dict[int, LookChange]:
    """Each looked-at target's change after one verify turn, by target id."""
    changes: dict[int, LookChange] = {}
    for c in claims:
        result = outcome.results.get(c.instance_id)
        change: LookChange
        if result is None:
            change = Unlooked()
        elif result.status is InstanceStatus.VERIFIED:
            change = Confirmed(result.request_id, result.notes)
        else:
            error = result.error if result.status is InstanceStatus.FAILED else None
            if result.status is InstanceStatus.FAILED and error is None:
                error = NO_REASON
            checks = c.verify_checks + 1
            if error is not None and not error.error_class.retryable:
                change = Disproved(error.code, error.message, result.request_id, result.notes)
            elif (now - c.verify_started_at).total_seconds() >= verify.budget_s:
                seen = error.message if error else "the operation was still in progress"
                message = (
                    f"the bind was accepted but not confirmed within {verify.budget_s:g} s"
                    f" ({checks} looks; last: {seen})"
                )
                change = Disproved(codes.VERIFY_TIMEOUT, message, result.request_id, result.notes)
            else:
                at = now + timedelta(seconds=verify.backoff(checks))
                change = LookAgain(result.request_id, result.notes, at=at, error=error)
        check_target_move(change.move)
        changes[c.target_id] = change
    return changes


def after_lost_call(
    *, attempts: int, error_code: str | None, max_attempts: int, now: datetime
) -> WorkerLost:
    """A bind whose worker stopped: `attempts` counts calls before this one."""
    give_up = attempts + 1 >= max_attempts
    # A retry keeps the code of the call before (what it is retrying for), if it had one.
    code = codes.WORKER_LOST if give_up else (error_code or codes.WORKER_LOST)
    return WorkerLost(give_up, code, now)


def after_lost_look(
    *, verify_started_at: datetime | None, now: datetime, verify: VerifyPolicy
) -> LookLost:
    started = verify_started_at or now
    return LookLost((now - started).total_seconds() >= verify.budget_s, now)
