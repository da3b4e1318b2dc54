"""The simulated world: instances (state, OS, tags, bound keys, latest operation) and key pairs.

Fleet file (JSON), all fields optional:

    {
      "strict": false,                 # true: IDs not listed here are NotFound
      "op_delay_s": 0.0,               # how long an operation stays OPERATING
      "transition_s": 2.0,             # how long a transitional state lasts
      "instances": [
        {"id": "ins-r8hr2upy", "state": "RUNNING", "os": "linux", "name": "web-1",
         "zone": "ap-guangzhou-3", "tags": {"env": "prod"}, "key_ids": ["skey-oldkey01"],
         "missing": false,             # true: answers InvalidInstanceId.NotFound
         "settles_after_s": 2.0,       # a transitional state moves on after this
         "faults": [{"code": "MutexOperation.TaskRunning", "times": 2}],
         "failing_operations": {"times": 1, "message": "..."},  # operations end FAILED
         "drops_keys": false}          # true: operations end SUCCESS but bind nothing
      ],
      "key_pairs": [{"id": "skey-3glfot13", "name": "ops"}]
    }

Without a fleet file (or with `strict: false`) every well-formed instance ID is a STOPPED
Linux instance and every well-formed key ID exists. States move on by themselves: PENDING,
STOPPING -> STOPPED; STARTING, REBOOTING, EXIT_RESCUE_MODE, ENTER_SERVICE_LIVE_MIGRATE ->
RUNNING, after `transition_s`. A bind's operation is OPERATING for `op_delay_s`, then SUCCESS;
with ForceStop a RUNNING instance goes STOPPING -> STOPPED -> (keys set) STARTING -> RUNNING.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.simulator.faults import ScriptedFault, next_scripted

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
class Step:
    """One moment of a running operation: a state to enter and/or keys to set."""

    at: float
    state: str | None = None
    key_ids: list[str] | None = None


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
    # The next N operations end FAILED with this message (keys untouched).
    failing_operations: int = 0
    failure_message: str = "the guest agent did not answer"
    # Operations end SUCCESS without writing the keys (a cloud bug keybind must catch).
    drops_keys: bool = False
    settles_at: float | None = None
    latest_operation: str | None = None
    latest_operation_state: str | None = None
    latest_operation_request_id: str | None = None
    latest_operation_error: str | None = None
    op_steps: list[Step] = field(default_factory=list)
    op_key_ids: list[str] | None = None  # the keys the running operation binds
    op_fails: bool = False
    binds: int = 0  # successful binds, to count instances bound more than once

    def advance(self, now: float) -> None:
        """Let time pass: settle a transitional state, move a running operation on."""
        if self.settles_at is not None and now >= self.settles_at:
            self.state = SETTLES_TO.get(self.state, self.state)
            self.settles_at = None
        while self.op_steps and now >= self.op_steps[0].at:
            step = self.op_steps.pop(0)
            if step.state is not None:
                self.state = step.state
            if step.key_ids is not None and not self.op_fails and not self.drops_keys:
                self.key_ids = list(step.key_ids)
            if not self.op_steps:
                self.latest_operation_state = "FAILED" if self.op_fails else "SUCCESS"
                self.latest_operation_error = self.failure_message if self.op_fails else None
                self.op_key_ids = None

    def start_operation(
        self, action: str, request_id: str, key_ids: list[str], *, now: float, delay: float
    ) -> None:
        """Begin a key operation. A RUNNING instance (ForceStop) is stopped, bound and started
        again, each taking a third of `delay`; a STOPPED one is bound at the end."""
        self.latest_operation = action
        self.latest_operation_state = "OPERATING"
        self.latest_operation_request_id = request_id
        self.latest_operation_error = None
        self.op_key_ids = list(key_ids)
        self.op_fails = self.failing_operations > 0
        if self.op_fails:
            self.failing_operations -= 1
        if self.state == "RUNNING":
            third = delay / 3
            self.state = "STOPPING"
            self.op_steps = [
                Step(now + third, state="STOPPED"),
                Step(now + 2 * third, state="STARTING", key_ids=list(key_ids)),
                Step(now + delay, state="RUNNING"),
            ]
        else:
            self.op_steps = [Step(now + delay, key_ids=list(key_ids))]
        self.advance(now)

    @property
    def operating(self) -> bool:
        return bool(self.op_steps)

    def next_fault(self) -> str | None:
        return next_scripted(self.faults)

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
            "LatestOperationErrorMsg": self.latest_operation_error,
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

    def listed(self, instance_ids: list[str], now: float) -> list[Instance]:
        """The named instances there are, in the order named; with no names, all of them."""
        if instance_ids:
            return [inst for iid in instance_ids if (inst := self.instance(iid, now)) is not None]
        for inst in self.instances.values():
            inst.advance(now)
        return [inst for inst in self.instances.values() if not inst.missing]

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
            drops_keys=bool(spec.get("drops_keys", False)),
        )
        failing = spec.get("failing_operations")
        if failing:
            inst.failing_operations = int(failing.get("times", 1))
            inst.failure_message = str(failing.get("message", inst.failure_message))
        if state in SETTLES_TO:
            inst.settles_at = now + float(spec.get("settles_after_s", self.transition_s))
        self.instances[inst.id] = inst
        return inst

    def load(self, data: dict[str, Any], now: float) -> None:
        self.strict = bool(data.get("strict", self.strict))
        self.op_delay_s = float(data.get("op_delay_s", self.op_delay_s))
        self.transition_s = float(data.get("transition_s", self.transition_s))
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
