"""The simulator's ASGI app: Tencent CVM on `/`, JD Cloud VM on `/v1/regions/...`, control
routes on `/_sim/`."""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.routing import Route

from app.simulator import admin
from app.simulator.jdcloud.api import JDCloudApi
from app.simulator.limits import DEFAULT_LIMITS
from app.simulator.state import SimState, SimulatorConfig
from app.simulator.tencent.api import TencentApi

BIND_ACTIONS = (
    "AssociateInstancesKeyPairs",
    "DisassociateInstancesKeyPairs",
    "attachKeypair",
    "detachKeypair",
)


def create_app(config: SimulatorConfig) -> Starlette:
    state = SimState.build(config)
    tencent = TencentApi(state)
    jdcloud = JDCloudApi(state)
    app = Starlette(
        routes=[
            *admin.routes(state),
            Route("/", tencent.handle, methods=["GET", "POST"]),
            *jdcloud.routes(),
        ]
    )
    app.state.sim = state
    return app


def config_from_options(
    *,
    port: int,
    fleet: Path | None,
    rate_limit: float | None,
    secret_id: str,
    secret_key: str,
    jd_access_key: str | None = None,
    jd_secret_key: str | None = None,
    op_delay_s: float = 0.0,
    fault_rate: float = 0.0,
    fault_kinds: list[str] | None = None,
    seed: int | None = None,
) -> SimulatorConfig:
    limits = dict(DEFAULT_LIMITS)
    if rate_limit is not None:
        for action in BIND_ACTIONS:
            limits[action] = rate_limit
    return SimulatorConfig(
        credentials={secret_id: secret_key},
        jd_credentials={jd_access_key: jd_secret_key} if jd_access_key and jd_secret_key else {},
        fleet_path=fleet,
        rate_limits=limits,
        op_delay_s=op_delay_s,
        fault_rate=fault_rate,
        fault_kinds=list(fault_kinds or []),
        seed=seed,
    )
