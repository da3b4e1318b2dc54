"""The verify loop every cloud shares: look the instances up a chunk at a time, judge each."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from app.providers.base import (
    CallResult,
    InstanceResult,
    InstanceStatus,
    NoSlot,
    Outcome,
    Pace,
    Slot,
)

View = TypeVar("View")


def verify_by_lookup(
    instance_ids: Sequence[str],
    pace: Pace,
    *,
    action: str,
    chunk_size: int,
    describe: Callable[[list[str], Slot], tuple[CallResult, Mapping[str, View]]],
    judge: Callable[[str, View | None], InstanceResult],
) -> Outcome:
    """One `describe` call (paced as `action`) per `chunk_size` instances; each instance gets
    `judge`'s verdict on what the call showed of it (None: not listed), or the call's error.

    NoSlot propagates only before the first call; after one, the outcome holds what the calls
    so far decided and the rest is handed back untouched."""
    outcome = Outcome()
    ids = list(instance_ids)
    for start in range(0, len(ids), chunk_size):
        chunk = ids[start : start + chunk_size]
        try:
            slot = pace(action)
        except NoSlot:
            if not outcome.calls:
                raise
            return outcome
        call, views = describe(chunk, slot)
        outcome.calls.append(call)
        for iid in chunk:
            if call.error is not None:
                result = InstanceResult(InstanceStatus.FAILED, call.error, call.request_id)
            else:
                verdict = judge(iid, views.get(iid))
                result = InstanceResult(
                    verdict.status, verdict.error, call.request_id, verdict.notes
                )
            outcome.results[iid] = result
    return outcome
