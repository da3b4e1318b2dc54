"""The Celery app as producers and workers share it: broker, queues, serialisation. Workers add
their tasks and the beat schedule (app/worker/celery_app.py); the API only sends."""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from app.broker import embedded, names
from app.config import Settings

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


def celery_for(settings: Settings) -> Celery:
    app = Celery(
        "keybind", broker=embedded.broker_url(settings.effective_broker_url), set_as_current=False
    )
    queues = (names.bind_queue(settings), names.control_queue(settings))
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
        task_queues=[Queue(q, Exchange(q, type="direct"), routing_key=q) for q in queues],
        task_default_queue=names.bind_queue(settings),
        task_serializer="json",
        accept_content=["json"],
        # Task events cost three Redis publishes per task; Flower switches them on in the
        # workers it watches (its enable_events option, on by default), so none are sent
        # unless somebody is looking.
        worker_send_task_events=False,
        task_send_sent_event=False,
        timezone="UTC",
    )
    return app
