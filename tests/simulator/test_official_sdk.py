"""Tencent's official Python SDK, unchanged, against `keybind simulator` (the test oracle)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.cvm.v20170312 import cvm_client, cvm_client_async, models

from app.providers.tencent import signing
from tests.support.simulator import SECRET_ID, SECRET_KEY, Simulator, start_simulator

REGION = "ap-guangzhou"


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    s = start_simulator()
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def _fresh(sim: Simulator) -> None:
    sim.reset()
    sim.configure(rate_limits={"AssociateInstancesKeyPairs": 10}, op_delay_s=0)


def sdk(sim: Simulator, *, secret: str = SECRET_KEY, method: str = "POST") -> cvm_client.CvmClient:
    hp = HttpProfile(endpoint=f"127.0.0.1:{sim.port}", protocol="http", reqMethod=method)
    cp = ClientProfile(httpProfile=hp, signMethod="TC3-HMAC-SHA256")
    return cvm_client.CvmClient(credential.Credential(SECRET_ID, secret), REGION, cp)


def associate(
    client: cvm_client.CvmClient, ids: list[str], key: str = "skey-3glfot13", force: bool = False
) -> str:
    req = models.AssociateInstancesKeyPairsRequest()
    req.InstanceIds, req.KeyIds, req.ForceStop = ids, [key], force
    return str(client.AssociateInstancesKeyPairs(req).RequestId)


def disassociate(client: cvm_client.CvmClient, ids: list[str]) -> str:
    req = models.DisassociateInstancesKeyPairsRequest()
    req.InstanceIds, req.KeyIds = ids, ["skey-3glfot13"]
    return str(client.DisassociateInstancesKeyPairs(req).RequestId)


def describe(client: cvm_client.CvmClient, **fields: object) -> models.DescribeInstancesResponse:
    req = models.DescribeInstancesRequest()
    req.from_json_string(json.dumps(fields))
    return client.DescribeInstances(req)


def code_of(fn: object) -> str:
    with pytest.raises(TencentCloudSDKException) as info:
        fn()  # type: ignore[operator]
    return str(info.value.get_code())


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_associate_then_describe_shows_the_key(sim: Simulator, method: str) -> None:
    client = sdk(sim, method=method)
    request_id = associate(client, ["ins-r8hr2upy", "ins-3e56fg78"], "skey-4e5ty7i8")
    out = describe(client, InstanceIds=["ins-r8hr2upy", "ins-3e56fg78"])
    assert out.TotalCount == 2
    for inst in out.InstanceSet:
        assert inst.LoginSettings.KeyIds == ["skey-4e5ty7i8"]
        assert inst.LatestOperation == "AssociateInstancesKeyPairs"
        assert inst.LatestOperationState == "SUCCESS"
        assert inst.LatestOperationRequestId == request_id
        assert inst.InstanceState == "STOPPED"


def test_operation_is_operating_until_its_delay_passes(sim: Simulator) -> None:
    sim.configure(op_delay_s=0.5)
    client = sdk(sim)
    associate(client, ["ins-0pdelay1"])
    first = describe(client, InstanceIds=["ins-0pdelay1"]).InstanceSet[0]
    assert first.LatestOperationState == "OPERATING" and first.LoginSettings.KeyIds == []
    # The same task again is a mutex; a different operation is "in progress".
    assert code_of(lambda: associate(client, ["ins-0pdelay1"])) == "MutexOperation.TaskRunning"
    assert code_of(lambda: disassociate(client, ["ins-0pdelay1"])) == (
        "OperationDenied.InstanceOperationInProgress"
    )
    time.sleep(0.6)
    later = describe(client, InstanceIds=["ins-0pdelay1"]).InstanceSet[0]
    assert later.LatestOperationState == "SUCCESS" and later.LoginSettings.KeyIds == [
        "skey-3glfot13"
    ]


def test_describe_key_pairs_lists_associated_instances(sim: Simulator) -> None:
    client = sdk(sim)
    associate(client, ["ins-kp000001"], "skey-kp000001")
    req = models.DescribeKeyPairsRequest()
    req.KeyIds = ["skey-kp000001"]
    out = client.DescribeKeyPairs(req)
    assert out.KeyPairSet[0].KeyId == "skey-kp000001"
    assert out.KeyPairSet[0].AssociatedInstanceIds == ["ins-kp000001"]


def test_tag_filter_with_paging(sim: Simulator) -> None:
    sim.put_instances(
        [{"id": f"ins-tag{i:05d}", "tags": {"env": "prod" if i % 2 else "dev"}} for i in range(25)]
    )
    client = sdk(sim)
    page1 = describe(client, Filters=[{"Name": "tag:env", "Values": ["prod"]}], Offset=0, Limit=10)
    page2 = describe(client, Filters=[{"Name": "tag:env", "Values": ["prod"]}], Offset=10, Limit=10)
    assert page1.TotalCount == 12 and len(page1.InstanceSet) == 10 and len(page2.InstanceSet) == 2
    ids = {i.InstanceId for i in page1.InstanceSet + page2.InstanceSet}
    assert ids == {f"ins-tag{i:05d}" for i in range(25) if i % 2}


def test_documented_refusals_surface_as_sdk_exceptions(sim: Simulator) -> None:
    sim.put_instances(
        [
            {"id": "ins-windows1", "os": "windows"},
            {"id": "ins-running1", "state": "RUNNING"},
            {"id": "ins-starting", "state": "STARTING", "settles_after_s": 60},
            {"id": "ins-gone0001", "missing": True},
            {"id": "ins-busy0001", "faults": [{"code": "MutexOperation.TaskRunning", "times": 1}]},
        ]
    )
    client = sdk(sim)
    assert (
        code_of(lambda: associate(client, ["ins-windows1"]))
        == "UnsupportedOperation.InstanceOsWindows"
    )
    assert (
        code_of(lambda: associate(client, ["ins-running1"]))
        == "UnsupportedOperation.InstanceStateRunning"
    )
    assert (
        code_of(lambda: associate(client, ["ins-starting"]))
        == "UnsupportedOperation.InstanceStateStarting"
    )
    assert code_of(lambda: associate(client, ["ins-gone0001"])) == "InvalidInstanceId.NotFound"
    assert code_of(lambda: associate(client, ["ins-1122"])) == "InvalidInstanceId.Malformed"
    assert (
        code_of(lambda: associate(client, ["ins-r8hr2upy"], "skey-1122"))
        == "InvalidKeyPairId.Malformed"
    )
    assert code_of(lambda: associate(client, ["ins-busy0001"])) == "MutexOperation.TaskRunning"
    associate(client, ["ins-busy0001"])  # the scripted fault was used up: now it binds
    # All-or-nothing: one refused instance fails the batch and binds nobody.
    assert code_of(lambda: associate(client, ["ins-batchok1", "ins-windows1"])) == (
        "UnsupportedOperation.InstanceOsWindows"
    )
    assert describe(client, InstanceIds=["ins-batchok1"]).InstanceSet[0].LoginSettings.KeyIds == []


def test_force_stop_binds_a_running_instance_and_restarts_it(sim: Simulator) -> None:
    sim.put_instances([{"id": "ins-running2", "state": "RUNNING"}])
    client = sdk(sim)
    associate(client, ["ins-running2"], force=True)
    inst = describe(client, InstanceIds=["ins-running2"]).InstanceSet[0]
    assert inst.InstanceState == "RUNNING" and inst.LoginSettings.KeyIds == ["skey-3glfot13"]


def test_wrong_secret_and_old_timestamp_are_refused(sim: Simulator) -> None:
    assert code_of(lambda: associate(sdk(sim, secret="not-the-secret"), ["ins-r8hr2upy"])) == (
        "AuthFailure.SignatureFailure"
    )
    old = int(time.time()) - 600
    body = b'{"InstanceIds": ["ins-r8hr2upy"], "KeyIds": ["skey-3glfot13"]}'
    host = f"127.0.0.1:{sim.port}"
    headers = {
        "Content-Type": "application/json",
        "Host": host,
        "X-TC-Action": "AssociateInstancesKeyPairs",
        "X-TC-Version": "2017-03-12",
        "X-TC-Region": REGION,
        "X-TC-Timestamp": str(old),
        "Authorization": signing.authorization(
            secret_id=SECRET_ID,
            secret_key=SECRET_KEY,
            timestamp=old,
            service="cvm",
            method="POST",
            query="",
            headers={"content-type": "application/json", "host": host},
            body=body,
        ),
    }
    r = httpx.post(sim.url + "/", content=body, headers=headers, trust_env=False)
    assert r.headers["content-type"] == "application/json"
    assert r.json()["Response"]["Error"]["Code"] == "AuthFailure.SignatureExpire"


def test_the_async_client_works_unchanged(sim: Simulator) -> None:
    hp = HttpProfile(endpoint=f"127.0.0.1:{sim.port}", protocol="http")
    cp = ClientProfile(httpProfile=hp, signMethod="TC3-HMAC-SHA256")

    async def run() -> str:
        client = cvm_client_async.CvmClient(
            credential.Credential(SECRET_ID, SECRET_KEY), REGION, cp
        )
        req = models.AssociateInstancesKeyPairsRequest()
        req.InstanceIds, req.KeyIds = ["ins-async001"], ["skey-3glfot13"]
        resp = await client.AssociateInstancesKeyPairs(req)
        return str(resp.RequestId)

    assert asyncio.run(run())
    assert sim.instance("ins-async001")["LoginSettings"]["KeyIds"] == ["skey-3glfot13"]


def test_ten_per_second_window_refuses_the_rest(sim: Simulator) -> None:
    client_ids = [f"ins-burst{i:03d}" for i in range(15)]

    def one(iid: str) -> str:
        try:
            associate(sdk(sim), [iid])
            return "ok"
        except TencentCloudSDKException as exc:
            return str(exc.get_code())

    with ThreadPoolExecutor(15) as pool:
        codes = list(pool.map(one, client_ids))
    assert codes.count("ok") == 10 and codes.count("RequestLimitExceeded") == 5
    stats = sim.stats("AssociateInstancesKeyPairs")
    assert stats["accepted"] == 10 and stats["throttled"] == 5


def test_the_async_client_describes_instances_and_key_pairs(sim: Simulator) -> None:
    sim.put_instances([{"id": "ins-asyncds1", "tags": {"team": "ops"}}])
    associate(sdk(sim), ["ins-asyncds1"], "skey-async001")
    hp = HttpProfile(endpoint=f"127.0.0.1:{sim.port}", protocol="http")
    cp = ClientProfile(httpProfile=hp, signMethod="TC3-HMAC-SHA256")

    async def run() -> tuple[models.DescribeInstancesResponse, models.DescribeKeyPairsResponse]:
        client = cvm_client_async.CvmClient(
            credential.Credential(SECRET_ID, SECRET_KEY), REGION, cp
        )
        di = models.DescribeInstancesRequest()
        di.Filters = [models.Filter()]
        di.Filters[0].Name, di.Filters[0].Values = "tag:team", ["ops"]
        dk = models.DescribeKeyPairsRequest()
        dk.KeyIds = ["skey-async001"]
        return await client.DescribeInstances(di), await client.DescribeKeyPairs(dk)

    instances, pairs = asyncio.run(run())
    assert [i.InstanceId for i in instances.InstanceSet] == ["ins-asyncds1"]
    assert instances.InstanceSet[0].LoginSettings.KeyIds == ["skey-async001"]
    assert pairs.KeyPairSet[0].AssociatedInstanceIds == ["ins-asyncds1"]


def test_force_stop_goes_through_stopping_and_comes_back_running(sim: Simulator) -> None:
    sim.configure(op_delay_s=0.6)
    sim.put_instances([{"id": "ins-fstimel1", "state": "RUNNING"}])
    client = sdk(sim)
    request_id = associate(client, ["ins-fstimel1"], force=True)
    during = describe(client, InstanceIds=["ins-fstimel1"]).InstanceSet[0]
    assert during.InstanceState == "STOPPING" and during.LatestOperationState == "OPERATING"
    assert during.LoginSettings.KeyIds == []
    time.sleep(0.8)
    after = describe(client, InstanceIds=["ins-fstimel1"]).InstanceSet[0]
    assert after.InstanceState == "RUNNING" and after.LatestOperationState == "SUCCESS"
    assert after.LoginSettings.KeyIds == ["skey-3glfot13"]
    assert after.LatestOperationRequestId == request_id


def test_a_failed_operation_shows_failed_with_its_message(sim: Simulator) -> None:
    sim.put_instances(
        [{"id": "ins-opfail01", "failing_operations": {"times": 1, "message": "agent down"}}]
    )
    client = sdk(sim)
    associate(client, ["ins-opfail01"])
    inst = describe(client, InstanceIds=["ins-opfail01"]).InstanceSet[0]
    assert inst.LatestOperationState == "FAILED" and inst.LatestOperationErrorMsg == "agent down"
    assert inst.LoginSettings.KeyIds == []


def test_transitional_states_move_on_by_themselves(sim: Simulator) -> None:
    sim.put_instances([{"id": "ins-settle01", "state": "STOPPING", "settles_after_s": 0.3}])
    client = sdk(sim)
    assert code_of(lambda: associate(client, ["ins-settle01"])) == (
        "UnsupportedOperation.InstanceStateStopping"
    )
    time.sleep(0.4)
    associate(client, ["ins-settle01"])
    assert describe(client, InstanceIds=["ins-settle01"]).InstanceSet[0].InstanceState == "STOPPED"


def test_sts_token_is_required_when_configured(sim: Simulator) -> None:
    sim.configure(
        credentials={"AKIDstsTEMPORARY0001": "sts-secret"},
        tokens={"AKIDstsTEMPORARY0001": "sts-token-1"},
    )
    hp = HttpProfile(endpoint=f"127.0.0.1:{sim.port}", protocol="http")
    cp = ClientProfile(httpProfile=hp, signMethod="TC3-HMAC-SHA256")

    def client(token: str | None) -> cvm_client.CvmClient:
        cred = credential.Credential("AKIDstsTEMPORARY0001", "sts-secret", token)
        return cvm_client.CvmClient(cred, REGION, cp)

    assert associate(client("sts-token-1"), ["ins-ststok01"])
    assert code_of(lambda: associate(client(None), ["ins-ststok02"])) == "AuthFailure.TokenFailure"
    assert code_of(lambda: associate(client("stale"), ["ins-ststok03"])) == (
        "AuthFailure.TokenFailure"
    )


def test_each_account_has_its_own_rate_window(sim: Simulator) -> None:
    sim.configure(credentials={"AKIDsecondACCOUNT0001": "second-secret"})
    hp = HttpProfile(endpoint=f"127.0.0.1:{sim.port}", protocol="http")
    cp = ClientProfile(httpProfile=hp, signMethod="TC3-HMAC-SHA256")
    second = credential.Credential("AKIDsecondACCOUNT0001", "second-secret")

    def one(arg: tuple[int, str]) -> str:
        n, iid = arg
        client = sdk(sim) if n % 2 else cvm_client.CvmClient(second, REGION, cp)
        try:
            associate(client, [iid])
            return "ok"
        except TencentCloudSDKException as exc:
            return str(exc.get_code())

    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(one, enumerate(f"ins-acct{i:04d}" for i in range(20))))
    # Ten per second per account: both accounts' ten go through in the same second.
    assert codes.count("ok") == 20, codes
