"""POST /v1/hooks/rotate against real PostgreSQL: signed deliveries start exactly one job."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import func, select
from standardwebhooks import Webhook

from app.api.main import create_app
from app.jobs.housekeeping import expire_idempotency_keys
from app.runtime import Runtime
from app.store import idempotency
from app.store.db import transaction, utcnow
from app.store.models import IdempotencyKey, Job, Target

OLD = "whsec_" + base64.b64encode(b"old-secret-for-keybind-tests!!").decode()
NEW = "whsec_" + base64.b64encode(b"new-secret-for-keybind-tests!!").decode()
BODY = {
    "provider": "tencent",
    "region": "ap-guangzhou",
    "instance_ids": ["ins-r8hr2upy", "ins-3e56fg78"],
    "key_ids": ["skey-3glfot13"],
}
URL = "/v1/hooks/rotate"


@pytest.fixture
def hooks(rt: Runtime) -> Iterator[TestClient]:
    """The API with two webhook secrets configured (mid-rotation), and no bearer token."""
    settings = rt.settings.model_copy(update={"webhook_secret": SecretStr(f"{OLD},{NEW}")})
    with TestClient(create_app(settings)) as c:
        yield c


def jobs(rt: Runtime) -> int:
    with rt.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(Job)) or 0)


def signed(
    body: bytes, secret: str = NEW, msg_id: str | None = None, at: float | None = None
) -> dict[str, str]:
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    when = datetime.fromtimestamp(at if at is not None else time.time(), UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, when, body.decode()),
        "content-type": "application/json",
    }


def github(body: bytes, secret: str = NEW, delivery: str | None = None) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "X-Hub-Signature-256": f"sha256={digest}",
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-GitHub-Event": "workflow_run",
        "content-type": "application/json",
    }


def test_a_signed_delivery_starts_one_job_however_often_it_comes(
    hooks: TestClient, rt: Runtime, client: TestClient
) -> None:
    raw = json.dumps(BODY).encode()
    headers = signed(raw)
    first = hooks.post(URL, content=raw, headers=headers)
    assert first.status_code == 202, first.text
    # Retries of the same delivery are re-signed with a fresh timestamp, as senders do.
    for _ in range(3):
        again = hooks.post(URL, content=raw, headers=signed(raw, msg_id=headers["webhook-id"]))
        assert again.status_code == 202 and again.json()["id"] == first.json()["id"]
    assert jobs(rt) == 1
    job = client.get(f"/v1/jobs/{first.json()['id']}").json()
    assert job["source"] == "webhook" and job["submitted_by"] == "webhook"
    assert job["total"] == 2
    with rt.sessions() as s:
        assert s.get(Job, first.json()["id"]).priority == rt.settings.webhook_priority  # type: ignore[union-attr]
    # A new delivery id is a new rotation.
    assert hooks.post(URL, content=raw, headers=signed(raw)).json()["id"] != first.json()["id"]
    assert jobs(rt) == 2


def test_the_old_secret_still_verifies_during_rotation(hooks: TestClient, rt: Runtime) -> None:
    raw = json.dumps(BODY).encode()
    assert hooks.post(URL, content=raw, headers=signed(raw, secret=OLD)).status_code == 202
    assert jobs(rt) == 1


def test_unsigned_wrongly_signed_and_stale_deliveries_are_refused(
    hooks: TestClient, rt: Runtime
) -> None:
    raw = json.dumps(BODY).encode()
    stranger = "whsec_" + base64.b64encode(b"not-a-secret-we-hold-at-all!!!").decode()
    tampered = signed(raw)
    cases = {
        "unsigned": {"content-type": "application/json"},
        "wrong secret": signed(raw, secret=stranger),
        "stale": signed(raw, at=time.time() - 301),
        "from the future": signed(raw, at=time.time() + 301),
        "no timestamp": {k: v for k, v in signed(raw).items() if k != "webhook-timestamp"},
        "no id": {k: v for k, v in signed(raw).items() if k != "webhook-id"},
        "garbage signature": {**signed(raw), "webhook-signature": "v1,@@@"},
        "wrong github secret": github(raw, secret=stranger),
        "bearer instead": {"Authorization": "Bearer kb_x", "content-type": "application/json"},
    }
    for name, headers in cases.items():
        r = hooks.post(URL, content=raw, headers=headers)
        assert r.status_code == 401, (name, r.text)
        assert r.json()["error"]["code"] == "bad_signature", name
    # Signed, but the body was changed on the way.
    r = hooks.post(URL, content=raw.replace(b"ap-guangzhou", b"ap-shanghai"), headers=tampered)
    assert r.status_code == 401
    assert jobs(rt) == 0


def test_github_style_deliveries(hooks: TestClient, rt: Runtime) -> None:
    raw = json.dumps(BODY).encode()
    headers = github(raw)
    first = hooks.post(URL, content=raw, headers=headers)
    assert first.status_code == 202, first.text
    again = hooks.post(URL, content=raw, headers=headers)
    assert again.json()["id"] == first.json()["id"]
    missing = {k: v for k, v in headers.items() if k != "X-GitHub-Delivery"}
    r = hooks.post(URL, content=raw, headers=missing)
    assert r.status_code == 422 and "X-GitHub-Delivery" in r.json()["error"]["message"]
    assert jobs(rt) == 1


def test_a_signed_but_invalid_body_is_a_422_naming_the_field(
    hooks: TestClient, rt: Runtime
) -> None:
    raw = json.dumps({**BODY, "instance_ids": ["ins-1122"]}).encode()
    r = hooks.post(URL, content=raw, headers=signed(raw))
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["field"] == "instance_ids[0]"
    assert r.json()["error"]["details"][0]["value"] == "ins-1122"
    raw = b"{not json"
    assert hooks.post(URL, content=raw, headers=signed(raw)).status_code == 422
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Target)) == 0
    assert jobs(rt) == 0


def test_the_same_delivery_id_with_another_body_is_refused(hooks: TestClient, rt: Runtime) -> None:
    raw = json.dumps(BODY).encode()
    headers = signed(raw)
    assert hooks.post(URL, content=raw, headers=headers).status_code == 202
    other = json.dumps({**BODY, "force_stop": True}).encode()
    r = hooks.post(URL, content=other, headers=signed(other, msg_id=headers["webhook-id"]))
    assert r.status_code == 422 and r.json()["error"]["code"] == "idempotency_key_reused"
    assert jobs(rt) == 1


def test_without_a_configured_secret_every_delivery_is_refused(
    client: TestClient, rt: Runtime
) -> None:
    raw = json.dumps(BODY).encode()
    r = client.post(URL, content=raw, headers=signed(raw))
    assert r.status_code == 401 and "KEYBIND_WEBHOOK_SECRET" in r.json()["error"]["message"]
    assert jobs(rt) == 0


def test_delivery_ids_outlive_api_idempotency_keys(rt: Runtime) -> None:
    now = utcnow()
    with transaction(rt.sessions) as s:
        for owner, key, age in [
            ("ops", "api-2d", 2),
            ("webhook", "std:2d", 2),
            ("webhook", "std:8d", 8),
        ]:
            idempotency.claim_key(
                s, owner=owner, key=key, fingerprint="f", now=now - timedelta(days=age)
            )
    assert expire_idempotency_keys(sessions=rt.sessions) == 2
    with rt.sessions() as s:
        assert list(s.scalars(select(IdempotencyKey.key))) == ["std:2d"]
