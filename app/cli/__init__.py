"""The `keybind` command: run each part of the service, manage API tokens, follow jobs, or run
all of it at once (`keybind dev`). Each group of commands is its own module; this one only
assembles them."""

from __future__ import annotations

from collections.abc import Callable

import typer

from app.cli import dev, ops, serve, tokens

cli = typer.Typer(help="Bind SSH key pairs to cloud instances in bulk.", no_args_is_help=True)
apikey = typer.Typer(help="Create and revoke API tokens.", no_args_is_help=True)
cli.add_typer(apikey, name="apikey")

COMMANDS: tuple[Callable[..., None], ...] = (
    serve.migrate,
    serve.api,
    serve.worker,
    serve.beat,
    serve.flower,
    serve.simulator,
    ops.submit,
    ops.status,
    ops.cancel,
    dev.dev,
)
for command in COMMANDS:
    cli.command()(command)
apikey.command("create")(tokens.create)
apikey.command("revoke")(tokens.revoke)


def main() -> None:
    cli()
