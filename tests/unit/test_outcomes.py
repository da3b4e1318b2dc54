"""From a cloud's answer to each target's change (domain/outcomes.py), table-driven over every
error code of both clouds, without a database."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from app.domain import codes
from app.domain.calls import (
    CallError,
    CallResult,
    ErrorClass,
    InstanceResult,
    InstanceStatus,
    Outcome,
)
from app.domain.claims import Claim, LookClaim
from app.domain.outcomes import (
    POWER_STATE_HINT,
    BindChange,
    Cloud,
    Confirmed,
    Disproved,
    Fail,
    LookAgain,
    LookLost,
    Release,
    Retry,
    Split,
    Succeed,
    Unlooked,
    Verify,
    WorkerLost,
    after_bind,
    after_look,
    after_lost_call,
    after_lost_look,
)
from app.domain.retry import RetryPolicy, VerifyPolicy
from app.domain.states import TARGET_MOVES, TargetState
from app.providers.jdcloud import errors as jd_errors
from app.providers.jdcloud.provider import SPEC as JD
from app.providers.tencent import errors as tc_errors
from app.providers.tencent.provider import SPEC as TENCENT

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
POLICY = RetryPolicy(max_attempts=4, budget_s=100, base_s=1, max_s=8)
VERIFY = VerifyPolicy(delay_s=1, interval_max_s=10, budget_s=60)
CLOUDS = {
    "tencent": (Cloud(True, TENCENT.names_an_instance), tc_errors.TABLE, tc_errors.classify),
    "jdcloud": (
        Cloud(True, JD.names_an_instance),
        jd_errors.TABLE,
        lambda code: jd_errors.classify(code),
    ),
}
EVERY_CODE = [(cloud, code) for cloud, (_, table, _) in CLOUDS.items() for code in table]
AFTER_ONE_FAILED_CALL: dict[ErrorClass, type[BindChange]] = {
    ErrorClass.RETRY: Retry,
    ErrorClass.WAIT_STATE: Retry,
    ErrorClass.POWER_STATE: Fail,
    ErrorClass.TERMINAL: Fail,
}


def claim(
    n: int, *, attempts: int = 0, bisect_calls: int = 0, prior: TargetState = TargetState.PENDING
) -> Claim:
    return Claim(
        target_id=n,
        job_id="job",
        instance_id=f"ins-{n:08d}",
        prior_state=prior,
        attempts=attempts,
        first_attempt_at=NOW,
        lease_token="lease",
        bisect_calls=bisect_calls,
    )


def failed_call(claims: list[Claim], error: CallError) -> Outcome:
    call = CallResult(
        "Bind", "req-1", 5.0, 200, error, instance_ids=tuple(c.instance_id for c in claims)
    )
    return Outcome.from_call(call, InstanceStatus.ACCEPTED)


def decide(
    claims: list[Claim], outcome: Outcome, cloud: Cloud, *, groups: Callable[[], str] | None = None
) -> dict[int, BindChange]:
    counter = itertools.count()
    return after_bind(
        claims,
        outcome,
        cloud=cloud,
        now=NOW,
        policy=POLICY,
        verify=VERIFY,
        jitter=0.5,
        new_group=groups or (lambda: f"g{next(counter)}"),
    )


@pytest.mark.parametrize(("cloud", "code"), EVERY_CODE)
def test_every_code_of_both_clouds_after_one_failed_call(cloud: str, code: str) -> None:
    facts, _, classify = CLOUDS[cloud]
    error = CallError(code, f"{code} happened", classify(code))
    c = claim(1)
    (change,) = decide([c], failed_call([c], error), facts).values()
    assert type(change) is AFTER_ONE_FAILED_CALL[error.error_class]
    assert change.move in TARGET_MOVES
    assert isinstance(change, Retry | Fail)
    assert change.code == code and change.request_id == "req-1"
    if isinstance(change, Retry):
        cap = POLICY.base_s * (
            POLICY.wait_state_factor if error.error_class is ErrorClass.WAIT_STATE else 1
        )
        assert NOW <= change.at <= NOW + timedelta(seconds=cap)
    if error.error_class is ErrorClass.POWER_STATE:
        assert change.message.endswith(POWER_STATE_HINT)


@pytest.mark.parametrize(("cloud", "code"), EVERY_CODE)
def test_a_retryable_code_gives_up_at_the_last_attempt(cloud: str, code: str) -> None:
    facts, _, classify = CLOUDS[cloud]
    error = CallError(code, "busy", classify(code))
    c = claim(1, attempts=POLICY.max_attempts - 1)
    (change,) = decide([c], failed_call([c], error), facts).values()
    assert isinstance(change, Fail) and change.code == code
    if error.error_class.retryable:
        assert change.message == f"gave up after {POLICY.max_attempts} attempts: busy"


def test_calls_that_only_said_one_of_these_do_not_count_towards_giving_up() -> None:
    error = CallError("MutexOperation.TaskRunning", "busy", ErrorClass.RETRY)
    c = claim(1, attempts=POLICY.max_attempts - 1, bisect_calls=2)
    (change,) = decide([c], failed_call([c], error), CLOUDS["tencent"][0]).values()
    assert isinstance(change, Retry)


def test_the_time_budget_ends_retries() -> None:
    error = CallError("InternalError", "oops", ErrorClass.RETRY)
    c = Claim(1, "job", "ins-1", TargetState.RETRYING, 1, NOW - timedelta(seconds=100), "lease")
    (change,) = decide([c], failed_call([c], error), CLOUDS["tencent"][0]).values()
    assert isinstance(change, Fail)


@pytest.mark.parametrize("status", [InstanceStatus.ACCEPTED, InstanceStatus.OPERATING])
def test_an_accepted_bind_waits_for_its_look(status: InstanceStatus) -> None:
    c = claim(1)
    result = InstanceResult(status, None, "req-9", {"previous_key": "old"})
    (change,) = decide([c], Outcome([], {c.instance_id: result}), CLOUDS["jdcloud"][0]).values()
    at = NOW + timedelta(seconds=VERIFY.delay_s)
    assert change == Verify("req-9", {"previous_key": "old"}, look_at=at)


def test_without_a_verify_phase_an_accepted_bind_is_done() -> None:
    c = claim(1)
    result = InstanceResult(InstanceStatus.ACCEPTED, None, "req-9")
    (change,) = decide(
        [c], Outcome([], {c.instance_id: result}), Cloud(False, lambda _: False)
    ).values()
    assert change == Succeed("req-9")


def test_a_failure_without_a_reason_is_retried() -> None:
    c = claim(1)
    result = InstanceResult(InstanceStatus.FAILED, None, "req-9")
    (change,) = decide([c], Outcome([], {c.instance_id: result}), CLOUDS["tencent"][0]).values()
    assert isinstance(change, Retry) and change.code == codes.NO_REASON


@pytest.mark.parametrize("prior", [TargetState.PENDING, TargetState.RETRYING])
def test_a_target_the_call_did_not_cover_goes_back_as_it_was(prior: TargetState) -> None:
    c = claim(1, prior=prior)
    assert decide([c], Outcome(), CLOUDS["tencent"][0]) == {1: Release(prior)}


@pytest.mark.parametrize(
    ("cloud", "code"),
    [(cloud, code) for cloud, code in EVERY_CODE if cloud == "tencent"],
)
def test_a_call_of_many_splits_exactly_when_one_instance_may_be_at_fault(
    cloud: str, code: str
) -> None:
    facts, _, classify = CLOUDS[cloud]
    claims = [claim(n) for n in range(1, 6)]
    changes = decide(claims, failed_call(claims, CallError(code, "no", classify(code))), facts)
    if TENCENT.names_an_instance(code):
        assert all(isinstance(c, Split) for c in changes.values())
        groups = [c.group for c in changes.values() if isinstance(c, Split)]
        assert groups == ["g0", "g0", "g1", "g1", "g1"]  # halves: the smaller first
    else:
        assert not any(isinstance(c, Split) for c in changes.values())


def test_a_call_of_one_is_never_split() -> None:
    c = claim(1)
    error = CallError("InvalidInstanceId.NotFound", "no", ErrorClass.TERMINAL)
    (change,) = decide([c], failed_call([c], error), CLOUDS["tencent"][0]).values()
    assert isinstance(change, Fail)


@pytest.mark.parametrize("code", list(jd_errors.TABLE))
def test_jd_answers_per_instance_so_its_calls_never_split(code: str) -> None:
    claims = [claim(n) for n in range(1, 4)]
    error = CallError(code, "no", jd_errors.classify(code))
    changes = decide(claims, failed_call(claims, error), CLOUDS["jdcloud"][0])
    assert not any(isinstance(c, Split) for c in changes.values())


def look(n: int = 1, *, checks: int = 0, started: datetime = NOW) -> LookClaim:
    return LookClaim(n, "job", f"ins-{n:08d}", "req-bind", started, checks, "lease")


def decide_look(c: LookClaim, result: InstanceResult | None) -> object:
    outcome = Outcome([], {} if result is None else {c.instance_id: result})
    (change,) = after_look([c], outcome, now=NOW, verify=VERIFY).values()
    assert change.move.src in {m.src for m in TARGET_MOVES}
    return change


def test_a_look_that_finds_the_key_confirms_the_bind() -> None:
    result = InstanceResult(InstanceStatus.VERIFIED, None, "req-look")
    assert decide_look(look(), result) == Confirmed("req-look")


def test_a_bind_still_under_way_is_looked_at_again_later_and_later() -> None:
    result = InstanceResult(InstanceStatus.OPERATING, None, "req-look")
    waits = []
    for checks in range(6):
        change = decide_look(look(checks=checks), result)
        assert isinstance(change, LookAgain) and change.error is None
        waits.append((change.at - NOW).total_seconds())
    assert waits == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


@pytest.mark.parametrize(("cloud", "code"), EVERY_CODE)
def test_every_code_a_look_can_end_with(cloud: str, code: str) -> None:
    _, _, classify = CLOUDS[cloud]
    error = CallError(code, "seen", classify(code))
    change = decide_look(look(), InstanceResult(InstanceStatus.FAILED, error, "req-look"))
    if error.error_class.retryable:
        assert change == LookAgain("req-look", at=NOW + timedelta(seconds=1), error=error)
    else:
        assert change == Disproved(code, "seen", "req-look")


def test_a_bind_not_confirmed_within_the_budget_fails_with_verify_timeout() -> None:
    started = NOW - timedelta(seconds=VERIFY.budget_s)
    result = InstanceResult(InstanceStatus.OPERATING, None, "req-look")
    change = decide_look(look(checks=7, started=started), result)
    assert isinstance(change, Disproved) and change.code == codes.VERIFY_TIMEOUT
    assert "8 looks" in change.message


def test_an_instance_not_looked_at_waits_for_its_next_look() -> None:
    assert decide_look(look(), None) == Unlooked()


@pytest.mark.parametrize(
    ("attempts", "error_code", "change"),
    [
        (0, None, WorkerLost(False, codes.WORKER_LOST, NOW)),
        (2, "MutexOperation.TaskRunning", WorkerLost(False, "MutexOperation.TaskRunning", NOW)),
        (POLICY.max_attempts - 1, "X", WorkerLost(True, codes.WORKER_LOST, NOW)),
    ],
)
def test_a_bind_whose_worker_died(
    attempts: int, error_code: str | None, change: WorkerLost
) -> None:
    got = after_lost_call(
        attempts=attempts, error_code=error_code, max_attempts=POLICY.max_attempts, now=NOW
    )
    assert got == change and got.move in TARGET_MOVES


def test_a_look_whose_worker_died() -> None:
    fresh = after_lost_look(verify_started_at=NOW, now=NOW, verify=VERIFY)
    spent = after_lost_look(
        verify_started_at=NOW - timedelta(seconds=VERIFY.budget_s), now=NOW, verify=VERIFY
    )
    assert fresh == LookLost(False, NOW) and spent == LookLost(True, NOW)
    assert spent.move in TARGET_MOVES
