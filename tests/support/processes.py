"""Start and stop real keybind processes (workers, the scheduler, the API) for tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from app.config import Settings

REPO = Path(__file__).resolve().parents[2]


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that makes a child process see exactly `settings`."""
    env = dict(os.environ)
    env.update(
        {
            "KEYBIND_DATABASE_URL": settings.database_url,
            "KEYBIND_REDIS_URL": settings.redis_url,
            "KEYBIND_QUEUE_PREFIX": settings.queue_prefix,
            "KEYBIND_HOME": str(settings.home),
            "KEYBIND_TENCENT_ENDPOINT": settings.tencent_endpoint,
            "KEYBIND_JDCLOUD_ENDPOINT": settings.jdcloud_endpoint,
            "KEYBIND_JDCLOUD_RATE_LIMIT": str(settings.jdcloud_rate_limit),
            "KEYBIND_BACKOFF_BASE_S": str(settings.backoff_base_s),
            "KEYBIND_BACKOFF_MAX_S": str(settings.backoff_max_s),
            "KEYBIND_DISPATCH_INTERVAL_S": str(settings.dispatch_interval_s),
            "KEYBIND_LEASE_S": str(settings.lease_s),
            "KEYBIND_DISPATCH_LEASE_S": str(settings.dispatch_lease_s),
            "KEYBIND_MAX_ATTEMPTS": str(settings.max_attempts),
            "KEYBIND_DISPATCH_HORIZON_S": str(settings.dispatch_horizon_s),
            "KEYBIND_RATE_LIMIT_MAX_WAIT_S": str(settings.rate_limit_max_wait_s),
            "KEYBIND_HTTP_TIMEOUT_S": str(settings.http_timeout_s),
            "NO_PROXY": "127.0.0.1,localhost",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if settings.rate_limit is not None:
        env["KEYBIND_RATE_LIMIT"] = str(settings.rate_limit)
    if settings.accounts_file is not None:
        env["KEYBIND_ACCOUNTS_FILE"] = str(settings.accounts_file)
    for key in ("verify_delay_s", "verify_interval_max_s", "verify_budget_s"):
        env[f"KEYBIND_{key.upper()}"] = str(getattr(settings, key))
    for name, secret in (
        ("TENCENTCLOUD_SECRET_ID", settings.tencentcloud_secret_id),
        ("TENCENTCLOUD_SECRET_KEY", settings.tencentcloud_secret_key),
        ("TENCENTCLOUD_SESSION_TOKEN", settings.tencentcloud_session_token),
        ("JDCLOUD_ACCESS_KEY", settings.jdcloud_access_key),
        ("JDCLOUD_SECRET_KEY", settings.jdcloud_secret_key),
    ):
        if secret is not None:
            env[name] = secret.get_secret_value()
    env.update(extra)
    return env


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (a Celery worker's pool children too)."""
        if self.alive():
            os.killpg(self.popen.pid, sig)

    def terminate_main(self) -> None:
        """SIGTERM to the main process only, as `docker stop` and Kubernetes deliver it."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 20.0) -> None:
        if not self.alive():
            return
        self.kill(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill(signal.SIGKILL)
            self.popen.wait(5)


@dataclass
class Processes:
    """Keybind processes started by one test; all stopped at teardown."""

    log_dir: Path
    procs: list[Proc] = field(default_factory=list)

    def start(self, name: str, args: list[str], env: Mapping[str, str]) -> Proc:
        log_path = self.log_dir / f"{name}-{len(self.procs)}.log"
        log_file = log_path.open("wb")
        popen = subprocess.Popen(
            [sys.executable, "-m", "app.cli", *args],
            env=dict(env),
            cwd=REPO,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so kill() reaches pool children
        )
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def worker(self, env: Mapping[str, str], concurrency: int = 2, beat: bool = False) -> Proc:
        args = ["worker", f"--concurrency={concurrency}"] + (["--beat"] if beat else [])
        return self.start("worker", args, env)

    def beat(self, env: Mapping[str, str]) -> Proc:
        return self.start("beat", ["beat"], env)

    def stop_all(self) -> None:
        for proc in self.procs:
            proc.stop()


def wait_for(
    condition: Callable[[], bool], *, timeout: float, interval: float = 0.2, what: str = ""
) -> None:
    """Poll until `condition()` holds; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or condition}")
