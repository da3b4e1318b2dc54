"""The simulated world: instances (state, OS, tags, bound keys, latest operation) and key pairs.

Fleet file (JSON), all fields optional:

    {
      "strict": false,                 # true: IDs not listed here are NotFound
      "instances": [
        {"id": "ins-r8hr2upy", "state": "RUNNING", "os": "linux", "name": "web-1",
         "zone": "ap-guangzhou-3", "tags": {"env": "prod"}, "key_ids": ["skey-oldkey01"],
         "missing": false,             # true: answers InvalidInstanceId.NotFound
         "faults": [{"code": "MutexOperation.TaskRunning", "times": 2}]}
      ],
      "key_pairs": [{"id": "skey-3glfot13", "name": "ops"}]
    }

Without a fleet file (or with `strict: false`) every well-formed instance ID is a STOPPED
Linux instance and every well-formed key ID exists. States move on by themselves: PENDING,
STOPPING -> STOPPED; STARTING, REBOOTING, EXIT_RESCUE_MODE, ENTER_SERVICE_LIVE_MIGRATE ->
RUNNING, after `transition_s`. A bind's operation is OPERATING for `op_delay_s`, then SUCCESS.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Where a transitional state ends up once it has settled.
SETTLES_TO = {
    "PENDING": "STOPPED",
    "STOPPING": "STOPPED",
    "STARTING": "RUNNING",
    "REBOOTING": "RUNNING",
    "EXIT_RESCUE_MODE": "RUNNING",
    "ENTER_SERVICE_LIVE_MIGRATE": "RUNNING",
}
STATES = frozenset(
    {
        "PENDING",
        "LAUNCH_FAILED",
        "RUNNING",
        "STOPPED",
        "STARTING",
        "STOPPING",
        "REBOOTING",
        "SHUTDOWN",
        "TERMINATING",
        "ENTER_RESCUE_MODE",
        "RESCUE_MODE",
        "EXIT_RESCUE_MODE",
        "ENTER_SERVICE_LIVE_MIGRATE",
        "SERVICE_LIVE_MIGRATE",
        "EXIT_SERVICE_LIVE_MIGRATE",
        "ISOLATING",
        "FREEZING",
    }
)


@dataclass
class ScriptedFault:
    code: str
    times: int


@dataclass
class Instance:
    id: str
    state: str = "STOPPED"
    os: str = "linux"
    name: str = ""
    zone: str = "ap-guangzhou-3"
    tags: dict[str, str] = field(default_factory=dict)
    key_ids: list[str] = field(default_factory=list)
    missing: bool = False
    faults: list[ScriptedFault] = field(default_factory=list)
    settles_at: float | None = None
    latest_operation: str | None = None
    latest_operation_state: str | None = None
    latest_operation_request_id: str | None = None
    op_done_at: float | None = None
    op_key_ids: list[str] | None = None
    op_end_state: str | None = None
    binds: int = 0  # successful binds, to count instances bound more than once

    def advance(self, now: float) -> None:
        """Let time pass: settle a transitional state, finish a running operation."""
        if self.settles_at is not None and now >= self.settles_at:
            self.state = SETTLES_TO.get(self.state, self.state)
            self.settles_at = None
        if self.op_done_at is not None and now >= self.op_done_at:
            if self.op_key_ids is not None:
                self.key_ids = list(self.op_key_ids)
            if self.op_end_state is not None:
                self.state = self.op_end_state
            self.latest_operation_state = "SUCCESS"
            self.op_done_at = None
            self.op_key_ids = None
            self.op_end_state = None

    @property
    def operating(self) -> bool:
        return self.latest_operation_state == "OPERATING"

    def next_fault(self) -> str | None:
        while self.faults:
            fault = self.faults[0]
            if fault.times > 0:
                fault.times -= 1
                return fault.code
            self.faults.pop(0)
        return None

    def view(self) -> dict[str, Any]:
        return {
            "InstanceId": self.id,
            "InstanceName": self.name or self.id,
            "InstanceState": self.state,
            "OsName": "Windows Server 2019" if self.os == "windows" else "TencentOS Server 3.1",
            "Placement": {"Zone": self.zone, "ProjectId": 0},
            "Tags": [{"Key": k, "Value": v} for k, v in self.tags.items()],
            "LoginSettings": {"KeyIds": list(self.key_ids)},
            "LatestOperation": self.latest_operation,
            "LatestOperationState": self.latest_operation_state,
            "LatestOperationRequestId": self.latest_operation_request_id,
        }


@dataclass
class KeyPair:
    id: str
    name: str = ""
    created: str = "2026-01-01T00:00:00Z"


@dataclass
class Fleet:
    strict: bool = False
    instances: dict[str, Instance] = field(default_factory=dict)
    key_pairs: dict[str, KeyPair] = field(default_factory=dict)
    transition_s: float = 2.0
    op_delay_s: float = 0.0

    def instance(self, instance_id: str, now: float) -> Instance | None:
        """The instance, created on first sight unless the fleet is strict; None if missing."""
        inst = self.instances.get(instance_id)
        if inst is None:
            if self.strict:
                return None
            inst = self.instances[instance_id] = Instance(id=instance_id)
        inst.advance(now)
        return None if inst.missing else inst

    def key_pair(self, key_id: str) -> KeyPair | None:
        kp = self.key_pairs.get(key_id)
        if kp is None and not self.strict:
            kp = self.key_pairs[key_id] = KeyPair(id=key_id, name=key_id)
        return kp

    def put(self, spec: dict[str, Any], now: float) -> Instance:
        state = str(spec.get("state", "STOPPED")).upper()
        if state not in STATES:
            raise ValueError(f"unknown instance state {state!r}")
        inst = Instance(
            id=str(spec["id"]),
            state=state,
            os=str(spec.get("os", "linux")).lower(),
            name=str(spec.get("name", "")),
            zone=str(spec.get("zone", "ap-guangzhou-3")),
            tags={str(k): str(v) for k, v in (spec.get("tags") or {}).items()},
            key_ids=list(spec.get("key_ids") or []),
            missing=bool(spec.get("missing", False)),
            faults=[
                ScriptedFault(str(f["code"]), int(f.get("times", 1)))
                for f in spec.get("faults") or []
            ],
        )
        if state in SETTLES_TO:
            inst.settles_at = now + float(spec.get("settles_after_s", self.transition_s))
        self.instances[inst.id] = inst
        return inst

    def load(self, data: dict[str, Any], now: float) -> None:
        self.strict = bool(data.get("strict", self.strict))
        for spec in data.get("instances") or []:
            self.put(spec, now)
        for kp in data.get("key_pairs") or []:
            self.key_pairs[str(kp["id"])] = KeyPair(
                id=str(kp["id"]), name=str(kp.get("name", kp["id"]))
            )


def load_fleet(path: Path | None, *, transition_s: float, op_delay_s: float) -> Fleet:
    fleet = Fleet(transition_s=transition_s, op_delay_s=op_delay_s)
    if path is not None:
        fleet.load(json.loads(path.read_text()), time.monotonic())
    return fleet
