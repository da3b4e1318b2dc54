"""The HTTP set-up every cloud client shares: a checked endpoint, one long-lived `httpx.Client`
per client with explicit timeouts and limits, and keybind's codes for a call with no answer."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

from app.providers.base import ProviderConfigError

TIMEOUT = "keybind.Timeout"
CONNECTION_ERROR = "keybind.ConnectionError"


def endpoint_base(url: str, variable: str) -> str:
    """`scheme://host[:port]` of `url`; ProviderConfigError naming `variable` unless it is an
    http(s) URL. The cloud APIs live at the root, so any path is dropped."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ProviderConfigError(f"{variable} is not an http(s) URL: {url!r}")
    return f"{parts.scheme}://{parts.netloc}"


def cloud_client(
    endpoint: str,
    *,
    auth: httpx.Auth,
    timeout_s: float,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """A client for one account's calls; `transport` lets tests inject an `httpx.MockTransport`."""
    return httpx.Client(
        base_url=endpoint,
        auth=auth,
        # Connecting never takes the whole budget: a dead endpoint fails fast and is retried.
        timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
        limits=httpx.Limits(max_connections=10, max_keepalive_connections=10),
        transport=transport,
        trust_env=False,  # a proxy from the environment must not see signed requests
    )


def no_answer(exc: httpx.TransportError) -> tuple[str, str]:
    """keybind's error code and message for a call that got no answer; both retry."""
    code = TIMEOUT if isinstance(exc, httpx.TimeoutException) else CONNECTION_ERROR
    return code, type(exc).__name__
