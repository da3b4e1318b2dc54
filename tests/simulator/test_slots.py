"""Every paced call tells its limiter slot once that its request is being written, before the
cloud sees the call, and once that it is written (issue 7): both providers against the
simulator, the slot recording what the simulator had counted."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.providers.base import BindRequest, Slot, VerifyRequest
from app.providers.jdcloud.client import JDCloudClient
from app.providers.jdcloud.provider import JDCloudProvider
from app.providers.tencent.client import TencentClient
from app.providers.tencent.provider import TencentProvider
from tests.support.simulator import (
    JD_ACCESS_KEY,
    JD_SECRET_KEY,
    SECRET_ID,
    SECRET_KEY,
    Simulator,
    start_simulator,
)


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    s = start_simulator()
    yield s
    s.stop()


class RecordingSlot:
    """A slot that notes each mark, and at `sending()` how many calls of its action the
    simulator had already counted."""

    def __init__(self, sim: Simulator, action: str) -> None:
        self.sim = sim
        self.action = action
        self.marks: list[str] = []
        self.counted_at_sending: list[int] = []

    def sending(self) -> None:
        self.marks.append("sending")
        self.counted_at_sending.append(self.sim.stats(self.action, detail=False)["total"])

    def sent(self) -> None:
        self.marks.append("sent")


class RecordingPace:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.slots: list[RecordingSlot] = []

    def __call__(self, action: str) -> Slot:
        self.slots.append(RecordingSlot(self.sim, action))
        return self.slots[-1]


def assert_each_marked_once_before_arrival(pace: RecordingPace) -> None:
    assert pace.slots
    before: dict[str, int] = {}
    for slot in pace.slots:
        assert slot.marks == ["sending", "sent"], slot.action
        # Marked before this call arrived: the simulator had counted only the earlier ones.
        assert slot.counted_at_sending == [before.get(slot.action, 0)], slot.action
        before[slot.action] = slot.counted_at_sending[0] + 1
    for action, n in before.items():
        assert pace.sim.stats(action, detail=False)["total"] == n


def test_tencent_bind_and_verify_mark_their_slots_as_they_send(sim: Simulator) -> None:
    sim.reset()
    provider = TencentProvider(
        TencentClient(endpoint=sim.url, secret_id=SECRET_ID, secret_key=SECRET_KEY)
    )
    pace = RecordingPace(sim)
    try:
        bound = provider.bind(
            BindRequest("ap-guangzhou", ("ins-slot0001",), ("skey-3glfot13",)), pace
        )
        assert bound.calls[0].ok
        provider.verify(VerifyRequest("ap-guangzhou", ("ins-slot0001",), ("skey-3glfot13",)), pace)
    finally:
        provider.close()
    assert [s.action for s in pace.slots] == ["AssociateInstancesKeyPairs", "DescribeInstances"]
    assert_each_marked_once_before_arrival(pace)


def test_jdcloud_replace_marks_each_of_its_calls_slots(sim: Simulator) -> None:
    sim._call("POST", "/_sim/reset", {"fleet": True})
    sim.put_jd({"instances": [{"id": "i-slotold001", "key_names": ["old"]}]})
    provider = JDCloudProvider(
        JDCloudClient(endpoint=sim.url, access_key=JD_ACCESS_KEY, secret_key=JD_SECRET_KEY)
    )
    pace = RecordingPace(sim)
    try:
        options = {"password_auth": "no", "replace": True}
        provider.bind(
            BindRequest("cn-north-1", ("i-slotold001",), ("ops-2026",), options=options), pace
        )
    finally:
        provider.close()
    assert [s.action for s in pace.slots] == ["describeInstances", "detachKeypair", "attachKeypair"]
    assert_each_marked_once_before_arrival(pace)
