"""The worker's Celery app: the shared broker set-up, keybind's tasks, and the beat schedule
that ticks the dispatcher, the callback sender and housekeeping."""

from __future__ import annotations

from celery import Celery

from app.broker import names
from app.broker.celery_app import celery_for
from app.config import Settings
from app.worker import tasks


def create_celery(settings: Settings) -> Celery:
    app = celery_for(settings)
    control = names.control_queue(settings)
    # A backlog of ticks is worthless: the next one does the same work.
    tick = {"queue": control, "expires": names.tick_expiry_s(settings)}
    app.conf.update(
        beat_schedule={
            "dispatch": {
                "task": names.DISPATCH_TASK,
                "schedule": settings.dispatch_interval_s,
                "options": tick,
            },
            "callbacks": {
                "task": names.CALLBACKS_TASK,
                "schedule": settings.dispatch_interval_s,
                "options": tick,
            },
            "housekeeping": {
                "task": names.HOUSEKEEPING_TASK,
                "schedule": 600.0,
                "options": {"queue": control, "expires": 600.0},
            },
        },
        beat_schedule_filename=str((settings.home / "celerybeat-schedule").resolve()),
    )
    tasks.register(app, settings)
    return app
