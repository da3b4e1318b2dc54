"""TC3-HMAC-SHA256: the published test vectors, and the official SDK's signatures as an oracle."""

from __future__ import annotations

import json
import random
import string
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from tencentcloud.common import credential
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.cvm.v20170312 import cvm_client, models

from app.providers.tencent import signing

TV_A3_BODY = b'{"InstanceIds": ["ins-r8hr2upy"], "KeyIds": ["skey-3glfot13"], "ForceStop": false}'
TV_A1_BODY = (
    b'{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}'
)


def sig_of(auth: str) -> str:
    return auth.rsplit("Signature=", 1)[1]


def test_tv_a1_documented_example_older_revision() -> None:
    assert signing.sha256_hex(TV_A1_BODY) == (
        "35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
    )
    auth = signing.authorization(
        secret_id="AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******",
        secret_key="Gu5t9xGARNpq86cd98joQYCN3*******",
        timestamp=1551113065,
        service="cvm",
        method="POST",
        query="",
        headers={
            "content-type": "application/json; charset=utf-8",
            "host": "cvm.tencentcloudapi.com",
        },
        body=TV_A1_BODY,
    )
    assert sig_of(auth) == "2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c"


def test_tv_a2_documented_example_signing_x_tc_action() -> None:
    auth = signing.authorization(
        secret_id="AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******",
        secret_key="Gu5t9xGARNpq86cd98joQYCN3*******",
        timestamp=1551113065,
        service="cvm",
        method="POST",
        query="",
        headers={
            "content-type": "application/json; charset=utf-8",
            "host": "cvm.tencentcloudapi.com",
            "x-tc-action": "DescribeInstances",
        },
        body=TV_A1_BODY,
        signed_headers=("content-type", "host", "x-tc-action"),
    )
    assert "SignedHeaders=content-type;host;x-tc-action," in auth
    assert sig_of(auth) == "be4f67d323c78ab9acb7395e43c0dbcf822a9cfac32fea2449a7bc7726b770a3"


@pytest.mark.parametrize(
    ("host", "signature"),
    [
        (
            "cvm.tencentcloudapi.com",
            "bf439dba514790a17416f99843b2e171fadf2e45864a96b0225284737b6863a8",
        ),
        (
            "cvm.intl.tencentcloudapi.com",
            "6f40a4d6308da572ab200e8ee557712ce4682a682e7fc2f67e8ccb66d57eb226",
        ),
        ("127.0.0.1:8080", "2de3c1f0ca850098ff01b8bf20990cd3c39a6c6e0c1a27fecf32faeb921d6087"),
    ],
)
def test_tv_a3_official_sdk_request(host: str, signature: str) -> None:
    auth = signing.authorization(
        secret_id="AKIDEXAMPLEEXAMPLEEXAMPLEEXAMPLE",
        secret_key="EXAMPLESECRETKEYEXAMPLESECRETKEY",
        timestamp=1700000000,
        service="cvm",
        method="POST",
        query="",
        headers={"content-type": "application/json", "host": host},
        body=TV_A3_BODY,
    )
    assert auth == (
        "TC3-HMAC-SHA256 Credential=AKIDEXAMPLEEXAMPLEEXAMPLEEXAMPLE/2023-11-14/cvm/tc3_request, "
        f"SignedHeaders=content-type;host, Signature={signature}"
    )


