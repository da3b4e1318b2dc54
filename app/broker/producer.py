"""The producer the use cases are given (jobs/ports.Producer), sending Celery tasks by name."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from celery import Celery

from app.broker import names
from app.config import Settings

# Target ids, one inner sequence per task (the shape app/jobs/ports.Producer takes).
Batches = Sequence[Sequence[int]]


class CeleryProducer:
    def __init__(self, celery: Celery, settings: Settings) -> None:
        self.celery = celery
        self._settings = settings

    def enqueue_binds(
        self, batches: Batches, *, front: bool = False, countdowns: Sequence[float] = ()
    ) -> None:
        # One clock reading for the whole release: the countdowns are spaced one limiter
        # slot apart, and the time spent sending must not stretch them.
        now = datetime.now(UTC)
        for i, batch in enumerate(batches):
            countdown = countdowns[i] if i < len(countdowns) else 0.0
            self.celery.send_task(
                names.BIND_TASK,
                args=[list(batch)],
                kwargs={"front": True} if front else {},
                queue=names.bind_queue(self._settings),
                priority=names.FRONT_PRIORITY if front else names.BULK_PRIORITY,
                eta=now + timedelta(seconds=countdown) if countdown else None,
                # After the dispatch lease the dispatcher releases the target again anyway.
                expires=now + timedelta(seconds=countdown + self._settings.dispatch_lease_s),
            )

    def enqueue_verifies(self, batches: Batches, countdown: float = 0.0) -> None:
        # The claim only takes targets whose look is due, so an early or duplicate message
        # changes nothing.
        for batch in batches:
            self.celery.send_task(
                names.VERIFY_TASK,
                args=[list(batch)],
                queue=names.bind_queue(self._settings),
                countdown=countdown or None,
                expires=countdown + self._settings.dispatch_lease_s,
            )

    def kick_dispatch(self, countdown: float = 0.0) -> None:
        self.celery.send_task(
            names.DISPATCH_TASK,
            queue=names.control_queue(self._settings),
            countdown=countdown or None,
            expires=countdown + names.tick_expiry_s(self._settings),
        )
