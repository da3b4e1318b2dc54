"""The JD client's contract on odd answers (httpx.MockTransport), and the error table."""

from __future__ import annotations

import json

import httpx
import pytest

from app.providers.base import ErrorClass, ProviderConfigError
from app.providers.jdcloud.client import JDCloudClient, query_pairs
from app.providers.jdcloud.errors import TABLE, classify


def client(handler: httpx.MockTransport) -> JDCloudClient:
    return JDCloudClient(
        endpoint="https://vm.jdcloud-api.com", access_key="ak", secret_key="sk", transport=handler
    )


def answer(status: int, body: object, headers: dict[str, str] | None = None) -> httpx.Response:
    text = body if isinstance(body, str) else json.dumps(body)
    return httpx.Response(status, text=text, headers=headers or {})


def test_attach_sends_the_documented_request_and_reads_both_lists() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        result = {"successInstanceId": ["i-abcdefgh12"], "failInstanceId": ["i-zzzzzzzz99"]}
        return answer(200, {"requestId": "r1", "result": result})

    out = client(httpx.MockTransport(handle)).attach_keypair(
        "cn-north-1", "my-key", ["i-abcdefgh12", "i-zzzzzzzz99"], "yes"
    )
    assert (out.succeeded, out.failed) == (("i-abcdefgh12",), ("i-zzzzzzzz99",))
    assert out.call.ok and out.call.request_id == "r1" and out.call.http_status == 200
    req = seen[0]
    assert req.url.raw_path == b"/v1/regions/cn-north-1/keypairs/my-key:attach"
    assert json.loads(req.content) == {
        "instanceIds": ["i-abcdefgh12", "i-zzzzzzzz99"],
        "passWordAuth": "yes",
    }
    auth = req.headers["Authorization"]
    assert auth.startswith("JDCLOUD3-HMAC-SHA256 Credential=ak/")
    assert "/cn-north-1/vm/jdcloud3_request" in auth
    assert "SignedHeaders=content-type;host;x-jdcloud-date;x-jdcloud-nonce" in auth


@pytest.mark.parametrize(
    ("status", "body", "headers", "code", "cls", "request_id"),
    [
        (
            400,
            {
                "requestId": "r2",
                "error": {
                    "code": 400,
                    "status": "FAILED_PRECONDITION",
                    "message": "Invalid instance status stopping",
                },
            },
            {},
            "FAILED_PRECONDITION",
            ErrorClass.WAIT_STATE,
            "r2",
        ),
        (
            400,
            {
                "requestId": "r3",
                "error": {
                    "code": 400,
                    "status": "FAILED_PRECONDITION",
                    "message": "Windows OS doesn't support attach keypair.",
                },
            },
            {},
            "FAILED_PRECONDITION",
            ErrorClass.TERMINAL,
            "r3",
        ),
        (
            429,
            {"error": {"code": 429, "status": "RATE_LIMIT_EXCEEDED", "message": "slow down"}},
            {"x-jdcloud-request-id": "hdr"},
            "RATE_LIMIT_EXCEEDED",
            ErrorClass.RETRY,
            "hdr",
        ),
        (
            500,
            {"requestId": "r4", "error": {"status": "UNKNOWN", "message": "x"}},
            {},
            "UNKNOWN",
            ErrorClass.RETRY,
            "r4",
        ),
        (502, "<html>bad gateway</html>", {}, "keybind.HttpStatus", ErrorClass.RETRY, None),
        (200, "not json", {}, "keybind.BadResponse", ErrorClass.RETRY, None),
        (
            418,
            {"requestId": "r5", "error": {"status": "TEAPOT", "message": "?"}},
            {},
            "TEAPOT",
            ErrorClass.TERMINAL,
            "r5",
        ),
        (
            503,
            {"requestId": "r6", "error": {"status": "SOMETHING_NEW", "message": "?"}},
            {},
            "SOMETHING_NEW",
            ErrorClass.RETRY,
            "r6",
        ),
    ],
)
def test_errors_are_classified_with_message_and_request_id_kept(
    status: int,
    body: object,
    headers: dict[str, str],
    code: str,
    cls: ErrorClass,
    request_id: str | None,
) -> None:
    transport = httpx.MockTransport(lambda _: answer(status, body, headers))
    out = client(transport).detach_keypair("cn-north-1", "k", ["i-abcdefgh12"])
    assert out.call.error is not None
    assert (out.call.error.code, out.call.error.error_class) == (code, cls)
    assert out.call.request_id == request_id and out.call.http_status == status
    if isinstance(body, dict):
        assert out.call.error.message == body["error"]["message"]


