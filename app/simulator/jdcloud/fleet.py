"""The simulated JD Cloud world: VM instances (status, OS, tags, the one bound key) and key names.

Fleet file section (JSON, all fields optional), next to the Tencent fields:

    {
      "jdcloud": {
        "strict": false,                 # true: IDs not listed are NOT_FOUND, key names too
        "instances": [
          {"id": "i-abcdefgh12", "status": "running", "os": "linux", "region": "cn-north-1",
           "name": "web-1", "tags": {"env": "prod"}, "key_names": ["old-key"],
           "missing": false,             # true: answers NOT_FOUND
           "faults": [{"status": "INTERNAL", "times": 1}]}
        ],
        "key_names": ["ops-2026"]
      }
    }

Without a fleet file (or with `strict: false`) every well-formed ID (`i-` + 10 of [a-z0-9]) is
a stopped Linux instance holding no key, and every key name exists. Transitional statuses
(pending, starting, stopping, rebooting, rebuilding, resizing) settle after `transition_s`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from app.simulator.faults import ScriptedFault, next_scripted

INSTANCE_ID = re.compile(r"i-[0-9a-z]{10}")
STATUSES = frozenset(
    {
        "pending",
        "starting",
        "running",
        "stopping",
        "stopped",
        "rebooting",
        "rebuilding",
        "resizing",
        "deleting",
        "error",
    }
)
SETTLES_TO = {
    "pending": "running",
    "starting": "running",
    "rebooting": "running",
    "stopping": "stopped",
    "rebuilding": "stopped",
    "resizing": "stopped",
}


@dataclass
class JDInstance:
    id: str
    status: str = "stopped"
    os: str = "linux"
    region: str | None = None  # None: found in every region
    name: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    key_names: list[str] = field(default_factory=list)
    missing: bool = False
    faults: list[ScriptedFault] = field(default_factory=list)  # codes are JD statuses
    settles_at: float | None = None
    attaches: int = 0  # successful attaches, to count instances attached more than once

    def advance(self, now: float) -> None:
        if self.settles_at is not None and now >= self.settles_at:
            self.status = SETTLES_TO.get(self.status, self.status)
            self.settles_at = None

    def next_fault(self) -> str | None:
        return next_scripted(self.faults)

    def view(self) -> dict[str, Any]:
        """The describeInstances `Instance` fields keybind and the SDK read."""
        return {
            "instanceId": self.id,
            "instanceName": self.name or self.id,
            "hostname": self.name or self.id,
            "status": self.status,
            "osType": self.os,
            "keyNames": list(self.key_names),
            "tags": [{"key": k, "value": v} for k, v in self.tags.items()],
            "az": f"{self.region or 'cn-north-1'}a",
        }


@dataclass
class JDFleet:
    strict: bool = False
    instances: dict[str, JDInstance] = field(default_factory=dict)
    key_names: set[str] = field(default_factory=set)
    transition_s: float = 2.0

    def instance(self, instance_id: str, region: str, now: float) -> JDInstance | None:
        """The instance in `region`, created on first sight unless strict; None if missing."""
        inst = self.instances.get(instance_id)
        if inst is None:
            if self.strict or not INSTANCE_ID.fullmatch(instance_id):
                return None
            inst = self.instances[instance_id] = JDInstance(id=instance_id)
        inst.advance(now)
        if inst.missing or (inst.region is not None and inst.region != region):
            return None
        return inst

    def key_exists(self, key_name: str) -> bool:
        return not self.strict or key_name in self.key_names

    def put(self, spec: dict[str, Any], now: float) -> JDInstance:
        status = str(spec.get("status", "stopped")).lower()
        if status not in STATUSES:
            raise ValueError(f"unknown JD instance status {status!r}")
        iid = str(spec["id"])
        if not INSTANCE_ID.fullmatch(iid):
            raise ValueError(f"not a JD instance ID: {iid!r}")
        inst = JDInstance(
            id=iid,
            status=status,
            os=str(spec.get("os", "linux")).lower(),
            region=str(spec["region"]) if spec.get("region") else None,
            name=str(spec.get("name", "")),
            tags={str(k): str(v) for k, v in (spec.get("tags") or {}).items()},
            key_names=[str(k) for k in spec.get("key_names") or []],
            missing=bool(spec.get("missing", False)),
            faults=[
                ScriptedFault(str(f["status"]), int(f.get("times", 1)))
                for f in spec.get("faults") or []
            ],
        )
        if status in SETTLES_TO:
            inst.settles_at = now + float(spec.get("settles_after_s", self.transition_s))
        self.instances[iid] = inst
        return inst

    def load(self, data: dict[str, Any], now: float) -> None:
        self.strict = bool(data.get("strict", self.strict))
        for spec in data.get("instances") or []:
            self.put(spec, now)
        self.key_names.update(str(k) for k in data.get("key_names") or [])