class _Capture(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str, dict[str, str], bytes]]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.seen.append(
            (self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        )
        payload = json.dumps(
            {"Response": {"RequestId": "captured", "TotalCount": 0, "InstanceSet": []}}
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload.encode())

    do_GET = do_POST = _answer

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def capture() -> Iterator[tuple[int, list[tuple[str, str, dict[str, str], bytes]]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    _Capture.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], _Capture.seen
    server.shutdown()
    server.server_close()


def _rand(rng: random.Random, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def test_signer_matches_the_official_sdk_on_random_requests(
    capture: tuple[int, list[tuple[str, str, dict[str, str], bytes]]],
) -> None:
    """The SDK signs; we re-sign what it sent with our code; the Authorization must agree."""
    port, seen = capture
    rng = random.Random(20261123)
    cases = 60
    for i in range(cases):
        secret_id = "AKID" + _rand(rng, 32)
        secret_key = _rand(rng, rng.randint(16, 40), string.printable.strip())
        method = "GET" if i % 3 == 0 else "POST"
        profile = ClientProfile(
            httpProfile=HttpProfile(endpoint=f"127.0.0.1:{port}", protocol="http", reqMethod=method)
        )
        client = cvm_client.CvmClient(
            credential.Credential(secret_id, secret_key), "ap-guangzhou", profile
        )
        if i % 2:
            req = models.AssociateInstancesKeyPairsRequest()
            req.InstanceIds = [
                f"ins-{_rand(rng, 8, string.ascii_lowercase)}" for _ in range(rng.randint(1, 5))
            ]
            req.KeyIds = [f"skey-{_rand(rng, 8, string.ascii_lowercase)}"]
            req.ForceStop = bool(rng.getrandbits(1))
            client.AssociateInstancesKeyPairs(req)
        else:
            req2 = models.DescribeInstancesRequest()
            value = "".join(
                rng.choice("未命名服务器 prod-é✓" + string.ascii_letters) for _ in range(8)
            )
            f = models.Filter()
            f.Name, f.Values = "instance-name", [value]
            req2.Filters, req2.Limit = [f], rng.randint(1, 100)
            client.DescribeInstances(req2)
        sdk_method, path, headers, body = seen[-1]
        ts = int(headers["x-tc-timestamp"])
        query = path.split("?", 1)[1] if "?" in path else ""
        ours = signing.authorization(
            secret_id=secret_id,
            secret_key=secret_key,
            timestamp=ts,
            service="cvm",
            method=sdk_method,
            query=query if sdk_method == "GET" else "",
            headers={"content-type": headers["content-type"], "host": headers["host"]},
            body=body,
        )
        assert ours == headers["authorization"], (i, sdk_method)
    assert len(seen) == cases


def test_our_client_sends_what_the_sdk_sends_header_for_header(
    capture: tuple[int, list[tuple[str, str, dict[str, str], bytes]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.providers.tencent.client import TencentClient

    port, seen = capture
    pinned = 1_700_000_000
    monkeypatch.setattr("tencentcloud.common.abstract_client.time.time", lambda: pinned)
    profile = ClientProfile(httpProfile=HttpProfile(endpoint=f"127.0.0.1:{port}", protocol="http"))
    sdk = cvm_client.CvmClient(
        credential.Credential("AKIDEXAMPLE", "EXAMPLESECRET", "STS-TOKEN"), "ap-guangzhou", profile
    )
    req = models.AssociateInstancesKeyPairsRequest()
    req.InstanceIds, req.KeyIds, req.ForceStop = ["ins-r8hr2upy"], ["skey-3glfot13"], False
    sdk.AssociateInstancesKeyPairs(req)

    ours = TencentClient(
        endpoint=f"http://127.0.0.1:{port}",
        secret_id="AKIDEXAMPLE",
        secret_key="EXAMPLESECRET",
        session_token="STS-TOKEN",
    )
    ours._http.auth._clock = lambda: pinned  # type: ignore[union-attr]
    ours.associate_instances_key_pairs("ap-guangzhou", ["ins-r8hr2upy"], ["skey-3glfot13"], False)
    ours.close()

    (_, _, theirs, their_body), (_, _, mine, my_body) = seen
    assert my_body == their_body
    for header in (
        "authorization",
        "x-tc-timestamp",
        "host",
        "content-type",
        "x-tc-action",
        "x-tc-version",
        "x-tc-region",
        "x-tc-token",
    ):
        assert mine[header] == theirs[header], header
