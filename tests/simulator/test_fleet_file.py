"""The fleet file format docs/simulator.md documents, loaded by `keybind simulator --fleet`."""

from __future__ import annotations

import json
from pathlib import Path

from app.providers.base import BindRequest, InstanceStatus, VerifyRequest
from app.providers.tencent.client import TencentClient
from app.providers.tencent.provider import TencentProvider
from tests.support.simulator import SECRET_ID, SECRET_KEY, start_simulator

FLEET = {
    "strict": True,
    "op_delay_s": 30,
    "instances": [
        {
            "id": "ins-web00001",
            "state": "STOPPED",
            "tags": {"env": "prod"},
            "key_ids": ["skey-oldkey01"],
        },
        {"id": "ins-win00001", "os": "windows"},
    ],
    "key_pairs": [{"id": "skey-3glfot13", "name": "ops"}, {"id": "skey-oldkey01"}],
}


def test_a_strict_fleet_file_is_the_whole_world(tmp_path: Path) -> None:
    path = tmp_path / "fleet.json"
    path.write_text(json.dumps(FLEET))
    sim = start_simulator(fleet=path)
    try:
        p = TencentProvider(
            TencentClient(endpoint=sim.url, secret_id=SECRET_ID, secret_key=SECRET_KEY)
        )
        pace = lambda _action: None  # noqa: E731 - no limiter in this test

        unknown = p.bind(BindRequest("ap-guangzhou", ("ins-notlist1",), ("skey-3glfot13",)), pace)
        assert unknown.results["ins-notlist1"].error.code == "InvalidInstanceId.NotFound"  # type: ignore[union-attr]
        no_key = p.bind(BindRequest("ap-guangzhou", ("ins-web00001",), ("skey-unknown1",)), pace)
        assert no_key.results["ins-web00001"].error.code == "InvalidKeyPairId.NotFound"  # type: ignore[union-attr]

        bound = p.bind(BindRequest("ap-guangzhou", ("ins-web00001",), ("skey-3glfot13",)), pace)
        request_id = bound.results["ins-web00001"].request_id
        assert bound.results["ins-web00001"].status is InstanceStatus.ACCEPTED
        # op_delay_s from the file: the operation is still running, the old key still there.
        look = p.verify(
            VerifyRequest(
                "ap-guangzhou", ("ins-web00001",), ("skey-3glfot13",), {"ins-web00001": request_id}
            ),
            pace,
        )
        assert look.results["ins-web00001"].status is InstanceStatus.OPERATING
        assert sim.instance("ins-web00001")["LoginSettings"]["KeyIds"] == ["skey-oldkey01"]
        assert sim.instance("ins-web00001")["Tags"] == [{"Key": "env", "Value": "prod"}]
    finally:
        sim.stop()
