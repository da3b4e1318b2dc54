"""How a DescribeInstances view decides an accepted bind (pure, no I/O)."""

from __future__ import annotations

import pytest

from app.domain.retry import VerifyPolicy
from app.providers.base import ErrorClass, InstanceStatus
from app.providers.tencent.client import InstanceView
from app.providers.tencent.provider import judge

KEY = "skey-3glfot13"
REQ = "req-bind-1"


def view(
    *, keys: tuple[str, ...] = (), state: str | None = "SUCCESS", req: str | None = REQ
) -> InstanceView:
    return InstanceView(
        instance_id="ins-r8hr2upy",
        state="STOPPED",
        os_name="TencentOS",
        key_ids=keys,
        latest_operation="AssociateInstancesKeyPairs",
        latest_operation_state=state,
        latest_operation_request_id=req,
        latest_operation_error="disk full" if state == "FAILED" else None,
        tags={},
    )


@pytest.mark.parametrize(
    ("v", "status", "code"),
    [
        (view(keys=(KEY,)), InstanceStatus.VERIFIED, None),
        (view(state="OPERATING"), InstanceStatus.OPERATING, None),
        # Keys may show before the operation ends; our own record still says "not yet".
        (view(keys=(KEY,), state="OPERATING"), InstanceStatus.OPERATING, None),
        (view(state="FAILED"), InstanceStatus.FAILED, "keybind.OperationFailed"),
        (view(keys=("skey-other001",)), InstanceStatus.FAILED, "keybind.KeyNotBound"),
        # A later operation replaced our record: the keys alone decide.
        (view(keys=(KEY,), req="req-later"), InstanceStatus.VERIFIED, None),
        (view(keys=(), req="req-later"), InstanceStatus.OPERATING, None),
        (None, InstanceStatus.FAILED, "keybind.VerifyNotFound"),
    ],
)
def test_verdicts(v: InstanceView | None, status: InstanceStatus, code: str | None) -> None:
    result = judge(v, (KEY,), REQ)
    assert result.status is status
    assert (result.error.code if result.error else None) == code
    if result.error is not None:
        assert result.error.error_class is ErrorClass.TERMINAL


def test_a_failed_operation_keeps_the_clouds_message() -> None:
    result = judge(view(state="FAILED"), (KEY,), REQ)
    assert result.error is not None and "disk full" in result.error.message


def test_every_key_of_the_job_must_be_bound() -> None:
    assert judge(view(keys=(KEY,)), (KEY, "skey-second01"), REQ).status is InstanceStatus.FAILED


def test_verify_looks_back_off_to_a_cap() -> None:
    policy = VerifyPolicy(delay_s=1.0, interval_max_s=10.0)
    waits = [policy.backoff(n) for n in range(1, 8)]
    assert waits == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
