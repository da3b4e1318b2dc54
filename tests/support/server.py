"""A real uvicorn server running keybind's API in a thread, on a free port, for tests that
need a real HTTP endpoint (the CLI, Chromium, pollers)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from app.api.main import create_app
from app.config import Settings
from tests.support.simulator import free_port


@contextmanager
def api_server(settings: Settings) -> Iterator[str]:
    """Serve the API for `settings`; yields its base URL, stops it afterwards."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="api-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the API server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
