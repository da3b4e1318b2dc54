"""`keybind submit --wait` end to end: CLI -> API (uvicorn) -> PostgreSQL -> real Celery
workers -> simulator, with live progress and a summary table."""

from __future__ import annotations

import base64
from pathlib import Path

from pydantic import SecretStr

from app.cli.watch import EXIT_OK, EXIT_PARTIAL
from app.config import Settings
from tests.support.cli import keybind
from tests.support.processes import Processes, settings_env, wait_for
from tests.support.receiver import callback_receiver
from tests.support.server import api_server
from tests.support.simulator import Simulator

ARGS = ["--region", "ap-guangzhou", "--key", "skey-3glfot13"]


def test_submit_wait_follows_a_thousand_instances_to_a_summary(
    e2e_settings: Settings, token: str, simulator: Simulator, procs: Processes, tmp_path: Path
) -> None:
    procs.worker(settings_env(e2e_settings), concurrency=4, beat=True)
    path = tmp_path / "fleet.txt"
    path.write_text("".join(f"ins-w{i:07d}\n" for i in range(1000)))
    with api_server(e2e_settings) as api:
        done = keybind(
            api, token, "submit", *ARGS, "--instances-file", str(path), "--wait", timeout=600
        )
    print(done.stdout, done.stderr, sep="\n")
    assert done.returncode == EXIT_OK, done.stderr
    assert "accepted: 1,000 instances" in done.stdout
    assert "1000/1000" in done.stderr  # the progress bar's last frame
    summary = done.stdout.split("accepted", 1)[1]
    assert "succeeded" in summary and "1,000" in summary
    assert "failed instances by error code" not in summary


def test_a_partial_job_exits_3_and_lists_its_error_codes_and_calls_back(
    e2e_settings: Settings, token: str, simulator: Simulator, procs: Processes, tmp_path: Path
) -> None:
    secret = "whsec_" + base64.b64encode(b"e2e-callback-secret-0123456789").decode()
    settings = e2e_settings.model_copy(
        update={"callback_secret": SecretStr(secret), "callback_allow_private_networks": True}
    )
    env = settings_env(
        settings, KEYBIND_CALLBACK_SECRET=secret, KEYBIND_CALLBACK_ALLOW_PRIVATE_NETWORKS="true"
    )
    procs.worker(env, concurrency=2, beat=True)
    ids = [f"ins-p{i:07d}" for i in range(40)]
    simulator.set_missing(ids[:3])
    path = tmp_path / "fleet.txt"
    path.write_text("\n".join(ids))
    with callback_receiver([200]) as receiver, api_server(settings) as api:
        done = keybind(
            api,
            token,
            "submit",
            *ARGS,
            "--instances-file",
            str(path),
            "--wait",
            "--callback-url",
            receiver.url,
        )
        print(done.stdout, done.stderr, sep="\n")
        assert done.returncode == EXIT_PARTIAL, done.stderr
        assert "partial" in done.stdout
        assert "InvalidInstanceId.NotFound" in done.stdout and "ins-p0000000" in done.stdout
        # The worker's beat tick posts the summary to the callback URL.
        wait_for(lambda: len(receiver.requests) == 1, timeout=30, what="the callback")
    assert b'"state":"partial"' in receiver.requests[0].body
