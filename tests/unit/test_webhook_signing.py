"""Webhook signatures, checked against the `standardwebhooks` reference package and
GitHub's published example."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError
from standardwebhooks import Webhook

from app.config import Settings
from app.webhooks.signing import (
    SignatureError,
    github_signature,
    parse_secrets,
    standard_headers,
    verify_github,
    verify_standard,
)

SECRET = "whsec_" + base64.b64encode(b"keybind-test-secret-0123456789").decode()
OTHER = "whsec_" + base64.b64encode(b"another-secret-abcdefghijklmno").decode()
BODY = b'{"provider":"tencent","region":"ap-guangzhou"}'


def test_our_signature_verifies_with_the_reference_package() -> None:
    ts = int(time.time())
    headers = standard_headers(parse_secrets(SECRET), msg_id="msg_1", timestamp=ts, body=BODY)
    assert Webhook(SECRET).verify(BODY, headers) == {
        "provider": "tencent",
        "region": "ap-guangzhou",
    }
    # Signed with two secrets (ours mid-rotation): a receiver holding either one verifies.
    both = standard_headers(parse_secrets(f"{OTHER},{SECRET}"), msg_id="m", timestamp=ts, body=BODY)
    assert len(both["webhook-signature"].split()) == 2
    for held in (SECRET, OTHER):
        Webhook(held).verify(BODY, both)


def test_the_reference_packages_signature_verifies_with_ours() -> None:
    now = datetime.now(UTC)
    sig = Webhook(SECRET).sign("msg_2", now, BODY.decode())
    verify_standard(
        parse_secrets(SECRET),
        msg_id="msg_2",
        timestamp=str(int(now.timestamp())),
        signatures=sig,
        body=BODY,
        now=time.time(),
        tolerance_s=300,
    )


def test_any_of_several_signatures_and_any_of_several_secrets() -> None:
    now = int(time.time())
    wrong = Webhook(OTHER).sign("m", datetime.fromtimestamp(now, UTC), BODY.decode())
    right = Webhook(SECRET).sign("m", datetime.fromtimestamp(now, UTC), BODY.decode())
    secrets = parse_secrets(f"{OTHER}, {SECRET}")
    verify_standard(
        secrets,
        msg_id="m",
        timestamp=str(now),
        signatures=f"v2,abc {wrong} {right}",
        body=BODY,
        now=now,
        tolerance_s=300,
    )
    with pytest.raises(SignatureError, match="matches"):
        verify_standard(
            parse_secrets(SECRET),
            msg_id="m",
            timestamp=str(now),
            signatures=wrong,
            body=BODY,
            now=now,
            tolerance_s=300,
        )


@pytest.mark.parametrize("skew", [-301, 301])
def test_a_timestamp_outside_the_tolerance_is_refused(skew: int) -> None:
    now = int(time.time())
    secret = parse_secrets(SECRET)[0]
    h = standard_headers([secret], msg_id="m", timestamp=now + skew, body=BODY)
    with pytest.raises(SignatureError, match="300 s"):
        verify_standard(
            [secret],
            msg_id="m",
            timestamp=h["webhook-timestamp"],
            signatures=h["webhook-signature"],
            body=BODY,
            now=now,
            tolerance_s=300,
        )


def test_a_changed_body_or_id_is_refused() -> None:
    now = int(time.time())
    secret = parse_secrets(SECRET)[0]
    h = standard_headers([secret], msg_id="m", timestamp=now, body=BODY)
    for msg_id, body in (("m", BODY + b" "), ("n", BODY)):
        with pytest.raises(SignatureError):
            verify_standard(
                [secret],
                msg_id=msg_id,
                timestamp=h["webhook-timestamp"],
                signatures=h["webhook-signature"],
                body=body,
                now=now,
                tolerance_s=300,
            )


def test_github_known_answer() -> None:
    # The example in GitHub's "Validating webhook deliveries" documentation.
    secret = parse_secrets("It's a Secret to Everybody")[0]
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert github_signature(secret, b"Hello, World!") == expected
    verify_github([secret], signature=expected, body=b"Hello, World!")
    with pytest.raises(SignatureError):
        verify_github([secret], signature=expected, body=b"Hello, World?")
    with pytest.raises(SignatureError):
        verify_github([secret], signature="sha1=abc", body=b"Hello, World!")


def test_malformed_secrets_are_refused() -> None:
    with pytest.raises(ValueError, match="base64"):
        parse_secrets("whsec_not*base64")
    with pytest.raises(ValueError, match="empty"):
        parse_secrets("whsec_")
    # At start-up, without echoing the secret.
    with pytest.raises(ValidationError, match="webhook secret") as caught:
        Settings(webhook_secret="whsec_not*base64-s3cr3t")
    assert "s3cr3t" not in str(caught.value)
    with pytest.raises(ValidationError):
        Settings(callback_secret=" , ")
