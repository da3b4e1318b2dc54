"""The Celery app, built from Settings. Broker only delivers; job state lives in the database."""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from app.config import Settings
from app.worker import embedded_broker

# Redis re-delivers any message not acked within this; our tasks finish in seconds and retry
# times live in the database, so it only has to outlast one call plus a limiter wait.
VISIBILITY_TIMEOUT_S = 600


def broker_options(settings: Settings) -> dict[str, Any]:
    if settings.uses_embedded_broker:
        folder = (settings.home / "broker").resolve()
        for sub in ("queue", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        return {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "control_folder": str(folder / "control"),
            # The default (1 s) would cap a worker at about one message a second.
            "polling_interval": 0.02,
        }
    return {"visibility_timeout": VISIBILITY_TIMEOUT_S}


def create_celery(settings: Settings) -> Celery:
    from app.worker import tasks

    prefix = settings.queue_prefix
    broker = embedded_broker.broker_url(settings.effective_broker_url)
    app = Celery("keybind", broker=broker, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_store_errors_even_if_ignored=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options=broker_options(settings),
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_hijack_root_logger=False,
        task_queues=[
            Queue(name, Exchange(name, type="direct"), routing_key=name)
            for name in (f"{prefix}.bind", f"{prefix}.control")
        ],
        task_default_queue=f"{prefix}.bind",
        task_serializer="json",
        accept_content=["json"],
        beat_schedule={
            "dispatch": {
                "task": tasks.DISPATCH_TASK,
                "schedule": settings.dispatch_interval_s,
                "options": {
                    "queue": f"{prefix}.control",
                    # A backlog of ticks is worthless: the next one does the same work.
                    "expires": max(5.0, 5 * settings.dispatch_interval_s),
                },
            },
            "callbacks": {
                "task": tasks.CALLBACKS_TASK,
                "schedule": settings.dispatch_interval_s,
                "options": {
                    "queue": f"{prefix}.control",
                    "expires": max(5.0, 5 * settings.dispatch_interval_s),
                },
            },
            "housekeeping": {
                "task": tasks.HOUSEKEEPING_TASK,
                "schedule": 600.0,
                "options": {"queue": f"{prefix}.control", "expires": 600.0},
            },
        },
        beat_schedule_filename=str((settings.home / "celerybeat-schedule").resolve()),
        # Task events cost three Redis publishes per task; Flower switches them on in the
        # workers it watches (its enable_events option, on by default), so none are sent
        # unless somebody is looking.
        worker_send_task_events=False,
        task_send_sent_event=False,
        timezone="UTC",
    )
    tasks.register(app)
    return app
