"""Everything one simulator process holds: config, fleet, limits, faults, what it saw."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from app.simulator.faults import RateFaults
from app.simulator.fleet import Fleet, load_fleet
from app.simulator.limits import DEFAULT_LIMITS, ArrivalWindow
from app.simulator.stats import Stats


@dataclass
class SimulatorConfig:
    credentials: dict[str, str]  # SecretId -> SecretKey the simulator accepts (one account each)
    tokens: dict[str, str] = field(default_factory=dict)  # SecretId -> required X-TC-Token
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
            window=ArrivalWindow(limits=dict(config.rate_limits)),
            faults=faults,
            stats=Stats(),
        )
