"""`keybind submit|status|cancel`: the operator's commands. They talk to the HTTP API (never
the database), so they work from any machine with a token."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from app.cli.client import ApiClient, ApiProblem, ApiUnreachable
from app.cli.fleet_file import FleetFileError, read_instance_ids
from app.cli.watch import EXIT_API, EXIT_OK, EXIT_USAGE, exit_code, follow, summary

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
    if not token:
        typer.echo("error: set KEYBIND_API_TOKEN (or pass --token)", err=True)
        raise typer.Exit(EXIT_USAGE)


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


def status(
    job: Annotated[str, typer.Argument(help="The job ID.")],
    watch: Annotated[
        bool, typer.Option(help="Follow it with a progress bar until it ends.")
    ] = False,
    api_url: ApiUrl = "http://127.0.0.1:8000",
    token: ApiToken = "",
) -> None:
    """Show a job. Exit code: 0 succeeded, 1 failed, 3 partial, 4 cancelled, 6 not final yet."""
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


def cancel(
    job: Annotated[str, typer.Argument(help="The job ID.")],
    api_url: ApiUrl = "http://127.0.0.1:8000",
    token: ApiToken = "",
) -> None:
    """Cancel a job: instances not yet called are cancelled at once; calls in flight finish."""

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
