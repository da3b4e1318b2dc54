"""JD Cloud's official Python SDK, unchanged, against `keybind simulator` (the test oracle);
then keybind's own client against the same simulator, JDCLOUD2 and JDCLOUD3."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from jdcloud_sdk.core.config import Config
from jdcloud_sdk.core.credential import Credential
from jdcloud_sdk.core.logger import Logger
from jdcloud_sdk.services.vm.apis.AttachKeypairRequest import (
    AttachKeypairParameters,
    AttachKeypairRequest,
)
from jdcloud_sdk.services.vm.apis.DescribeInstancesRequest import (
    DescribeInstancesParameters,
    DescribeInstancesRequest,
)
from jdcloud_sdk.services.vm.apis.DetachKeypairRequest import (
    DetachKeypairParameters,
    DetachKeypairRequest,
)
from jdcloud_sdk.services.vm.client.VmClient import VmClient

from app.providers.jdcloud import signing
from app.providers.jdcloud.client import JDCloudClient
from tests.support.simulator import JD_ACCESS_KEY, JD_SECRET_KEY, Simulator, start_simulator

REGION = "cn-north-1"


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    s = start_simulator()
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def _fresh(sim: Simulator) -> None:
    sim._call("POST", "/_sim/reset", {"fleet": True})


def sdk(sim: Simulator, secret: str = JD_SECRET_KEY) -> VmClient:
    config = Config(endpoint=f"127.0.0.1:{sim.port}", scheme="http", timeout=10)
    return VmClient(Credential(JD_ACCESS_KEY, secret), config, Logger(0))


def attach(client: VmClient, ids: list[str], key: str = "ops-2026", auth: str = "no") -> Any:
    return client.send(AttachKeypairRequest(AttachKeypairParameters(REGION, key, ids, auth)))


def detach(client: VmClient, ids: list[str], key: str) -> Any:
    return client.send(DetachKeypairRequest(DetachKeypairParameters(REGION, key, ids)))


def describe(client: VmClient, **options: Any) -> Any:
    params = DescribeInstancesParameters(REGION)
    for name, value in options.items():
        getattr(params, "set" + name[0].upper() + name[1:])(value)
    return client.send(DescribeInstancesRequest(params))


def test_attach_then_describe_shows_the_key_name(sim: Simulator) -> None:
    client = sdk(sim)
    ids = ["i-abcdefgh12", "i-zzzzzzzz99"]
    resp = attach(client, ids)
    assert resp.error is None and len(resp.request_id) == 32
    assert resp.result == {"successInstanceId": ids, "failInstanceId": []}
    out = describe(client, filters=[{"name": "instanceId", "values": ids}])
    assert out.error is None and out.result["totalCount"] == 2
    for inst in out.result["instances"]:
        assert inst["keyNames"] == ["ops-2026"]
        assert (inst["status"], inst["osType"]) == ("stopped", "linux")


def test_one_key_per_instance_and_detach_frees_it(sim: Simulator) -> None:
    client = sdk(sim)
    assert attach(client, ["i-abcdefgh12"]).error is None
    again = attach(client, ["i-abcdefgh12"], key="other")
    assert (again.error.code, again.error.status) == (400, "FAILED_PRECONDITION")
    assert again.error.message == "Already attached key pair. instance id i-abcdefgh12"
    assert detach(client, ["i-abcdefgh12"], "ops-2026").result["successInstanceId"] == [
        "i-abcdefgh12"
    ]
    assert attach(client, ["i-abcdefgh12"], key="other").error is None
    assert sim.jd_instance("i-abcdefgh12")["keyNames"] == ["other"]


def test_mixed_batch_answers_per_instance(sim: Simulator) -> None:
    sim.put_jd(
        {
            "instances": [
                {"id": "i-windows001", "os": "windows"},
                {"id": "i-holding001", "key_names": ["old"]},
                {"id": "i-starting01", "status": "starting", "settles_after_s": 60},
                {"id": "i-missing001", "missing": True},
                {"id": "i-running001", "status": "running"},
            ]
        }
    )
    ids = ["i-windows001", "i-holding001", "i-starting01", "i-missing001", "i-running001"]
    resp = attach(sdk(sim), [*ids, "i-fine000001"])
    assert resp.error is None
    assert resp.result["successInstanceId"] == ["i-running001", "i-fine000001"]
    assert resp.result["failInstanceId"] == ids[:4]


@pytest.mark.parametrize(
    ("spec", "http", "status", "message"),
    [
        (
            {"os": "windows"},
            400,
            "FAILED_PRECONDITION",
            "Windows OS doesn't support attach keypair.",
        ),
        ({"status": "error"}, 400, "FAILED_PRECONDITION", "Invalid instance status error"),
        ({"missing": True}, 404, "NOT_FOUND", "Instance 'i-abcdefgh12' not found."),
        ({"faults": [{"status": "INTERNAL"}]}, 500, "INTERNAL", "Internal server error"),
        ({"faults": [{"status": "UNKNOWN"}]}, 500, "UNKNOWN", "Unknown server error"),
    ],
)
def test_documented_errors_with_their_http_status(
    sim: Simulator, spec: dict[str, Any], http: int, status: str, message: str
) -> None:
    sim.put_jd({"instances": [{"id": "i-abcdefgh12", **spec}]})
    resp = attach(sdk(sim), ["i-abcdefgh12"])
    assert (resp.error.code, resp.error.status, resp.error.message) == (http, status, message)
    assert resp.request_id


def test_unknown_key_name_in_a_strict_fleet(sim: Simulator) -> None:
    sim.put_jd({"strict": True, "key_names": ["ops-2026"], "instances": [{"id": "i-abcdefgh12"}]})
    resp = attach(sdk(sim), ["i-abcdefgh12"], key="nope")
    assert (resp.error.code, resp.error.message) == (404, "Keypair 'nope' not found")
    resp = attach(sdk(sim), ["i-zzzzzzzz99"])
    assert (resp.error.code, resp.error.status) == (404, "NOT_FOUND")


def test_wrong_secret_is_unauthenticated(sim: Simulator) -> None:
    resp = attach(sdk(sim, secret="wrong"), ["i-abcdefgh12"])
    assert (resp.error.code, resp.error.status) == (401, "UNAUTHENTICATED")


def test_describe_pages_one_based_with_tags(sim: Simulator) -> None:
    sim.put_jd(
        {
            "instances": [
                {"id": f"i-tagged{n:04d}", "tags": {"env": "prod" if n % 2 else "dev"}}
                for n in range(25)
            ]
        }
    )
    client = sdk(sim)
    seen: list[str] = []
    for page in (1, 2):
        out = describe(
            client, pageNumber=page, pageSize=10, tags=[{"key": "env", "values": ["prod"]}]
        )
        assert out.error is None and out.result["totalCount"] == 12
        seen += [i["instanceId"] for i in out.result["instances"]]
    assert len(seen) == 12 and len(set(seen)) == 12
    last = describe(client, pageNumber=3, pageSize=10, tags=[{"key": "env", "values": ["prod"]}])
    assert last.error is None and last.result == {"instances": [], "totalCount": 12}


@pytest.mark.parametrize("size", [9, 101])
def test_page_size_out_of_range(sim: Simulator, size: int) -> None:
    out = describe(sdk(sim), pageSize=size)
    assert (out.error.code, out.error.status, out.error.message) == (
        400,
        "OUT_OF_RANGE",
        "PageSize out of range",
    )


def test_unknown_region_refused(sim: Simulator) -> None:
    client = VmClient(
        Credential(JD_ACCESS_KEY, JD_SECRET_KEY),
        Config(endpoint=f"127.0.0.1:{sim.port}", scheme="http"),
        Logger(0),
    )
    req = AttachKeypairRequest(AttachKeypairParameters("cn-moon-1", "k", ["i-abcdefgh12"], "no"))
    resp = client.send(req)
    assert (resp.error.code, resp.error.status) == (400, "INVALID_ARGUMENT")


def ours(sim: Simulator, version: signing.Version) -> JDCloudClient:
    return JDCloudClient(
        endpoint=sim.url, access_key=JD_ACCESS_KEY, secret_key=JD_SECRET_KEY, version=version
    )


@pytest.mark.parametrize("version", [signing.JDCLOUD2, signing.JDCLOUD3])
def test_our_client_signs_date_and_nonce_and_is_accepted(
    sim: Simulator, version: signing.Version
) -> None:
    client = ours(sim, version)
    try:
        sim.put_jd({"instances": [{"id": "i-holding001", "key_names": ["old"]}]})
        out = client.attach_keypair(REGION, "ops-2026", ["i-holding001", "i-fine000001"], "no")
        assert out.call.ok and out.call.http_status == 200 and out.call.request_id
        assert (out.succeeded, out.failed) == (("i-fine000001",), ("i-holding001",))
        page = client.describe_instances(REGION, instance_ids=["i-holding001", "i-fine000001"])
        assert page.call.ok and page.total == 2
        assert {v.instance_id: v.key_names for v in page.instances} == {
            "i-holding001": ("old",),
            "i-fine000001": ("ops-2026",),
        }
        refused = client.attach_keypair(REGION, "ops-2026", ["i-holding001"], "no")
        assert refused.call.error is not None
        assert refused.call.error.code == "FAILED_PRECONDITION"
        assert refused.call.http_status == 400 and refused.call.request_id
        freed = client.detach_keypair(REGION, "old", ["i-holding001"])
        assert freed.succeeded == ("i-holding001",)
    finally:
        client.close()


def test_raw_colon_in_the_canonical_path_is_accepted(sim: Simulator) -> None:
    """The Go SDK signs `:attach` unencoded; the verifier accepts that form too."""
    path = f"/v1/regions/{REGION}/keypairs/ops-2026:attach"
    body = b'{"instanceIds": ["i-abcdefgh12"], "passWordAuth": "yes"}'
    date = signing.jdcloud_date(time.time())
    host = f"127.0.0.1:{sim.port}"
    headers = {"content-type": "application/json", "host": host, "x-jdcloud-date": date}
    names = sorted(headers)
    canonical = signing.canonical_request(
        method="POST",
        uri=path,  # raw ':' as the Go signer leaves it
        query="",
        headers=headers,
        signed_headers=names,
        body_hash=signing.sha256_hex(body),
    )
    scope = signing.credential_scope(signing.JDCLOUD2, date[:8], REGION, "vm")
    to_sign = signing.string_to_sign(
        signing.JDCLOUD2, jd_date=date, scope=scope, canonical=canonical
    )
    sig = signing.signature(
        signing.JDCLOUD2,
        secret_key=JD_SECRET_KEY,
        date8=date[:8],
        region=REGION,
        service="vm",
        to_sign=to_sign,
    )
    auth = (
        f"JDCLOUD2-HMAC-SHA256 Credential={JD_ACCESS_KEY}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={sig}"
    )
    r = httpx.post(
        sim.url + path,
        content=body,
        headers={"Content-Type": "application/json", "x-jdcloud-date": date, "Authorization": auth},
        trust_env=False,
    )
    assert r.status_code == 200, r.text
    assert r.json()["result"]["successInstanceId"] == ["i-abcdefgh12"]
    tampered = auth[:-1] + ("0" if auth[-1] != "0" else "1")
    r = httpx.post(
        sim.url + path,
        content=body,
        headers={
            "Content-Type": "application/json",
            "x-jdcloud-date": date,
            "Authorization": tampered,
        },
        trust_env=False,
    )
    assert r.status_code == 401 and r.json()["error"]["status"] == "UNAUTHENTICATED"


def test_fleet_file_jd_section(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.json"
    fleet.write_text(
        json.dumps(
            {
                "instances": [{"id": "ins-r8hr2upy", "state": "RUNNING"}],
                "jdcloud": {
                    "strict": True,
                    "key_names": ["ops-2026"],
                    "instances": [
                        {"id": "i-abcdefgh12", "status": "running", "tags": {"env": "prod"}},
                        {"id": "i-windows001", "os": "windows", "region": "cn-east-2"},
                    ],
                },
            }
        )
    )
    s = start_simulator(fleet=fleet)
    try:
        client = sdk(s)
        assert attach(client, ["i-abcdefgh12"]).error is None
        assert attach(client, ["i-zzzzzzzz99"]).error.status == "NOT_FOUND"  # strict
        assert attach(client, ["i-abcdefgh12"], key="other").error.code == 404
        # Found only in its own region.
        assert attach(client, ["i-windows001"]).error.message.startswith("Instance 'i-windows")
        out = describe(client)
        assert [i["instanceId"] for i in out.result["instances"]] == ["i-abcdefgh12"]
        assert out.result["instances"][0]["tags"] == [{"key": "env", "value": "prod"}]
    finally:
        s.stop()
