"""Everything one simulator process holds: config, fleet, limits, faults, what it saw."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from app.simulator.faults import RateFaults
from app.simulator.jdcloud.fleet import JDFleet
from app.simulator.limits import DEFAULT_LIMITS, ArrivalWindow
from app.simulator.stats import Stats
from app.simulator.tencent.fleet import Fleet, load_fleet


@dataclass
class SimulatorConfig:
    credentials: dict[str, str]  # SecretId -> SecretKey the simulator accepts (one account each)
    tokens: dict[str, str] = field(default_factory=dict)  # SecretId -> required X-TC-Token
    jd_credentials: dict[str, str] = field(default_factory=dict)  # AccessKey -> SecretKey
    fleet_path: Path | None = None
    rate_limits: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    op_delay_s: float = 0.0
    transition_s: float = 2.0
    timeout_fault_s: float = 30.0
    slow_fault_s: float = 1.0
    fault_rate: float = 0.0
    fault_kinds: list[str] = field(default_factory=list)
    seed: int | None = None


@dataclass
class SimState:
    config: SimulatorConfig
    fleet: Fleet
    jd_fleet: JDFleet
    window: ArrivalWindow
    faults: RateFaults
    stats: Stats

    @classmethod
    def build(cls, config: SimulatorConfig) -> SimState:
        faults = RateFaults()
        faults.configure(config.fault_rate, config.fault_kinds, config.seed, None)
        return cls(
            config=config,
            fleet=load_fleet(
                config.fleet_path, transition_s=config.transition_s, op_delay_s=config.op_delay_s
            ),
            jd_fleet=load_jd_fleet(config),
            window=ArrivalWindow(limits=dict(config.rate_limits)),
            faults=faults,
            stats=Stats(),
        )


def load_jd_fleet(config: SimulatorConfig) -> JDFleet:
    """The fleet file's `jdcloud` section (see app.simulator.jdcloud.fleet), if any."""
    fleet = JDFleet(transition_s=config.transition_s)
    if config.fleet_path is not None:
        section = json.loads(config.fleet_path.read_text()).get("jdcloud") or {}
        fleet.load(section, time.monotonic())
    return fleet
