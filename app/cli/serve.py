"""`keybind migrate|api|worker|beat|flower|simulator`: run one part of the service.

Each command imports its server when it runs: every other command (`keybind status`...)
would otherwise pay for Celery's, uvicorn's or the simulator's start-up.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from app.cli.dev_credentials import (
    DEV_JD_ACCESS_KEY,
    DEV_JD_SECRET_KEY,
    DEV_SECRET_ID,
    DEV_SECRET_KEY,
)
from app.config import Settings, get_settings
from app.migrate import upgrade


def migrate() -> None:
    """Bring the database schema up to date (alembic upgrade head)."""
    settings = get_settings()
    upgrade(settings)
    typer.echo("database schema is up to date")


def api(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
) -> None:
    """Serve the HTTP API."""
    import uvicorn

    uvicorn.run(
        "app.api.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        access_log=False,
    )


def _worker_argv(settings: Settings, concurrency: int, *, beat: bool) -> list[str]:
    prefix = settings.queue_prefix
    argv = [
        "worker",
        f"--concurrency={concurrency}",
        f"--queues={prefix}.bind,{prefix}.control",
        "--loglevel=INFO",
        f"--hostname=keybind-{os.getpid()}@%h",
    ]
    if settings.uses_embedded_broker:
        # The filesystem broker has no fanout for worker-to-worker chatter.
        argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    if beat:
        argv += ["--beat", f"--schedule={(settings.home / 'celerybeat-schedule').resolve()}"]
    return argv


def worker(
    concurrency: Annotated[int, typer.Option(help="Worker processes.")] = 4,
    beat: Annotated[bool, typer.Option(help="Also run the scheduler in this process.")] = False,
) -> None:
    """Run a Celery worker that binds keys (and runs the dispatcher's ticks)."""
    from app.worker.celery_app import create_celery

    settings = get_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    create_celery(settings).worker_main(_worker_argv(settings, concurrency, beat=beat))


def beat() -> None:
    """Run the scheduler that ticks the dispatcher and sweeper (run exactly one)."""
    from app.worker.celery_app import create_celery

    settings = get_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    schedule = (settings.home / "celerybeat-schedule").resolve()
    create_celery(settings).start(["beat", "--loglevel=INFO", f"--schedule={schedule}"])


def flower(
    port: Annotated[int, typer.Option(help="Port for Flower's web UI.")] = 5555,
    address: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
) -> None:
    """Run Flower on keybind's broker: a live view of workers and tasks."""
    from app.worker.celery_app import create_celery

    settings = get_settings()
    create_celery(settings).start(["flower", f"--port={port}", f"--address={address}"])


def simulator(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 9100,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    fleet: Annotated[
        Path | None, typer.Option(help="Fleet file (JSON), see docs/simulator.md.")
    ] = None,
    rate_limit: Annotated[
        float | None, typer.Option(help="AssociateInstancesKeyPairs calls/s (default 10).")
    ] = None,
    secret_id: Annotated[
        str | None, typer.Option(envvar="TENCENTCLOUD_SECRET_ID", help="Accepted SecretId.")
    ] = None,
    secret_key: Annotated[
        str | None,
        typer.Option(
            envvar="TENCENTCLOUD_SECRET_KEY", help="Accepted SecretKey.", show_default=False
        ),
    ] = None,
    jd_access_key: Annotated[
        str | None,
        typer.Option(envvar="JDCLOUD_ACCESS_KEY", help="Accepted JD Cloud AccessKey."),
    ] = None,
    jd_secret_key: Annotated[
        str | None,
        typer.Option(
            envvar="JDCLOUD_SECRET_KEY", help="Accepted JD Cloud SecretKey.", show_default=False
        ),
    ] = None,
) -> None:
    """Run the cloud simulator: Tencent CVM on `/` and JD Cloud VM on `/v1/regions/...`."""
    from app.simulator.app import config_from_options
    from app.simulator.server import run

    config = config_from_options(
        port=port,
        fleet=fleet,
        rate_limit=rate_limit,
        secret_id=secret_id or DEV_SECRET_ID,
        secret_key=secret_key or DEV_SECRET_KEY,
        jd_access_key=jd_access_key or DEV_JD_ACCESS_KEY,
        jd_secret_key=jd_secret_key or DEV_JD_SECRET_KEY,
    )
    run(config, host=host, port=port)
