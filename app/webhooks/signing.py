"""Standard Webhooks and GitHub-style signatures: pure functions, clock passed in.

Standard Webhooks (https://www.standardwebhooks.com/, the scheme Svix and others use):
`webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`, several
space-separated; the key is the base64 part of a `whsec_<base64>` secret. GitHub:
`X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`, the secret used as typed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

SECRET_PREFIX = "whsec_"


class SignatureError(Exception):
    """The request is not signed by a secret we hold, or not recently enough."""


@dataclass(frozen=True, slots=True)
class Secret:
    """One configured secret: `text` as written (GitHub's key), `key` its decoded bytes."""

    text: str
    key: bytes


def parse_secrets(raw: str) -> list[Secret]:
    """`whsec_a,whsec_b` -> secrets; a value without the prefix is used as raw bytes."""
    out: list[Secret] = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        if part.startswith(SECRET_PREFIX):
            b64 = part[len(SECRET_PREFIX) :]
            try:
                key = base64.b64decode(b64 + "=" * (-len(b64) % 4), validate=True)
            except binascii.Error as exc:
                raise ValueError("a whsec_ secret must be base64 after the prefix") from exc
        else:
            key = part.encode()
        if not key:
            raise ValueError("empty webhook secret")
        out.append(Secret(part, key))
    return out


def standard_signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `v1,<base64>` signature of one message."""
    to_sign = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, to_sign, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def standard_headers(
    secrets: Sequence[Secret], *, msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three headers a Standard Webhooks sender puts on a request: one signature per
    secret, space-separated, so a receiver can move to a new secret while we sign with both."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(
            standard_signature(s.key, msg_id, timestamp, body) for s in secrets
        ),
    }


def verify_standard(
    secrets: Sequence[Secret],
    *,
    msg_id: str,
    timestamp: str,
    signatures: str,
    body: bytes,
    now: float,
    tolerance_s: int,
) -> None:
    """Raise SignatureError unless one listed `v1` signature matches one secret and the
    timestamp is within `tolerance_s` of `now` (either way: replays and clock skew)."""
    if not (msg_id and timestamp and signatures):
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        ts = int(timestamp)
    except ValueError as exc:
        raise SignatureError("webhook-timestamp is not unix seconds") from exc
    if abs(now - ts) > tolerance_s:
        raise SignatureError(f"webhook-timestamp is more than {tolerance_s} s from our clock")
    offered: list[bytes] = []
    for item in signatures.split():
        version, _, value = item.partition(",")
        if version != "v1":
            continue
        try:
            offered.append(base64.b64decode(value, validate=True))
        except binascii.Error:
            continue
    for secret in secrets:
        expected = base64.b64decode(standard_signature(secret.key, msg_id, ts, body)[3:])
        if any(hmac.compare_digest(expected, sig) for sig in offered):
            return
    raise SignatureError("no webhook-signature matches a configured secret")


def github_signature(secret: Secret, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.text.encode(), body, hashlib.sha256).hexdigest()


def verify_github(secrets: Sequence[Secret], *, signature: str, body: bytes) -> None:
    """Raise SignatureError unless `sha256=<hex>` matches one secret."""
    if not signature.startswith("sha256="):
        raise SignatureError("X-Hub-Signature-256 must be sha256=<hex>")
    for secret in secrets:
        if hmac.compare_digest(github_signature(secret, body).encode(), signature.encode()):
            return
    raise SignatureError("X-Hub-Signature-256 matches no configured secret")
