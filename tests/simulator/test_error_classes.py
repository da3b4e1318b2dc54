"""Every code in the classification table, answered by the simulator, reaches the worker's
decision with its class: retry soon, wait for the state to settle, power policy, terminal."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from app.domain.outcomes import after_call
from app.domain.retry import RetryPolicy
from app.domain.states import TargetState
from app.providers.base import BindRequest, ErrorClass, InstanceStatus, Outcome
from app.providers.tencent.client import TencentClient
from app.providers.tencent.errors import TABLE
from app.providers.tencent.provider import TencentProvider
from tests.support.simulator import SECRET_ID, SECRET_KEY, Simulator, free_port, start_simulator

REGION = "ap-guangzhou"
KEY = "skey-3glfot13"
CLOUD_CODES = sorted(c for c in TABLE if not c.startswith("keybind."))
# What the worker does with each class after a first call.
NEXT_STATE = {
    ErrorClass.RETRY: TargetState.RETRYING,
    ErrorClass.WAIT_STATE: TargetState.RETRYING,
    ErrorClass.POWER_STATE: TargetState.FAILED,
    ErrorClass.TERMINAL: TargetState.FAILED,
}


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    s = start_simulator(rate_limit=1000)
    yield s
    s.stop()


def provider(url: str, timeout_s: float = 5.0) -> TencentProvider:
    return TencentProvider(
        TencentClient(endpoint=url, secret_id=SECRET_ID, secret_key=SECRET_KEY, timeout_s=timeout_s)
    )


def no_wait(_: str) -> None:
    return None


def bind_one(p: TencentProvider, iid: str, force_stop: bool = False) -> Outcome:
    return p.bind(BindRequest(REGION, (iid,), (KEY,), force_stop), no_wait)


def next_state(outcome: Outcome, iid: str) -> TargetState:
    result = outcome.results[iid]
    now = datetime.now(UTC)
    error = result.error if result.status is InstanceStatus.FAILED else None
    change = after_call(
        error, attempts=1, first_attempt_at=now, now=now, policy=RetryPolicy(), rng=random.Random(1)
    )
    return change.move.dst.state


@pytest.mark.parametrize("code", CLOUD_CODES)
def test_each_cloud_code_is_classified_as_the_table_says(sim: Simulator, code: str) -> None:
    iid = f"ins-c{CLOUD_CODES.index(code):07d}"
    sim.put_instances([{"id": iid, "faults": [{"code": code, "times": 1}]}])
    p = provider(sim.url)
    outcome = bind_one(p, iid)
    error = outcome.results[iid].error
    assert error is not None and error.code == code
    assert error.error_class is TABLE[code][0]
    assert outcome.results[iid].request_id  # a business error still has a RequestId
    assert next_state(outcome, iid) is NEXT_STATE[TABLE[code][0]]
    # The scripted fault is spent: the same instance now binds.
    assert bind_one(p, iid).results[iid].status is InstanceStatus.ACCEPTED


def test_an_unknown_code_is_terminal_and_shown_as_it_came(sim: Simulator) -> None:
    sim.put_instances([{"id": "ins-unknown9", "faults": [{"code": "Brand.NewCode", "times": 1}]}])
    outcome = bind_one(provider(sim.url), "ins-unknown9")
    error = outcome.results["ins-unknown9"].error
    assert error is not None and error.code == "Brand.NewCode"
    assert error.error_class is ErrorClass.TERMINAL


@pytest.mark.parametrize(
    ("state", "error_class"),
    [
        ("STARTING", ErrorClass.WAIT_STATE),
        ("STOPPING", ErrorClass.WAIT_STATE),
        ("PENDING", ErrorClass.WAIT_STATE),
        ("REBOOTING", ErrorClass.WAIT_STATE),
        ("EXIT_RESCUE_MODE", ErrorClass.WAIT_STATE),
        ("ENTER_SERVICE_LIVE_MIGRATE", ErrorClass.WAIT_STATE),
        ("RUNNING", ErrorClass.POWER_STATE),
        ("SHUTDOWN", ErrorClass.TERMINAL),
        ("TERMINATING", ErrorClass.TERMINAL),
        ("ISOLATING", ErrorClass.TERMINAL),
        ("FREEZING", ErrorClass.TERMINAL),
        ("RESCUE_MODE", ErrorClass.TERMINAL),
    ],
)
def test_instance_states_answer_their_documented_code(
    sim: Simulator, state: str, error_class: ErrorClass
) -> None:
    iid = "ins-s" + state.replace("_", "").lower()[:7].ljust(7, "0")
    sim.put_instances([{"id": iid, "state": state, "settles_after_s": 600}])
    outcome = bind_one(provider(sim.url), iid)
    error = outcome.results[iid].error
    assert error is not None and error.error_class is error_class, error
    camel = "".join(w.capitalize() for w in state.split("_"))
    assert error.code == f"UnsupportedOperation.InstanceState{camel}"


def test_transport_failures_are_retried(sim: Simulator) -> None:
    sim.configure(timeout_fault_s=2.0)
    try:
        sim.set_faults(1.0, ["http5xx"])
        outcome = bind_one(provider(sim.url), "ins-http5xx1")
        error = outcome.results["ins-http5xx1"].error
        assert error is not None and error.code == "keybind.HttpStatus"
        assert error.error_class is ErrorClass.RETRY
        sim.set_faults(1.0, ["timeout"])
        outcome = bind_one(provider(sim.url, timeout_s=0.3), "ins-timeout1")
        error = outcome.results["ins-timeout1"].error
        assert error is not None and error.code == "keybind.Timeout"
        assert error.error_class is ErrorClass.RETRY
    finally:
        sim.set_faults(0.0, [])
    outcome = bind_one(provider(f"http://127.0.0.1:{free_port()}"), "ins-noconn01")
    error = outcome.results["ins-noconn01"].error
    assert error is not None and error.code == "keybind.ConnectionError"
    assert next_state(outcome, "ins-noconn01") is TargetState.RETRYING
