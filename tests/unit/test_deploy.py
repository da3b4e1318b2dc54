"""docker-compose.yml and deploy/ cannot run here (no Docker engine), so check them as text:
every keybind service runs a real `keybind` subcommand with options it accepts, the worker
can scale, and every variable they use, and every setting keybind reads, is documented in
docs/configuration.md."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer
import yaml

from app.cli import cli
from app.config import Settings

REPO = Path(__file__).resolve().parents[2]
ROLES = {"postgres", "redis", "migrate", "api", "worker", "beat", "flower", "simulator"}
ENV_NAME = re.compile(r"\b(?:KEYBIND|TENCENTCLOUD)_[A-Z0-9_]+\b")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return loaded


def keybind_services() -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in compose()["services"].items()
        if str(svc.get("image", "")).startswith("keybind") or "build" in svc
    }


def group() -> Any:
    """The click group typer builds for `keybind` (what the installed command runs)."""
    command = typer.main.get_command(cli)
    assert hasattr(command, "commands"), "keybind should be a group of subcommands"
    return command


def test_every_role_is_a_service() -> None:
    assert set(compose()["services"]) >= ROLES


def test_every_keybind_service_runs_a_real_subcommand_with_valid_options() -> None:
    commands = group().commands
    services = keybind_services()
    assert set(services) >= {"migrate", "api", "worker", "beat", "flower", "simulator"}
    for name, svc in services.items():
        argv = svc["command"]
        assert isinstance(argv, list), f"{name}: use the exec form, a list"
        assert argv[0] in commands, f"{name}: `keybind {argv[0]}` is not a command"
        # Parse the options exactly as `keybind` would, without running anything.
        commands[argv[0]].make_context(argv[0], list(argv[1:]))


def test_the_dockerfile_runs_keybind() -> None:
    text = (REPO / "deploy" / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["keybind"]' in text
    default = re.search(r"^CMD (\[.*\])$", text, re.M)
    assert default is not None
    argv = yaml.safe_load(default.group(1))
    group().commands[argv[0]].make_context(argv[0], argv[1:])


def test_workers_scale_and_beat_is_one() -> None:
    services = compose()["services"]
    worker = services["worker"]
    # --scale worker=8 fails on a fixed container name or a published port.
    assert "container_name" not in worker and "ports" not in worker
    assert services["beat"].get("deploy", {}).get("replicas", 1) == 1
    assert services["migrate"]["restart"] == "no"
    for role in ("api", "worker", "beat", "flower"):
        deps = services[role]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully", role


def test_every_variable_used_and_every_setting_is_documented() -> None:
    configuration = (REPO / "docs" / "configuration.md").read_text()
    used = set(ENV_NAME.findall((REPO / "docker-compose.yml").read_text()))
    used |= set(ENV_NAME.findall((REPO / "deploy" / "env.example").read_text()))
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        used.add(alias if isinstance(alias, str) else f"KEYBIND_{name.upper()}")
    # The CLI's own client settings.
    used |= {"KEYBIND_API_URL", "KEYBIND_API_TOKEN"}
    missing = sorted(v for v in used if f"`{v}`" not in configuration)
    assert not missing, f"not in docs/configuration.md: {missing}"
