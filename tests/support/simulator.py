"""Run `keybind simulator` as a real process and drive its /_sim/ control routes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
SECRET_ID = "AKIDsimulatorTESTsimulatorTEST0001"
SECRET_KEY = "simulatorTESTsecretKEYsimulator01"
JD_ACCESS_KEY = "JDCsimulatorTESTaccessKEY000000001"
JD_SECRET_KEY = "simulatorTESTjdSECRETkeySimulator1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Simulator:
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        r = httpx.request(method, self.url + path, json=body, timeout=30, trust_env=False)
        r.raise_for_status()
        return r.json()

    def stats(self, action: str | None = None, *, detail: bool = True) -> Any:
        params = f"?detail={int(detail)}" + (f"&action={action}" if action else "")
        data = self._call("GET", "/_sim/stats" + params)
        if action is None:
            return data
        empty = {
            "total": 0,
            "accepted": 0,
            "throttled": 0,
            "errors": {},
            "per_instance": {},
            "max_in_any_second": 0,
            "sustained_rate": 0.0,
        }
        return data["actions"].get(action, empty)

    def bound_twice(self) -> int:
        return int(self._call("GET", "/_sim/stats?detail=0")["instances_bound_more_than_once"])

    def set_faults(self, rate: float, kinds: list[str], seed: int = 1) -> None:
        self._call("POST", "/_sim/faults", {"rate": rate, "kinds": kinds, "seed": seed})

    def put_instances(self, specs: list[dict[str, Any]], *, strict: bool | None = None) -> None:
        body: dict[str, Any] = {"instances": specs}
        if strict is not None:
            body["strict"] = strict
        self._call("PUT", "/_sim/instances", body)

    def set_missing(self, instance_ids: list[str]) -> None:
        self.put_instances([{"id": i, "missing": True} for i in instance_ids])

    def put_jd(self, section: dict[str, Any]) -> None:
        """Load a fleet file's `jdcloud` section into the running simulator."""
        self._call("PUT", "/_sim/jdcloud/instances", section)

    def jd_instance(self, instance_id: str) -> Any:
        return self._call("GET", f"/_sim/jdcloud/instances/{instance_id}")

    def instance(self, instance_id: str) -> Any:
        return self._call("GET", f"/_sim/instances/{instance_id}")

    def configure(self, **settings: Any) -> None:
        self._call("POST", "/_sim/config", settings)

    def reset(self) -> None:
        self._call("POST", "/_sim/reset", {})

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def start_simulator(
    *, rate_limit: float | None = None, fleet: Path | None = None, extra: list[str] | None = None
) -> Simulator:
    port = free_port()
    args = [sys.executable, "-m", "app.cli", "simulator", f"--port={port}"]
    if rate_limit is not None:
        args.append(f"--rate-limit={rate_limit}")
    if fleet is not None:
        args.append(f"--fleet={fleet}")
    args += extra or []
    env = {
        **os.environ,
        "TENCENTCLOUD_SECRET_ID": SECRET_ID,
        "TENCENTCLOUD_SECRET_KEY": SECRET_KEY,
        "JDCLOUD_ACCESS_KEY": JD_ACCESS_KEY,
        "JDCLOUD_SECRET_KEY": JD_SECRET_KEY,
    }
    log_path = Path(tempfile.mkstemp(prefix="keybind-sim-", suffix=".log")[1])
    process = subprocess.Popen(
        args, env=env, cwd=REPO, stdout=log_path.open("wb"), stderr=subprocess.STDOUT
    )
    sim = Simulator(port, process, log_path)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"simulator exited: {log_path.read_text()}")
        try:
            sim.stats(detail=False)
            return sim
        except httpx.HTTPError:
            time.sleep(0.1)
    sim.stop()
    raise RuntimeError("simulator did not come up within 20 s")
