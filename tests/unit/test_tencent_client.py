"""The Tencent client's wire format and failure mapping, against httpx.MockTransport."""

from __future__ import annotations

import json

import httpx
import pytest

from app.providers.base import ErrorClass
from app.providers.tencent.client import TencentClient
from app.providers.tencent.errors import TABLE, classify

SECRET_KEY = "sEcReTkEy-never-in-logs-0123456789"


def client(handler: httpx.MockTransport, token: str | None = None) -> TencentClient:
    return TencentClient(
        endpoint="http://127.0.0.1:9100",
        secret_id="AKIDtest",
        secret_key=SECRET_KEY,
        session_token=token,
        transport=handler,
    )


def test_request_shape_and_success() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"Response": {"RequestId": "req-1"}})

    c = client(httpx.MockTransport(handle), token="sts-token")
    result = c.associate_instances_key_pairs(
        "ap-guangzhou", ["ins-r8hr2upy"], ["skey-3glfot13"], False
    )
    assert result.ok and result.request_id == "req-1" and result.http_status == 200
    req = seen[0]
    assert req.method == "POST" and req.url.path == "/"
    assert req.headers["content-type"] == "application/json"
    assert req.headers["host"] == "127.0.0.1:9100"
    assert req.headers["x-tc-action"] == "AssociateInstancesKeyPairs"
    assert req.headers["x-tc-version"] == "2017-03-12"
    assert req.headers["x-tc-region"] == "ap-guangzhou"
    assert req.headers["x-tc-token"] == "sts-token"
    assert "SignedHeaders=content-type;host," in req.headers["authorization"]
    assert json.loads(req.content) == {
        "InstanceIds": ["ins-r8hr2upy"],
        "KeyIds": ["skey-3glfot13"],
        "ForceStop": False,
    }


def test_error_body_is_classified() -> None:
    def handle(_: httpx.Request) -> httpx.Response:
        body = {
            "Response": {
                "Error": {"Code": "MutexOperation.TaskRunning", "Message": "busy"},
                "RequestId": "req-2",
            }
        }
        return httpx.Response(200, json=body)

    result = client(httpx.MockTransport(handle)).associate_instances_key_pairs(
        "ap-guangzhou", ["ins-r8hr2upy"], ["skey-3glfot13"], False
    )
    assert result.error is not None
    assert (result.error.code, result.error.error_class, result.request_id) == (
        "MutexOperation.TaskRunning",
        ErrorClass.RETRY,
        "req-2",
    )


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (httpx.Response(502, text="<html>bad gateway</html>"), "keybind.HttpStatus"),
        (httpx.Response(200, text="not json"), "keybind.BadResponse"),
        (httpx.Response(200, json={"nope": 1}), "keybind.BadResponse"),
        (httpx.ReadTimeout("slow"), "keybind.Timeout"),
        (httpx.ConnectError("refused"), "keybind.ConnectionError"),
    ],
)
def test_transport_failures_become_retryable_codes(reply: object, code: str) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if isinstance(reply, Exception):
            raise reply
        assert isinstance(reply, httpx.Response)
        return reply

    c = client(httpx.MockTransport(handle))
    result = c.associate_instances_key_pairs(
        "ap-guangzhou", ["ins-r8hr2upy"], ["skey-3glfot13"], False
    )
    assert result.error is not None and result.error.code == code
    assert result.error.error_class is ErrorClass.RETRY


def test_classes() -> None:
    assert classify("OperationDenied.InstanceOperationInProgress") is ErrorClass.RETRY
    assert classify("RequestLimitExceeded.SomethingNew") is ErrorClass.RETRY
    assert classify("UnsupportedOperation.InstanceStateStopping") is ErrorClass.WAIT_STATE
    assert classify("UnsupportedOperation.InstanceStateRunning") is ErrorClass.POWER_STATE
    assert classify("UnsupportedOperation.InstanceOsWindows") is ErrorClass.TERMINAL
    assert classify("Something.NobodyDocumented") is ErrorClass.TERMINAL
    assert len(TABLE) > 60


def test_secrets_stay_out_of_reprs_and_errors() -> None:
    def handle(_: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    c = client(httpx.MockTransport(handle))
    result = c.associate_instances_key_pairs(
        "ap-guangzhou", ["ins-r8hr2upy"], ["skey-3glfot13"], False
    )
    assert SECRET_KEY not in repr(c) and SECRET_KEY not in repr(result)
