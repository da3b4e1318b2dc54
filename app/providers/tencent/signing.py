"""TC3-HMAC-SHA256 request signing (Tencent Cloud API 3.0), built from the published steps.

Pure functions, no I/O; `TC3Auth` applies them to an httpx request. The simulator verifies
with the same functions, so one known-answer-tested implementation serves both sides.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from datetime import UTC, datetime

import httpx

ALGORITHM = "TC3-HMAC-SHA256"
DEFAULT_SIGNED_HEADERS = ("content-type", "host")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def utc_date(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")


def canonical_request(
    *,
    method: str,
    query: str,
    headers: Mapping[str, str],
    signed_headers: Sequence[str],
    body: bytes,
) -> str:
    """The canonical request; `headers` must be keyed by lower-case name."""
    canonical_headers = "".join(
        f"{name}:{headers[name].strip().lower()}\n" for name in signed_headers
    )
    return "\n".join(
        [
            method.upper(),
            "/",
            query,
            canonical_headers,
            ";".join(signed_headers),
            sha256_hex(body),
        ]
    )


def credential_scope(date: str, service: str) -> str:
    return f"{date}/{service}/tc3_request"


def string_to_sign(*, timestamp: int, service: str, canonical: str) -> str:
    scope = credential_scope(utc_date(timestamp), service)
    return f"{ALGORITHM}\n{timestamp}\n{scope}\n{sha256_hex(canonical.encode())}"


def signing_key(secret_key: str, date: str, service: str) -> bytes:
    k_date = _hmac(("TC3" + secret_key).encode(), date)
    k_service = _hmac(k_date, service)
    return _hmac(k_service, "tc3_request")


def signature(*, secret_key: str, timestamp: int, service: str, to_sign: str) -> str:
    key = signing_key(secret_key, utc_date(timestamp), service)
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def authorization(
    *,
    secret_id: str,
    secret_key: str,
    timestamp: int,
    service: str,
    method: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    signed_headers: Sequence[str] = DEFAULT_SIGNED_HEADERS,
) -> str:
    """The `Authorization` header value for one request."""
    names = sorted(h.lower() for h in signed_headers)
    lowered = {k.lower(): v for k, v in headers.items()}
    canonical = canonical_request(
        method=method, query=query, headers=lowered, signed_headers=names, body=body
    )
    to_sign = string_to_sign(timestamp=timestamp, service=service, canonical=canonical)
    sig = signature(secret_key=secret_key, timestamp=timestamp, service=service, to_sign=to_sign)
    scope = credential_scope(utc_date(timestamp), service)
    return (
        f"{ALGORITHM} Credential={secret_id}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={sig}"
    )


def service_from_host(host: str) -> str:
    """`cvm.tencentcloudapi.com` -> `cvm`; a bare IP (the simulator) signs as `cvm`."""
    label = host.split(":", 1)[0].split(".", 1)[0]
    return label if label.isalpha() else "cvm"


class TC3Auth(httpx.Auth):
    """Signs each request: sets X-TC-Timestamp, optional X-TC-Token, and Authorization."""

    def __init__(
        self,
        secret_id: str,
        secret_key: str,
        *,
        session_token: str | None = None,
        service: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret_id = secret_id
        self._secret_key = secret_key
        self._token = session_token
        self._service = service
        self._clock = clock

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        timestamp = int(self._clock())
        request.headers["X-TC-Timestamp"] = str(timestamp)
        if self._token:
            request.headers["X-TC-Token"] = self._token  # not part of the signature
        host = request.headers["Host"]
        request.headers["Authorization"] = authorization(
            secret_id=self._secret_id,
            secret_key=self._secret_key,
            timestamp=timestamp,
            service=self._service or service_from_host(host),
            method=request.method,
            query=request.url.query.decode() if request.method == "GET" else "",
            headers={"content-type": request.headers["Content-Type"], "host": host},
            body=request.content,
        )
        yield request
