"""Coalesced calls: which due targets go out together, and how a failed call is split. Pure.

A job's `batch_size` (1..100) is how many of its targets one bind call carries. Clouds that
answer all-or-nothing (Tencent) fail the whole call when one instance is bad, so such a call
is split in two halves, each retried at once as its own call; halves that fail again split
again, until the bad instance stands alone and fails with its own code while every other
instance succeeds in some half. The halves are persisted (`targets.bisect_group`), not held
in a worker: a worker that dies mid-bisection loses nothing, and no worker slot waits.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Due:
    """A target the dispatcher may release, in release order."""

    target_id: int
    bisect_group: str | None


def plan_calls(due: Sequence[Due], batch_size: int) -> list[list[int]]:
    """The calls that carry `due`: a bisection half goes out alone, as one call (even if only
    part of it is due now); everything else fills calls of up to `batch_size`, in order."""
    calls: list[list[int]] = []
    halves: dict[str, list[int]] = {}
    loose: list[int] = []
    for d in due:
        if d.bisect_group is None:
            loose.append(d.target_id)
        else:
            halves.setdefault(d.bisect_group, []).append(d.target_id)
    calls += halves.values()
    calls += [loose[i : i + batch_size] for i in range(0, len(loose), batch_size)]
    return calls


def halves(items: Sequence[T]) -> tuple[list[T], list[T]]:
    """Split in two: the first half is the smaller one when the count is odd."""
    mid = len(items) // 2
    return list(items[:mid]), list(items[mid:])


def new_group() -> str:
    """A fresh bisect_group value (fits targets.bisect_group, 32 characters)."""
    return secrets.token_hex(16)


def splits(error_code: str | None, instances_in_call: int, names_an_instance: bool) -> bool:
    """Whether a call that covered `instances_in_call` claimed instances and failed as a whole
    with `error_code` is split in halves rather than counted against each instance."""
    return error_code is not None and instances_in_call > 1 and names_an_instance
