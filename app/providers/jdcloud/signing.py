"""JD Cloud OpenAPI request signing: JDCLOUD3-HMAC-SHA256 (the current official Python SDK)
and JDCLOUD2-HMAC-SHA256 (the docs, the Go SDK, the legacy Python SDK), from the named steps of
docs.jdcloud.com/cn/common-declaration/api/authorization-rules.

Pure functions, no I/O; `JDCloudAuth` applies them to an httpx request. The simulator verifies
with the same functions. Both versions share one canonicalisation (JDCLOUD3's: decode, then
re-encode path and query); they differ only in the algorithm name, the key prefix and the scope
terminator.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
import uuid
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, unquote_plus

import httpx

DEFAULT_REGION = "jdcloud-api"  # what the SDK signs with when a call names no region
SERVICE = "vm"
# Headers the SDK never signs; every other header present at signing time is signed.
UNSIGNED_HEADERS = frozenset({"authorization", "user-agent"})
REGION_IN_PATH = re.compile(r"^/v\d+/regions/([^/]+)/")


@dataclass(frozen=True, slots=True)
class Version:
    algorithm: str
    key_prefix: str
    terminator: str


JDCLOUD2 = Version("JDCLOUD2-HMAC-SHA256", "JDCLOUD2", "jdcloud2_request")
JDCLOUD3 = Version("JDCLOUD3-HMAC-SHA256", "JDCLOUD3", "jdcloud3_request")
VERSIONS = {v.algorithm: v for v in (JDCLOUD2, JDCLOUD3)}


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def jdcloud_date(timestamp: float) -> str:
    """The `x-jdcloud-date` value: `YYYYMMDDTHHMMSSZ` in UTC."""
    return datetime.fromtimestamp(int(timestamp), UTC).strftime("%Y%m%dT%H%M%SZ")


def canonical_uri(path: str) -> str:
    """Decode (`+` is a space), collapse `//`, re-encode keeping `/~`: `:attach` -> `%3Aattach`."""
    decoded = re.sub("/+", "/", unquote_plus(path))
    if not decoded:
        return "/"
    encoded = quote(decoded, safe="/~")
    return encoded if encoded.startswith("/") else "/" + encoded


def canonical_query(query: str) -> str:
    """Decode and re-encode each key and value, sort by (key, value); pairs without `=` and
    with an empty key drop out, as in the SDK's signer."""
    pairs = sorted(
        [quote(unquote_plus(part), safe="~") for part in item.split("=", 1)]
        for item in query.split("&")
        if item
    )
    return "&".join(f"{p[0]}={p[1]}" for p in pairs if len(p) == 2 and p[0])


def canonical_headers(headers: Mapping[str, str], signed_headers: Sequence[str]) -> str:
    """`name:value\\n` per signed header; `headers` keyed by lower-case name, values trimmed."""
    return "".join(f"{name}:{headers[name].strip()}\n" for name in signed_headers)


def canonical_request(
    *,
    method: str,
    uri: str,
    query: str,
    headers: Mapping[str, str],
    signed_headers: Sequence[str],
    body_hash: str,
) -> str:
    """The canonical request from already-canonical `uri` and `query`."""
    return "\n".join(
        [
            method.upper(),
            uri,
            query,
            canonical_headers(headers, signed_headers),
            ";".join(signed_headers),
            body_hash,
        ]
    )


def credential_scope(version: Version, date8: str, region: str, service: str) -> str:
    return f"{date8}/{region}/{service}/{version.terminator}"


def string_to_sign(version: Version, *, jd_date: str, scope: str, canonical: str) -> str:
    return f"{version.algorithm}\n{jd_date}\n{scope}\n{sha256_hex(canonical.encode())}"


def signing_key(version: Version, secret_key: str, date8: str, region: str, service: str) -> bytes:
    k_date = _hmac((version.key_prefix + secret_key).encode(), date8)
    k_region = _hmac(k_date, region)
    k_service = _hmac(k_region, service)
    return _hmac(k_service, version.terminator)


def signature(
    version: Version, *, secret_key: str, date8: str, region: str, service: str, to_sign: str
) -> str:
    key = signing_key(version, secret_key, date8, region, service)
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def authorization(
    version: Version,
    *,
    access_key: str,
    secret_key: str,
    jd_date: str,
    region: str,
    service: str,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
) -> str:
    """The `Authorization` value; every header in `headers` is signed (pass `host` in it)."""
    lowered = {k.lower(): v for k, v in headers.items() if k.lower() not in UNSIGNED_HEADERS}
    names = sorted(lowered)
    canonical = canonical_request(
        method=method,
        uri=canonical_uri(path),
        query=canonical_query(query),
        headers=lowered,
        signed_headers=names,
        body_hash=sha256_hex(body),
    )
    scope = credential_scope(version, jd_date[:8], region, service)
    to_sign = string_to_sign(version, jd_date=jd_date, scope=scope, canonical=canonical)
    sig = signature(
        version,
        secret_key=secret_key,
        date8=jd_date[:8],
        region=region,
        service=service,
        to_sign=to_sign,
    )
    return (
        f"{version.algorithm} Credential={access_key}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={sig}"
    )


def region_from_path(path: str) -> str:
    """`/v1/regions/cn-north-1/...` -> `cn-north-1`; the SDK's fallback otherwise."""
    m = REGION_IN_PATH.match(path)
    return m.group(1) if m else DEFAULT_REGION


class JDCloudAuth(httpx.Auth):
    """Signs each request: sets `x-jdcloud-date` and `x-jdcloud-nonce` and signs them together
    with `content-type` and `host`, as the docs require (the current SDK leaves them unsigned
    unless the caller sets them; a verifier that follows `SignedHeaders` accepts both)."""

    def __init__(
        self,
        access_key: str,
        secret_key: str,
        *,
        version: Version = JDCLOUD3,
        service: str = SERVICE,
        clock: Callable[[], float] = time.time,
        nonce: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self._access_key = access_key
        self._secret_key = secret_key
        self._version = version
        self._service = service
        self._clock = clock
        self._nonce = nonce

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["x-jdcloud-date"] = jdcloud_date(self._clock())
        request.headers["x-jdcloud-nonce"] = self._nonce()
        path = request.url.raw_path.decode("ascii").split("?", 1)[0]
        signed = {
            "content-type": request.headers.get("Content-Type", "application/json"),
            "host": request.headers["Host"],
            "x-jdcloud-date": request.headers["x-jdcloud-date"],
            "x-jdcloud-nonce": request.headers["x-jdcloud-nonce"],
        }
        request.headers["Content-Type"] = signed["content-type"]
        request.headers["Authorization"] = authorization(
            self._version,
            access_key=self._access_key,
            secret_key=self._secret_key,
            jd_date=signed["x-jdcloud-date"],
            region=region_from_path(path),
            service=self._service,
            method=request.method,
            path=path,
            query=request.url.query.decode("ascii"),
            headers=signed,
            body=request.content,
        )
        yield request
