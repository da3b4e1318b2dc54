"""The `keybind` command: run each part of the service, manage API tokens, or all of it at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import httpx
import typer

from app.config import Settings, get_settings

cli = typer.Typer(help="Bind SSH key pairs to cloud instances in bulk.", no_args_is_help=True)
apikey = typer.Typer(help="Create and revoke API tokens.", no_args_is_help=True)
cli.add_typer(apikey, name="apikey")

# Credentials the embedded simulator accepts when none are configured: `keybind dev` only.
DEV_SECRET_ID = "AKIDkeybindDEVkeybindDEVkeybindDEV"
DEV_SECRET_KEY = "keybindDEVsecretKEYkeybindDEVsecret"
DEV_JD_ACCESS_KEY = "JDCkeybindDEVaccessKEYkeybindDEV00"
DEV_JD_SECRET_KEY = "keybindDEVjdSECRETkeybindDEVjd0000"


@cli.command()
def migrate() -> None:
    """Bring the database schema up to date (alembic upgrade head)."""
    from app.migrate import upgrade

    settings = get_settings()
    upgrade(settings)
    typer.echo("database schema is up to date")


@cli.command()
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


@cli.command()
def worker(
    concurrency: Annotated[int, typer.Option(help="Worker processes.")] = 4,
    beat: Annotated[bool, typer.Option(help="Also run the scheduler in this process.")] = False,
) -> None:
    """Run a Celery worker that binds keys (and runs the dispatcher's ticks)."""
    from app.worker.celery_app import create_celery

    settings = get_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    create_celery(settings).worker_main(_worker_argv(settings, concurrency, beat=beat))


@cli.command()
def beat() -> None:
    """Run the scheduler that ticks the dispatcher and sweeper (run exactly one)."""
    from app.worker.celery_app import create_celery

    settings = get_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    schedule = (settings.home / "celerybeat-schedule").resolve()
    create_celery(settings).start(["beat", "--loglevel=INFO", f"--schedule={schedule}"])


@cli.command()
def flower(
    port: Annotated[int, typer.Option(help="Port for Flower's web UI.")] = 5555,
    address: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
) -> None:
    """Run Flower on keybind's broker: a live view of workers and tasks."""
    from app.worker.celery_app import create_celery

    settings = get_settings()
    create_celery(settings).start(["flower", f"--port={port}", f"--address={address}"])


@cli.command()
def simulator(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 9100,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    fleet: Annotated[Path | None, typer.Option(help="Fleet file (JSON), see README.")] = None,
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


@apikey.command("create")
def apikey_create(
    name: Annotated[str, typer.Option(help="Who or what the token is for.")],
    scope: Annotated[
        list[str] | None,
        typer.Option(help="jobs:read, jobs:write or admin; repeatable. Default: read and write."),
    ] = None,
    tenant: Annotated[
        str | None,
        typer.Option(help="Confine the token to this tenant's jobs. Default: sees every job."),
    ] = None,
) -> None:
    """Create an API token and print it once; only its hash is stored."""
    from app.auth.tokens import DEFAULT_SCOPES, create_token
    from app.runtime import Runtime

    rt = Runtime(get_settings())
    try:
        token = create_token(
            rt.sessions, name=name, scopes=tuple(scope or DEFAULT_SCOPES), tenant=tenant
        )
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    finally:
        rt.close()
    typer.echo(token)


@apikey.command("revoke")
def apikey_revoke(name: Annotated[str, typer.Option(help="The token's name.")]) -> None:
    """Revoke a token: requests carrying it get 401 from now on."""
    from app.auth.tokens import revoke_token
    from app.runtime import Runtime

    rt = Runtime(get_settings())
    try:
        revoked = revoke_token(rt.sessions, name=name)
    finally:
        rt.close()
    if not revoked:
        typer.echo(f"error: no active token named {name!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {name}")


ApiUrl = Annotated[
    str,
    typer.Option("--api-url", envvar="KEYBIND_API_URL", help="The keybind API.", show_envvar=True),
]
ApiToken = Annotated[
    str,
    typer.Option(
        "--token",
        envvar="KEYBIND_API_TOKEN",
        help="API token (keybind apikey create).",
        show_envvar=True,
        show_default=False,
    ),
]


def _operator_errors(run: Callable[[], int]) -> None:
    """Run an operator command; API trouble becomes a message and its exit code."""
    from app.operator.api import ApiProblem, ApiUnreachable
    from app.operator.watch import EXIT_API, EXIT_USAGE

    try:
        code = run()
    except ApiUnreachable as exc:
        typer.echo(f"error: cannot reach the API: {exc}", err=True)
        raise typer.Exit(EXIT_API) from exc
    except ApiProblem as exc:
        typer.echo(f"error: {exc}", err=True)
        usage = 400 <= exc.status < 500 and exc.status not in (401, 403)
        raise typer.Exit(EXIT_USAGE if usage else EXIT_API) from exc
    raise typer.Exit(code)


def _need_token(token: str) -> None:
    from app.operator.watch import EXIT_USAGE

    if not token:
        typer.echo("error: set KEYBIND_API_TOKEN (or pass --token)", err=True)
        raise typer.Exit(EXIT_USAGE)


@cli.command()
def submit(
    region: Annotated[str, typer.Option(help="The cloud region, e.g. ap-guangzhou.")],
    key: Annotated[list[str], typer.Option(help="Key pair ID to bind; repeatable.")],
    instances_file: Annotated[
        Path,
        typer.Option(help="One instance ID per line, or CSV with an instance ID column."),
    ],
    provider: Annotated[str, typer.Option(help="The cloud.")] = "tencent",
    force_stop: Annotated[
        bool, typer.Option(help="Let the cloud stop running instances, bind, and start them.")
    ] = False,
    wait: Annotated[bool, typer.Option(help="Follow the job with a progress bar.")] = False,
    callback_url: Annotated[
        str | None, typer.Option(help="URL that gets the signed job summary when it ends.")
    ] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Resubmitting with the same key returns the same job.")
    ] = None,
    api_url: ApiUrl = "http://127.0.0.1:8000",
    token: ApiToken = "",
) -> None:
    """Submit a job. With --wait: live progress, a summary, and exit 0 only if every
    instance succeeded (1 failed, 3 partial, 4 cancelled; 2 usage, 5 API trouble)."""
    from rich.console import Console

    from app.operator.api import ApiClient
    from app.operator.fleet import FleetFileError, read_instance_ids
    from app.operator.watch import EXIT_OK, EXIT_USAGE, exit_code, follow, summary

    _need_token(token)
    try:
        instance_ids = read_instance_ids(instances_file)
    except FleetFileError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from exc
    body: dict[str, object] = {
        "provider": provider,
        "region": region,
        "instance_ids": instance_ids,
        "key_ids": key,
        "force_stop": force_stop,
    }
    if callback_url:
        body["callback_url"] = callback_url

    def run() -> int:
        with ApiClient(api_url, token) as client:
            created = client.submit(body, idempotency_key)
            typer.echo(f"job {created['id']} accepted: {created['total']:,} instances")
            if not wait:
                return EXIT_OK
            job = follow(client, created["id"], Console(stderr=True))
            summary(client, job, Console())
            return exit_code(job)

    _operator_errors(run)


@cli.command()
def status(
    job: Annotated[str, typer.Argument(help="The job ID.")],
    watch: Annotated[
        bool, typer.Option(help="Follow it with a progress bar until it ends.")
    ] = False,
    api_url: ApiUrl = "http://127.0.0.1:8000",
    token: ApiToken = "",
) -> None:
    """Show a job. Exit code: 0 succeeded, 1 failed, 3 partial, 4 cancelled, 6 not final yet."""
    from rich.console import Console

    from app.operator.api import ApiClient
    from app.operator.watch import exit_code, follow, summary

    _need_token(token)

    def run() -> int:
        with ApiClient(api_url, token) as client:
            found = follow(client, job, Console(stderr=True)) if watch else client.job(job)[0]
            assert found is not None
            summary(client, found, Console())
            if not watch and found["eta_seconds"] is not None:
                typer.echo(
                    f"{found['progress'] * 100:.1f}% done, about {found['eta_seconds']:.0f} s left"
                )
            return exit_code(found)

    _operator_errors(run)


@cli.command()
def cancel(
    job: Annotated[str, typer.Argument(help="The job ID.")],
    api_url: ApiUrl = "http://127.0.0.1:8000",
    token: ApiToken = "",
) -> None:
    """Cancel a job: instances not yet called are cancelled at once; calls in flight finish."""
    from app.operator.api import ApiClient

    _need_token(token)

    def run() -> int:
        with ApiClient(api_url, token) as client:
            found = client.cancel(job)
        c = found["counts"]
        typer.echo(
            f"job {found['id']}: {found['state']}; cancelled {c['cancelled']:,}, "
            f"still running {c['running']:,}, succeeded {c['succeeded']:,}, failed {c['failed']:,}"
        )
        return 0

    _operator_errors(run)


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


@cli.command()
def dev(
    port: Annotated[int, typer.Option(help="API port.")] = 8000,
    simulator_port: Annotated[int, typer.Option(help="Simulator port.")] = 9100,
    concurrency: Annotated[int, typer.Option(help="Worker processes.")] = 2,
) -> None:
    """Simulator + API + worker on one machine, on embedded defaults (SQLite, no servers)."""
    from app.auth.tokens import create_token
    from app.migrate import upgrade
    from app.runtime import Runtime

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


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
