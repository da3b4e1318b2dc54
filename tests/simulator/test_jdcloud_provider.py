"""The JD provider against the simulator: per-instance results from one call, whole-call
refusals split into per-instance reasons, replace, verify, and the limiter's NoSlot."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.providers.base import BindRequest, InstanceStatus, NoSlot, VerifyRequest
from app.providers.jdcloud.client import JDCloudClient
from app.providers.jdcloud.provider import JDCloudProvider
from tests.support.simulator import JD_ACCESS_KEY, JD_SECRET_KEY, Simulator, start_simulator

REGION = "cn-north-1"
KEY = "ops-2026"


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    s = start_simulator()
    yield s
    s.stop()


@pytest.fixture
def provider(sim: Simulator) -> Iterator[JDCloudProvider]:
    sim._call("POST", "/_sim/reset", {"fleet": True})
    p = JDCloudProvider(
        JDCloudClient(endpoint=sim.url, access_key=JD_ACCESS_KEY, secret_key=JD_SECRET_KEY)
    )
    yield p
    p.close()


class Slots:
    """A pace that grants `n` slots, then refuses, recording what was asked for."""

    def __init__(self, n: int = 1000) -> None:
        self.left = n
        self.asked: list[str] = []

    def __call__(self, action: str) -> None:
        self.asked.append(action)
        if self.left <= 0:
            raise NoSlot(action)
        self.left -= 1


def bind(ids: list[str], *, replace: bool = False) -> BindRequest:
    options = {"password_auth": "no", "replace": replace}
    return BindRequest(REGION, tuple(ids), (KEY,), options=options)


def test_partial_answer_gives_each_instance_its_reason(
    provider: JDCloudProvider, sim: Simulator
) -> None:
    sim.put_jd(
        {
            "instances": [
                {"id": "i-holding001", "key_names": ["old"]},
                {"id": "i-windows001", "os": "windows"},
                {"id": "i-starting01", "status": "starting", "settles_after_s": 60},
                {"id": "i-missing001", "missing": True},
            ]
        }
    )
    ids = ["i-holding001", "i-windows001", "i-starting01", "i-missing001", "i-fine000001"]
    pace = Slots()
    out = provider.bind(bind(ids), pace)

    assert pace.asked == ["attachKeypair", "describeInstances"]
    attach = out.calls[0]
    assert (attach.action, attach.http_status, attach.error) == ("attachKeypair", 200, None)
    assert set(attach.failed_instances) == set(ids[:4])
    r = out.results
    assert r["i-fine000001"].status is InstanceStatus.ACCEPTED
    assert r["i-fine000001"].request_id == attach.request_id
    held = r["i-holding001"].error
    assert held is not None and held.code == "FAILED_PRECONDITION"
    assert "replace=true" in held.message and not held.error_class.retryable
    assert r["i-windows001"].error is not None
    assert r["i-windows001"].error.message == "Windows OS doesn't support attach keypair."
    starting = r["i-starting01"].error
    assert starting is not None and starting.message == "Invalid instance status starting"
    assert starting.error_class.retryable  # a transitional status: wait for it to settle
    missing = r["i-missing001"].error
    assert missing is not None and (missing.code, missing.message) == (
        "NOT_FOUND",
        "Instance 'i-missing001' not found.",
    )
    assert all(r[i].status is InstanceStatus.FAILED for i in ids[:4])


def test_whole_call_refusal_of_a_batch_is_split_per_instance(
    provider: JDCloudProvider, sim: Simulator
) -> None:
    # Every instance fails, so the simulator answers 400 for the first; the others still get
    # their own reasons.
    sim.put_jd(
        {
            "instances": [
                {"id": "i-windows001", "os": "windows"},
                {"id": "i-holding001", "key_names": ["old"]},
            ]
        }
    )
    out = provider.bind(bind(["i-windows001", "i-holding001"]), Slots())
    assert out.calls[0].http_status == 400
    assert out.results["i-windows001"].error is not None
    assert out.results["i-windows001"].error.message.startswith("Windows OS")
    assert out.results["i-holding001"].error is not None
    assert out.results["i-holding001"].error.message.startswith("Already attached")


def test_one_instance_already_attached_says_use_replace(
    provider: JDCloudProvider, sim: Simulator
) -> None:
    sim.put_jd({"instances": [{"id": "i-holding001", "key_names": ["old"]}]})
    out = provider.bind(bind(["i-holding001"]), Slots())
    error = out.results["i-holding001"].error
    assert error is not None and error.code == "FAILED_PRECONDITION"
    assert error.message.startswith("Already attached key pair. instance id i-holding001")
    assert "replace=true" in error.message and not error.error_class.retryable
    assert [c.action for c in out.calls] == ["attachKeypair"]


def test_replace_detaches_then_attaches_and_notes_the_old_key(
    provider: JDCloudProvider, sim: Simulator
) -> None:
    sim.put_jd(
        {
            "instances": [
                {"id": "i-holding001", "key_names": ["old"]},
                {"id": "i-holding002", "key_names": ["older"]},
                {"id": "i-hasnewkey1", "key_names": [KEY]},
            ]
        }
    )
    ids = ["i-holding001", "i-holding002", "i-hasnewkey1", "i-fine000001"]
    pace = Slots()
    out = provider.bind(bind(ids, replace=True), pace)
    assert pace.asked == ["describeInstances", "detachKeypair", "detachKeypair", "attachKeypair"]
    r = out.results
    assert all(r[i].status is InstanceStatus.ACCEPTED for i in ids)
    assert r["i-holding001"].notes == {"previous_key": "old"}
    assert r["i-holding002"].notes == {"previous_key": "older"}
    assert r["i-hasnewkey1"].notes == {"previous_key": KEY}
    assert r["i-fine000001"].notes == {}
    for i in ids:
        assert sim.jd_instance(i)["keyNames"] == [KEY]
    attach = next(c for c in out.calls if c.action == "attachKeypair")
    assert set(attach.instance_ids) == {"i-holding001", "i-holding002", "i-fine000001"}


def test_no_slot_before_any_call_propagates_and_after_one_keeps_what_is_known(
    provider: JDCloudProvider, sim: Simulator
) -> None:
    sim.put_jd({"instances": [{"id": "i-holding001", "key_names": ["old"]}]})
    with pytest.raises(NoSlot):
        provider.bind(bind(["i-holding001"], replace=True), Slots(0))
    # Describe and detach get slots, attach does not: the detached instance is not dropped.
    out = provider.bind(bind(["i-holding001"], replace=True), Slots(2))
    result = out.results["i-holding001"]
    assert result.status is InstanceStatus.FAILED and result.error is not None
    assert result.error.code == "keybind.NoSlot" and result.error.error_class.retryable
    assert result.notes == {"previous_key": "old"}
    assert sim.jd_instance("i-holding001")["keyNames"] == []


def test_verify_reads_key_names(provider: JDCloudProvider, sim: Simulator) -> None:
    sim.put_jd(
        {
            "instances": [
                {"id": "i-hasnewkey1", "key_names": [KEY]},
                {"id": "i-holding001", "key_names": ["other"]},
                {"id": "i-missing001", "missing": True},
            ]
        }
    )
    ids = ("i-hasnewkey1", "i-holding001", "i-missing001", "i-nokey00001")
    out = provider.verify(VerifyRequest(REGION, ids, (KEY,)), Slots())
    status = {i: out.results[i].status for i in ids}
    assert status == {
        "i-hasnewkey1": InstanceStatus.VERIFIED,
        "i-holding001": InstanceStatus.FAILED,
        "i-missing001": InstanceStatus.FAILED,
        "i-nokey00001": InstanceStatus.OPERATING,
    }
    assert [c.action for c in out.calls] == ["describeInstances"]
    assert all(out.results[i].request_id == out.calls[0].request_id for i in ids)
