"""Request dependencies: the process runtime and the authenticated caller."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from app.api.errors import ApiError
from app.auth.tokens import Principal, authenticate
from app.runtime import Runtime


def get_rt(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


RuntimeDep = Annotated[Runtime, Depends(get_rt)]


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401,
            "unauthenticated",
            "send Authorization: Bearer <token>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return token.strip()


def require(scope: str) -> Callable[..., Principal]:
    def dependency(request: Request, rt: RuntimeDep) -> Principal:
        token = _bearer(request)
        with rt.sessions() as session:
            principal = authenticate(session, token)
        if principal is None:
            raise ApiError(
                401,
                "unauthenticated",
                "unknown or revoked token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not principal.allows(scope):
            raise ApiError(403, "forbidden", f"this token lacks the {scope!r} scope")
        return principal

    return dependency


Reader = Annotated[Principal, Depends(require("jobs:read"))]
Writer = Annotated[Principal, Depends(require("jobs:write"))]
