"""`keybind submit/status/cancel` as a subprocess against a real API server (uvicorn)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.cli.watch import (
    EXIT_API,
    EXIT_CANCELLED,
    EXIT_OK,
    EXIT_RUNNING,
    EXIT_USAGE,
)
from app.runtime import Runtime
from tests.support.cli import REPO, keybind, keybind_env
from tests.support.server import api_server
from tests.support.simulator import free_port

REGION = ["--region", "ap-guangzhou", "--key", "skey-3glfot13", "--key", "skey-4hmgpu24"]


@pytest.fixture
def api(rt: Runtime) -> Iterator[str]:
    with api_server(rt.settings) as url:
        yield url


def fleet(tmp_path: Path, text: str, name: str = "fleet.txt") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def job_id_of(stdout: str) -> str:
    return stdout.split()[1]


def test_submit_from_a_plain_file_and_a_csv(
    api: str, token: str, tmp_path: Path, client: TestClient
) -> None:
    plain = fleet(tmp_path, "# rotation 2026-11\nins-r8hr2upy\n\n ins-3e56fg78 \n")
    done = keybind(api, token, "submit", *REGION, "--instances-file", str(plain))
    assert done.returncode == EXIT_OK, done.stderr
    assert "accepted: 2 instances" in done.stdout
    job = client.get(f"/v1/jobs/{job_id_of(done.stdout)}").json()
    assert job["key_ids"] == ["skey-3glfot13", "skey-4hmgpu24"] and job["total"] == 2
    items = client.get(f"/v1/jobs/{job['id']}/instances").json()["items"]
    assert [i["instance_id"] for i in items] == ["ins-r8hr2upy", "ins-3e56fg78"]

    csv = fleet(
        tmp_path,
        "Name,InstanceId,Zone\nweb-1,ins-1e4r6y8i,ap-guangzhou-3\nweb-2,ins-9k2m4n6p,ap-guangzhou-3\n",
        "fleet.csv",
    )
    done = keybind(api, token, "submit", *REGION, "--instances-file", str(csv), "--force-stop")
    assert done.returncode == EXIT_OK, done.stderr
    job = client.get(f"/v1/jobs/{job_id_of(done.stdout)}").json()
    assert job["power_policy"] == "force_stop"
    items = client.get(f"/v1/jobs/{job['id']}/instances").json()["items"]
    assert [i["instance_id"] for i in items] == ["ins-1e4r6y8i", "ins-9k2m4n6p"]


def test_usage_errors_exit_2_and_say_why(api: str, token: str, tmp_path: Path) -> None:
    good = fleet(tmp_path, "ins-r8hr2upy\n")
    cases = [
        (["--instances-file", str(tmp_path / "missing.txt")], "missing.txt"),
        (
            ["--instances-file", str(fleet(tmp_path, "\n# nothing\n", "empty.txt"))],
            "no instance IDs",
        ),
        (
            ["--instances-file", str(fleet(tmp_path, "name,zone\nweb,x\n", "nocol.csv"))],
            "no instance ID column",
        ),
        (["--instances-file", str(fleet(tmp_path, "ins-1122\n", "bad.txt"))], "instance_ids[0]"),
    ]
    for args, says in cases:
        done = keybind(api, token, "submit", *REGION, *args)
        assert done.returncode == EXIT_USAGE, (args, done.stderr)
        assert says in done.stderr, (args, done.stderr)
    done = keybind(api, None, "submit", *REGION, "--instances-file", str(good))
    assert done.returncode == EXIT_USAGE and "KEYBIND_API_TOKEN" in done.stderr
    done = keybind(api, token, "submit", "--key", "skey-3glfot13", "--instances-file", str(good))
    assert done.returncode == EXIT_USAGE and "--region" in done.stderr  # click's own usage error


def test_api_trouble_exits_5(api: str, tmp_path: Path) -> None:
    good = fleet(tmp_path, "ins-r8hr2upy\n")
    done = keybind(api, "kb_not-a-token", "submit", *REGION, "--instances-file", str(good))
    assert done.returncode == EXIT_API and "401" in done.stderr
    nowhere = f"http://127.0.0.1:{free_port()}"
    done = keybind(nowhere, "kb_x", "status", "some-job")
    assert done.returncode == EXIT_API and "cannot reach the API" in done.stderr


def test_status_cancel_and_watch(api: str, token: str, tmp_path: Path) -> None:
    path = fleet(tmp_path, "".join(f"ins-a{i:07d}\n" for i in range(50)))
    job_id = job_id_of(keybind(api, token, "submit", *REGION, "--instances-file", str(path)).stdout)

    done = keybind(api, token, "status", job_id)
    assert done.returncode == EXIT_RUNNING, done.stderr
    assert job_id in done.stdout and "queued" in done.stdout

    # Follow it while another operator cancels it.
    watcher = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "status", job_id, "--watch"],
        env=keybind_env(api, token),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(2)
    done = keybind(api, token, "cancel", job_id)
    assert done.returncode == EXIT_OK, done.stderr
    assert "cancelled 50" in done.stdout
    out, err = watcher.communicate(timeout=30)
    assert watcher.returncode == EXIT_CANCELLED, err
    assert "cancelled" in out and "50" in out

    done = keybind(api, token, "status", job_id)
    assert done.returncode == EXIT_CANCELLED
    done = keybind(api, token, "status", "no-such-job")
    assert done.returncode == EXIT_USAGE and "404" in done.stderr
