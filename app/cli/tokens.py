"""`keybind apikey create|revoke`: API tokens, straight in the database (no API needed)."""

from __future__ import annotations

from typing import Annotated

import typer

from app.auth.tokens import DEFAULT_SCOPES, create_token, revoke_token
from app.config import get_settings
from app.runtime import Runtime


def create(
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


def revoke(name: Annotated[str, typer.Option(help="The token's name.")]) -> None:
    """Revoke a token: requests carrying it get 401 from now on."""
    rt = Runtime(get_settings())
    try:
        revoked = revoke_token(rt.sessions, name=name)
    finally:
        rt.close()
    if not revoked:
        typer.echo(f"error: no active token named {name!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {name}")
