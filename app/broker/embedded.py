"""The embedded broker: kombu's filesystem transport, with every message written atomically.

kombu creates a message file and only then writes into it, while a consumer polling the
folder moves and reads any file whose name matches, without the writer's lock: under load a
worker takes a message that is still empty and dies on the JSON. Here a message is written
under a name no consumer matches, then renamed into the queue, and a rename is atomic.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

SCHEME = "keybindfs"


class Channel(filesystem.Channel):
    # kombu names this parameter `message` in one base class and `payload` in the other.
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        folder = self.data_folder_out
        # A leading dot and no ".<queue>.msg" ending: no consumer takes it before the rename.
        part = os.path.join(folder, f".{uuid.uuid4().hex}.part")
        with open(part, "wb") as f:
            f.write(str_to_bytes(dumps(payload)))
        os.replace(part, os.path.join(folder, name))


class Transport(filesystem.Transport):
    Channel = Channel


def broker_url(url: str) -> str:
    """`filesystem://...` as this module's transport; any other URL as it is."""
    prefix = "filesystem://"
    return SCHEME + "://" + url[len(prefix) :] if url.startswith(prefix) else url


TRANSPORT_ALIASES.setdefault(SCHEME, f"{__name__}:Transport")
