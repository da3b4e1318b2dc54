"""What producers and workers agree on: task names, queues and priority lanes."""

from __future__ import annotations

from app.config import Settings

BIND_TASK = "keybind.bind"
VERIFY_TASK = "keybind.verify"
DISPATCH_TASK = "keybind.dispatch"
CALLBACKS_TASK = "keybind.callbacks"
HOUSEKEEPING_TASK = "keybind.housekeeping"
NOOP_TASK = "keybind.noop"

# Broker lanes (kombu's Redis transport serves priority 0 before 3, 6, 9; unprioritised
# messages, such as verify calls and dispatcher kicks, ride at 0). Bulk bind calls wait
# behind everything else, so a job's first call is not queued behind another job's backlog.
FRONT_PRIORITY = 0
BULK_PRIORITY = 6


def bind_queue(settings: Settings) -> str:
    return f"{settings.queue_prefix}.bind"


def control_queue(settings: Settings) -> str:
    return f"{settings.queue_prefix}.control"


def tick_expiry_s(settings: Settings) -> float:
    """A dispatcher tick (or kick) older than this is worthless: the next one does its work."""
    return max(5.0, 5 * settings.dispatch_interval_s)
