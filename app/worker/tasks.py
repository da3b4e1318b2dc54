"""Celery tasks: thin entry points that take ids and call one service function."""

from __future__ import annotations

import logging

from celery import Celery
from celery.signals import worker_process_init, worker_process_shutdown

from app.jobs.binding import bind_targets, verify_targets
from app.jobs.callbacks import deliver_due
from app.jobs.dispatch import dispatch as run_dispatch
from app.jobs.service import expire_idempotency_keys
from app.runtime import BIND_TASK, DISPATCH_TASK, VERIFY_TASK, get_runtime, reset_runtime

HOUSEKEEPING_TASK = "keybind.housekeeping"
NOOP_TASK = "keybind.noop"
CALLBACKS_TASK = "keybind.callbacks"
__all__ = [
    "BIND_TASK",
    "CALLBACKS_TASK",
    "DISPATCH_TASK",
    "HOUSEKEEPING_TASK",
    "NOOP_TASK",
    "VERIFY_TASK",
    "register",
]


def register(app: Celery) -> None:
    @app.task(name=BIND_TASK, acks_late=True, reject_on_worker_lost=True)
    def bind(target_ids: list[int], front: bool = False) -> int:
        return bind_targets(get_runtime(), target_ids, front=front)

    @app.task(name=VERIFY_TASK, acks_late=True, reject_on_worker_lost=True)
    def verify(target_ids: list[int]) -> int:
        return verify_targets(get_runtime(), target_ids)

    @app.task(name=DISPATCH_TASK, acks_late=False)
    def dispatch() -> int:
        tick = run_dispatch(get_runtime())
        return sum(len(b) for b in tick.released) + sum(len(b) for b in tick.verifying)

    @app.task(name=NOOP_TASK, acks_late=True, reject_on_worker_lost=True)
    def noop() -> None:
        """Does nothing: the yardstick for what one task costs Celery itself (benchmarks)."""

    @app.task(name=CALLBACKS_TASK, acks_late=False)
    def callbacks() -> int:
        # Schedule and history live in PostgreSQL; a lost tick only delays the next send.
        return deliver_due(get_runtime())

    @app.task(name=HOUSEKEEPING_TASK, acks_late=False)
    def housekeeping() -> int:
        return expire_idempotency_keys(sessions=get_runtime().sessions)


@worker_process_init.connect
def _fresh_runtime(**_: object) -> None:
    # A forked child must not reuse the parent's database or HTTP connections.
    reset_runtime()
    # httpx logs every request at INFO: one line per cloud call is noise at 10 calls/s and
    # costs the hot path; keybind records every call in the attempts table instead.
    logging.getLogger("httpx").setLevel(logging.WARNING)


@worker_process_shutdown.connect
def _close_runtime(**_: object) -> None:
    reset_runtime()
