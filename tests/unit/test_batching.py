"""Coalesced calls: how due targets become calls and which failures split a call. Pure."""

from __future__ import annotations

from app.domain.batching import Due, halves, plan_calls, splits
from app.providers.tencent.errors import names_an_instance


def test_loose_targets_fill_calls_in_order_and_halves_go_alone() -> None:
    due = [Due(1, None), Due(2, "a"), Due(3, None), Due(4, "a"), Due(5, "b"), Due(6, None)]
    calls = plan_calls(due, batch_size=2)
    assert sorted(calls) == sorted([[2, 4], [5], [1, 3], [6]])


def test_batch_size_one_is_one_call_per_target() -> None:
    assert plan_calls([Due(i, None) for i in range(3)], 1) == [[0], [1], [2]]


def test_halves_cover_everything_once_smaller_half_first() -> None:
    assert halves([1, 2, 3, 4, 5]) == ([1, 2], [3, 4, 5])
    assert halves(list(range(100))) == (list(range(50)), list(range(50, 100)))
    assert halves([7]) == ([], [7])


def test_only_an_instance_code_in_a_call_of_several_splits() -> None:
    assert splits("InvalidInstanceId.NotFound", 2, names_an_instance("InvalidInstanceId.NotFound"))
    assert not splits("InvalidInstanceId.NotFound", 1, True)  # alone: its own answer
    assert not splits("RequestLimitExceeded", 100, names_an_instance("RequestLimitExceeded"))
    assert not splits(None, 100, True)


def test_tencent_codes_that_one_instance_can_cause() -> None:
    for code in (
        "InvalidInstanceId.NotFound",
        "InvalidInstanceId.Malformed",
        "UnsupportedOperation.InstanceOsWindows",
        "UnsupportedOperation.InstanceStateRunning",
        "UnsupportedOperation.InstanceStateStopping",
        "MutexOperation.TaskRunning",
        "OperationDenied.InstanceOperationInProgress",
    ):
        assert names_an_instance(code), code
    for code in (
        "RequestLimitExceeded",
        "AuthFailure.SignatureFailure",
        "InternalError",
        "InvalidKeyPairId.NotFound",
        "keybind.Timeout",
        "keybind.HttpStatus",
    ):
        assert not names_an_instance(code), code
