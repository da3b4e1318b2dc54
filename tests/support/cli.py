"""Run the real `keybind` command in a subprocess against a running API."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def keybind_env(api_url: str, token: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYBIND_")}
    env.update({"KEYBIND_API_URL": api_url, "NO_PROXY": "127.0.0.1,localhost", "COLUMNS": "120"})
    if token is not None:
        env["KEYBIND_API_TOKEN"] = token
    return env


def keybind(
    api_url: str, token: str | None, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=keybind_env(api_url, token),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
