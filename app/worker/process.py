"""What one worker process holds: its runtime and producer, built after the fork (a child
must not reuse its parent's database or HTTP connections), closed when it exits."""

from __future__ import annotations

import os
from dataclasses import dataclass

from celery import Celery

from app.broker.producer import CeleryProducer
from app.config import Settings
from app.runtime import Runtime


@dataclass(frozen=True, slots=True)
class Process:
    runtime: Runtime
    producer: CeleryProducer


class PerProcess:
    """A Process per OS process: a forked child builds its own on first use."""

    def __init__(self, celery: Celery, settings: Settings) -> None:
        self._celery = celery
        self._settings = settings
        self._held: Process | None = None
        self._pid: int | None = None

    def get(self) -> Process:
        if self._held is None or self._pid != os.getpid():
            self._held = Process(
                Runtime(self._settings), CeleryProducer(self._celery, self._settings)
            )
            self._pid = os.getpid()
        return self._held

    def reset(self) -> None:
        if self._held is not None and self._pid == os.getpid():
            self._held.runtime.close()
        self._held = None
