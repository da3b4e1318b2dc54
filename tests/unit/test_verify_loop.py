"""The verify loop both providers share: chunks, pacing, NoSlot and a failed look (no I/O)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from app.providers.base import (
    CallError,
    CallResult,
    ErrorClass,
    InstanceResult,
    InstanceStatus,
    NoSlot,
    Outcome,
    Slot,
)
from app.providers.verify import verify_by_lookup

DESCRIBE = "DescribeInstances"
BROKEN = CallError("InternalError", "boom", ErrorClass.RETRY)


class Granted:
    def sending(self) -> None: ...

    def sent(self) -> None: ...


class Pace:
    """Grants `n` slots, then raises NoSlot; records the actions asked for."""

    def __init__(self, n: int = 1000) -> None:
        self.left = n
        self.asked: list[str] = []

    def __call__(self, action: str) -> Slot:
        self.asked.append(action)
        if self.left <= 0:
            raise NoSlot(action)
        self.left -= 1
        return Granted()


class Cloud:
    """Describes chunks: lists every instance but `missing`; the calls in `failing` fail."""

    def __init__(
        self, *, missing: frozenset[str] = frozenset(), failing: frozenset[int] = frozenset()
    ):
        self.missing, self.failing = missing, failing
        self.chunks: list[list[str]] = []

    def describe(self, chunk: list[str], slot: Slot) -> tuple[CallResult, Mapping[str, str]]:
        n = len(self.chunks)
        self.chunks.append(chunk)
        error = BROKEN if n in self.failing else None
        call = CallResult(DESCRIBE, f"req-{n}", 1.0, 200, error, instance_ids=tuple(chunk))
        return call, {i: "shown" for i in chunk if i not in self.missing}


def judge(iid: str, view: str | None) -> InstanceResult:
    if view is None:
        return InstanceResult(InstanceStatus.OPERATING)
    return InstanceResult(InstanceStatus.VERIFIED, notes={"seen": iid})


def run(ids: list[str], pace: Pace, cloud: Cloud, chunk_size: int = 2) -> Outcome:
    return verify_by_lookup(
        ids, pace, action=DESCRIBE, chunk_size=chunk_size, describe=cloud.describe, judge=judge
    )


IDS = [f"ins-{n:08d}" for n in range(5)]


def test_one_paced_call_per_chunk_and_a_verdict_per_instance() -> None:
    pace, cloud = Pace(), Cloud(missing=frozenset({IDS[1]}))
    out = run(IDS, pace, cloud)
    assert cloud.chunks == [IDS[0:2], IDS[2:4], IDS[4:5]]
    assert pace.asked == [DESCRIBE] * 3 and len(out.calls) == 3
    assert out.results[IDS[0]] == InstanceResult(
        InstanceStatus.VERIFIED, None, "req-0", {"seen": IDS[0]}
    )
    assert out.results[IDS[1]] == InstanceResult(InstanceStatus.OPERATING, None, "req-0")
    assert out.results[IDS[4]].request_id == "req-2"


def test_a_failed_look_fails_its_chunk_with_the_calls_error() -> None:
    out = run(IDS, Pace(), Cloud(failing=frozenset({1})))
    assert [out.results[i].status for i in IDS] == [
        InstanceStatus.VERIFIED,
        InstanceStatus.VERIFIED,
        InstanceStatus.FAILED,
        InstanceStatus.FAILED,
        InstanceStatus.VERIFIED,
    ]
    assert out.results[IDS[2]] == InstanceResult(InstanceStatus.FAILED, BROKEN, "req-1")


def test_no_slot_before_any_call_propagates() -> None:
    cloud = Cloud()
    with pytest.raises(NoSlot):
        run(IDS, Pace(0), cloud)
    assert cloud.chunks == []


def test_no_slot_after_a_call_returns_what_is_known() -> None:
    out = run(IDS, Pace(1), Cloud())
    assert len(out.calls) == 1 and set(out.results) == set(IDS[:2])
