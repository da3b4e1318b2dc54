"""A limiter slot travels with its request and is told when the request is written.

The marks come from httpcore's `trace` request extension: `sending()` on the event fired
just before the request headers are written (after the auth flow has signed the request and
after the connection, TCP and TLS, is up), `sent()` once the body is written. An httpx
`request` event hook would fire before the connection is made, and a fresh TLS connection to
a distant cloud takes longer than the limiter's margin. Transports without httpcore (a
MockTransport) fire no trace events.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.providers.base import Slot

# HTTP/1.1, and HTTP/2 should it ever be enabled.
SENDING = frozenset({"http11.send_request_headers.started", "http2.send_request_headers.started"})
SENT = frozenset({"http11.send_request_body.complete", "http2.send_request_body.complete"})


def extensions(slot: Slot | None) -> dict[str, Any]:
    """Request extensions that tell `slot` when its request is written (none: unpaced)."""
    if slot is None:
        return {}
    return {"trace": tracer(slot)}


def tracer(slot: Slot) -> Callable[[str, dict[str, Any]], None]:
    """An httpcore trace callback that passes the write's start and end on to `slot`."""

    def trace(event: str, info: dict[str, Any]) -> None:
        if event in SENDING:
            slot.sending()
        elif event in SENT:
            slot.sent()

    return trace
