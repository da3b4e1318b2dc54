"""Serve the simulator with uvicorn: one process, so its rate windows see every call."""

from __future__ import annotations

import uvicorn

from app.simulator.app import create_app
from app.simulator.state import SimulatorConfig


def run(config: SimulatorConfig, *, host: str = "127.0.0.1", port: int = 9100) -> None:
    uvicorn.run(create_app(config), host=host, port=port, log_level="warning", access_log=False)
