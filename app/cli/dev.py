"""`keybind dev`: simulator, API and worker on one machine, on embedded defaults (SQLite, the
filesystem broker, the file limiter): nothing but Python needed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Annotated

import httpx
import typer

from app.auth.tokens import create_token
from app.cli.dev_credentials import (
    DEV_JD_ACCESS_KEY,
    DEV_JD_SECRET_KEY,
    DEV_SECRET_ID,
    DEV_SECRET_KEY,
)
from app.config import Settings
from app.migrate import upgrade
from app.runtime import Runtime


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "app.cli", *args], env=env)


def _wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up within {timeout:.0f} s")


def dev(
    port: Annotated[int, typer.Option(help="API port.")] = 8000,
    simulator_port: Annotated[int, typer.Option(help="Simulator port.")] = 9100,
    concurrency: Annotated[int, typer.Option(help="Worker processes.")] = 2,
) -> None:
    """Simulator + API + worker on one machine, on embedded defaults (SQLite, no servers)."""
    env = dict(os.environ)
    if not env.get("TENCENTCLOUD_SECRET_ID"):
        env["TENCENTCLOUD_SECRET_ID"] = DEV_SECRET_ID
        env["TENCENTCLOUD_SECRET_KEY"] = DEV_SECRET_KEY
    if not env.get("JDCLOUD_ACCESS_KEY"):
        env["JDCLOUD_ACCESS_KEY"] = DEV_JD_ACCESS_KEY
        env["JDCLOUD_SECRET_KEY"] = DEV_JD_SECRET_KEY
    env.setdefault("KEYBIND_TENCENT_ENDPOINT", f"http://127.0.0.1:{simulator_port}")
    env.setdefault("KEYBIND_JDCLOUD_ENDPOINT", f"http://127.0.0.1:{simulator_port}")
    env.setdefault("NO_PROXY", "127.0.0.1,localhost")
    # Receivers you try callbacks with in dev run on this machine.
    env.setdefault("KEYBIND_CALLBACK_ALLOW_PRIVATE_NETWORKS", "true")
    os.environ.update(env)
    settings = Settings()
    upgrade(settings)
    rt = Runtime(settings)
    token = create_token(rt.sessions, name=f"dev-{time.strftime('%Y%m%d-%H%M%S')}")
    rt.close()

    children = [
        _spawn(["simulator", f"--port={simulator_port}"], env),
        _spawn(["worker", f"--concurrency={concurrency}", "--beat"], env),
        _spawn(["api", f"--port={port}"], env),
    ]

    def stop(*_: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        _wait_http(f"http://127.0.0.1:{port}/healthz")
        api_url = f"http://127.0.0.1:{port}"
        typer.echo(
            f"\nkeybind is up (embedded mode, data in {settings.home.resolve()})\n"
            f"  API        {api_url}   (docs: {api_url}/docs)\n"
            f"  simulator  http://127.0.0.1:{simulator_port}   (fake Tencent CVM and JD Cloud VM)\n"
            f"  token      {token}\n\n"
            "Submit a job:\n"
            f"  curl -s -X POST {api_url}/v1/jobs -H 'Authorization: Bearer {token}' \\\n"
            "    -H 'Content-Type: application/json' \\\n"
            '    -d \'{"provider": "tencent", "region": "ap-guangzhou", '
            '"instance_ids": ["ins-r8hr2upy", "ins-3e56fg78"], '
            '"key_ids": ["skey-3glfot13"]}\'\n'
            "Then poll it:\n"
            f"  curl -s {api_url}/v1/jobs/<id> -H 'Authorization: Bearer {token}'\n"
            "or watch it in a browser (this link signs you in):\n"
            f"  {api_url}/ui/login?token={token}\n\n"
            "Ctrl-C stops everything.\n",
        )
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        typer.echo("a component exited; stopping the rest", err=True)
        raise typer.Exit(1)
    except KeyboardInterrupt:
        pass
    finally:
        stop()
