"""What the use cases need from the outside world and do not build themselves."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

# Target ids, one inner sequence per task.
Batches = Sequence[Sequence[int]]


class Producer(Protocol):
    """Hands work to the broker. Only ever an accelerator or a courier: what is due lives in
    the database, and the dispatcher's next tick sends whatever a lost message carried."""

    def enqueue_binds(
        self, batches: Batches, *, front: bool = False, countdowns: Sequence[float] = ()
    ) -> None:
        """One bind task per batch of target ids; `front`: ahead of every bulk call waiting in
        the broker; `countdowns`: per batch, seconds from now until it is to run."""

    def enqueue_verifies(self, batches: Batches, countdown: float = 0.0) -> None:
        """One verify task per batch, now or in `countdown` s."""

    def kick_dispatch(self, countdown: float = 0.0) -> None:
        """Ask for a dispatcher tick now (or in `countdown` s) rather than at the next beat."""