def test_network_failures_never_raise() -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    for handler, code in ((timeout, "keybind.Timeout"), (refused, "keybind.ConnectionError")):
        out = client(httpx.MockTransport(handler)).attach_keypair("cn-north-1", "k", ["i-a"], "no")
        assert out.call.error is not None and out.call.error.code == code
        assert out.call.error.error_class is ErrorClass.RETRY


def test_describe_pages_from_one_until_total_count() -> None:
    pages: list[dict[str, str]] = []

    def handle(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        pages.append(params)
        n = int(params["pageNumber"])
        instances = [
            {
                "instanceId": f"i-{n:02d}{k:08d}",
                "status": "running",
                "osType": "linux",
                "keyNames": ["k"],
                "tags": [{"key": "env", "value": "prod"}],
            }
            for k in range(10 if n < 3 else 5)
        ]
        return answer(
            200, {"requestId": f"p{n}", "result": {"instances": instances, "totalCount": 25}}
        )

    calls, views = client(httpx.MockTransport(handle)).describe_all(
        "cn-north-1", tags={"env": ["prod"]}, page_size=10
    )
    assert [p["pageNumber"] for p in pages] == ["1", "2", "3"]
    assert all(p["tags.1.key"] == "env" and p["tags.1.values.1"] == "prod" for p in pages)
    assert len(views) == 25 and [c.request_id for c in calls] == ["p1", "p2", "p3"]
    assert views[0].key_names == ("k",) and views[0].tags == {"env": "prod"}


def test_query_flattening_matches_the_sdk() -> None:
    assert query_pairs(
        page_number=1,
        page_size=100,
        filters={"instanceId": ["i-abcdefgh12", "i-zzzzzzzz99"], "status": ["stopped"]},
    ) == [
        ("pageNumber", "1"),
        ("pageSize", "100"),
        ("filters.1.name", "instanceId"),
        ("filters.1.values.1", "i-abcdefgh12"),
        ("filters.1.values.2", "i-zzzzzzzz99"),
        ("filters.2.name", "status"),
        ("filters.2.values.1", "stopped"),
    ]


@pytest.mark.parametrize("size", [9, 101])
def test_page_size_outside_ten_to_a_hundred_is_a_programming_error(size: int) -> None:
    transport = httpx.MockTransport(lambda _: answer(200, {}))
    with pytest.raises(ValueError, match="page_size"):
        client(transport).describe_instances("cn-north-1", page_size=size)


def test_bad_endpoint_names_the_variable_and_repr_hides_secrets() -> None:
    with pytest.raises(ProviderConfigError, match="KEYBIND_JDCLOUD_ENDPOINT"):
        JDCloudClient(endpoint="vm.jdcloud-api.com", access_key="a", secret_key="s")
    c = JDCloudClient(access_key="AKVISIBLE", secret_key="TOPSECRET")
    assert "TOPSECRET" not in repr(c) and "AKVISIBLE" not in repr(c)
    c.close()


def test_every_table_entry_classifies_as_listed() -> None:
    for status, (cls, _) in TABLE.items():
        if status != "FAILED_PRECONDITION":
            assert classify(status) is cls, status
    assert classify("FAILED_PRECONDITION", "Already attached key pair. instance id i-x") is (
        ErrorClass.TERMINAL
    )
    assert classify("FAILED_PRECONDITION", "Invalid instance status error") is ErrorClass.TERMINAL
    assert classify("FAILED_PRECONDITION", "Invalid instance status rebooting") is (
        ErrorClass.WAIT_STATE
    )
