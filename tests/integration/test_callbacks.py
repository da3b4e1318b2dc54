"""Outbound callbacks to a real HTTP server: signed, retried with backoff, every attempt on
the job."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from standardwebhooks import Webhook

from app.api.main import create_app
from app.jobs.callbacks import deliver_due
from app.runtime import Runtime
from tests.support.processes import wait_for
from tests.support.receiver import callback_receiver

SECRET = "whsec_" + base64.b64encode(b"callback-secret-for-the-tests!").decode()
BODY = {
    "provider": "tencent",
    "region": "ap-guangzhou",
    "instance_ids": ["ins-r8hr2upy", "ins-3e56fg78"],
    "key_ids": ["skey-3glfot13"],
}


@pytest.fixture
def cb_rt(rt: Runtime) -> Iterator[Runtime]:
    settings = rt.settings.model_copy(
        update={
            "callback_secret": SecretStr(SECRET),
            # Retries wait 0.5-1 s: long enough to see the backoff, short for a test.
            "callback_backoff_base_s": 1.0,
            "callback_backoff_max_s": 1.0,
            "callback_max_attempts": 3,
            "callback_timeout_s": 2.0,
            # The receivers here listen on 127.0.0.1.
            "callback_allow_private_networks": True,
        }
    )
    runtime = Runtime(settings)
    yield runtime
    runtime.close()


@pytest.fixture
def cb_client(cb_rt: Runtime, token: str) -> Iterator[TestClient]:
    with TestClient(create_app(cb_rt.settings), headers={"Authorization": f"Bearer {token}"}) as c:
        yield c


def test_a_final_job_is_posted_signed_retried_and_recorded(
    cb_client: TestClient, cb_rt: Runtime
) -> None:
    with callback_receiver([500, 204]) as receiver:
        r = cb_client.post("/v1/jobs", json={**BODY, "callback_url": receiver.url})
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        # Not final yet: nothing is sent.
        assert deliver_due(cb_rt) == 0 and receiver.requests == []
        assert cb_client.get(f"/v1/jobs/{job_id}").json()["callback_state"] == "pending"
        cb_client.post(f"/v1/jobs/{job_id}/cancel")  # final now

        assert deliver_due(cb_rt) == 1  # the receiver answers 500
        job = cb_client.get(f"/v1/jobs/{job_id}").json()
        assert job["callback_state"] == "pending"
        assert [(c["attempt"], c["http_status"], c["error"]) for c in job["callbacks"]] == [
            (1, 500, "HTTP 500")
        ]
        assert deliver_due(cb_rt) == 0  # backing off
        wait_for(lambda: deliver_due(cb_rt) == 1, timeout=5, interval=0.1, what="the retry")

        job = cb_client.get(f"/v1/jobs/{job_id}").json()
        assert job["callback_state"] == "delivered"
        assert [(c["attempt"], c["http_status"], c["error"]) for c in job["callbacks"]] == [
            (1, 500, "HTTP 500"),
            (2, 204, None),
        ]
        assert len(receiver.requests) == 2
        first, second = receiver.requests
        assert first.headers["webhook-id"] == second.headers["webhook-id"] == f"msg_{job_id}"
        for req in receiver.requests:
            payload = Webhook(SECRET).verify(req.body, req.headers)
            assert payload["type"] == "job.finished"
            assert payload["data"]["id"] == job_id and payload["data"]["state"] == "cancelled"
            assert payload["data"]["counts"]["cancelled"] == 2
        assert deliver_due(cb_rt) == 0  # delivered once, never again
        assert len(receiver.requests) == 2


def test_a_receiver_that_never_answers_well_is_given_up_on(
    cb_client: TestClient, cb_rt: Runtime
) -> None:
    with callback_receiver([503]) as receiver:
        job_id = cb_client.post("/v1/jobs", json={**BODY, "callback_url": receiver.url}).json()[
            "id"
        ]
        cb_client.post(f"/v1/jobs/{job_id}/cancel")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(receiver.requests) < 3:
            deliver_due(cb_rt)
            time.sleep(0.1)
        time.sleep(0.5)
        deliver_due(cb_rt)
        job = cb_client.get(f"/v1/jobs/{job_id}").json()
        assert job["callback_state"] == "failed"
        assert [c["http_status"] for c in job["callbacks"]] == [503, 503, 503]
        assert len(receiver.requests) == 3


def test_an_unreachable_receiver_is_recorded_as_a_connection_error(
    cb_client: TestClient, cb_rt: Runtime
) -> None:
    with callback_receiver([200]) as receiver:
        url = receiver.url
    # The server is gone now: connection refused.
    job_id = cb_client.post("/v1/jobs", json={**BODY, "callback_url": url}).json()["id"]
    cb_client.post(f"/v1/jobs/{job_id}/cancel")
    assert deliver_due(cb_rt) == 1
    attempt = cb_client.get(f"/v1/jobs/{job_id}").json()["callbacks"][0]
    assert attempt["http_status"] is None and attempt["error"] == "ConnectError"


def test_callback_urls_are_validated(cb_client: TestClient, client: TestClient) -> None:
    for url, field_value in [
        ("ftp://example.com/x", "ftp://example.com/x"),
        ("not a url", "not a url"),
        ("https://user:pw@example.com/x", "https://user:pw@example.com/x"),
    ]:
        r = cb_client.post("/v1/jobs", json={**BODY, "callback_url": url})
        assert r.status_code == 422, url
        detail = r.json()["error"]["details"][0]
        assert detail["field"] == "callback_url" and detail["value"] == field_value
    # Without KEYBIND_CALLBACK_SECRET the server cannot sign, so it says so.
    r = client.post("/v1/jobs", json={**BODY, "callback_url": "https://example.com/hook"})
    assert r.status_code == 422 and "KEYBIND_CALLBACK_SECRET" in r.json()["error"]["message"]


def test_callbacks_to_non_public_addresses_are_refused(cb_rt: Runtime, token: str) -> None:
    """Without KEYBIND_CALLBACK_ALLOW_PRIVATE_NETWORKS: an address that is plainly not public
    is a 422 at submission (nothing written), and one that only shows as such when sent (a
    name, or a setting changed since) fails at once, recorded, with nothing sent."""
    public_only = cb_rt.settings.model_copy(update={"callback_allow_private_networks": False})
    strict = Runtime(public_only)
    try:
        with TestClient(create_app(public_only), headers={"Authorization": f"Bearer {token}"}) as c:
            for url in ("http://169.254.169.254/latest/meta-data", "https://localhost:8443/x"):
                r = c.post("/v1/jobs", json={**BODY, "callback_url": url})
                assert r.status_code == 422, r.text
                detail = r.json()["error"]["details"][0]
                assert detail["field"] == "callback_url" and detail["value"] == url
            assert c.get("/v1/jobs").json()["items"] == []

        with (
            callback_receiver([200]) as receiver,
            TestClient(
                create_app(cb_rt.settings), headers={"Authorization": f"Bearer {token}"}
            ) as lax,
        ):
            job_id = lax.post("/v1/jobs", json={**BODY, "callback_url": receiver.url}).json()["id"]
            lax.post(f"/v1/jobs/{job_id}/cancel")
            assert deliver_due(strict) == 1
            job = lax.get(f"/v1/jobs/{job_id}").json()
            assert receiver.requests == []
        assert job["callback_state"] == "failed"
        (attempt,) = job["callbacks"]
        assert attempt["http_status"] is None
        assert attempt["error"].startswith("keybind.CallbackAddressRefused: 127.0.0.1")
    finally:
        strict.close()
