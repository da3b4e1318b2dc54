"""Celery tasks: thin entry points that take ids and call one use case."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import worker_process_init, worker_process_shutdown

from app.broker import names
from app.config import Settings
from app.jobs.bind import bind_targets
from app.jobs.callbacks import deliver_due
from app.jobs.dispatch import dispatch as run_dispatch
from app.jobs.housekeeping import expire_idempotency_keys
from app.jobs.verify import verify_targets
from app.worker.process import PerProcess


def register(app: Celery, settings: Settings) -> None:
    process = PerProcess(app, settings)

    @app.task(name=names.BIND_TASK, acks_late=True, reject_on_worker_lost=True)
    def bind(target_ids: list[int], front: bool = False) -> int:
        p = process.get()
        return bind_targets(p.runtime, p.producer, target_ids, front=front)

    @app.task(name=names.VERIFY_TASK, acks_late=True, reject_on_worker_lost=True)
    def verify(target_ids: list[int]) -> int:
        return verify_targets(process.get().runtime, target_ids)

    @app.task(name=names.DISPATCH_TASK, acks_late=False)
    def dispatch() -> int:
        p = process.get()
        tick = run_dispatch(p.runtime, p.producer)
        return sum(len(b) for b in tick.released) + sum(len(b) for b in tick.verifying)

    @app.task(name=names.NOOP_TASK, acks_late=True, reject_on_worker_lost=True)
    def noop() -> None:
        """Does nothing: the yardstick for what one task costs Celery itself (benchmarks)."""

    @app.task(name=names.CALLBACKS_TASK, acks_late=False)
    def callbacks() -> int:
        # Schedule and history live in PostgreSQL; a lost tick only delays the next send.
        return deliver_due(process.get().runtime)

    @app.task(name=names.HOUSEKEEPING_TASK, acks_late=False)
    def housekeeping() -> int:
        return expire_idempotency_keys(sessions=process.get().runtime.sessions)

    def fresh(**_: Any) -> None:
        # A forked child must not reuse the parent's database or HTTP connections.
        process.reset()
        # httpx logs every request at INFO: one line per cloud call is noise at 10 calls/s and
        # costs the hot path; keybind records every call in the attempts table instead.
        logging.getLogger("httpx").setLevel(logging.WARNING)

    def close(**_: Any) -> None:
        process.reset()

    # weak=False: the handlers are closures that would otherwise be collected at once.
    worker_process_init.connect(fresh, weak=False)
    worker_process_shutdown.connect(close, weak=False)
