"""End-to-end fixtures: the simulator and real `keybind worker` processes around one test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from app.config import Settings
from tests.support.processes import Processes
from tests.support.simulator import SECRET_ID, SECRET_KEY, Simulator, start_simulator


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[Simulator]:
    sim = start_simulator(rate_limit=100)
    yield sim
    sim.stop()


@pytest.fixture
def e2e_settings(settings: Settings, simulator: Simulator) -> Settings:
    """The test's settings pointed at the simulator, with its credentials."""
    return settings.model_copy(
        update={
            "tencent_endpoint": simulator.url,
            "tencentcloud_secret_id": SecretStr(SECRET_ID),
            "tencentcloud_secret_key": SecretStr(SECRET_KEY),
            "rate_limit": 100.0,
        }
    )


@pytest.fixture
def procs(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Processes]:
    p = Processes(log_dir=tmp_path)
    yield p
    p.stop_all()
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        for proc in p.procs:
            print(f"----- {proc.name} log -----\n{proc.log()[-4000:]}")


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{rep.when}", rep)
