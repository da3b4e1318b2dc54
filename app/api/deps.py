"""Request dependencies: the process runtime and the authenticated caller."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from app.api.errors import ApiError
from app.auth.tokens import Principal, authenticate
from app.jobs.ports import Producer
from app.jobs.status import Bodies
from app.runtime import Runtime


# Dependencies without I/O are coroutines: FastAPI runs a plain `def` dependency on the
# threadpool, a hop (and a thread wake-up) per request for nothing.
async def get_rt(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


async def get_producer(request: Request) -> Producer:
    producer: Producer = request.app.state.producer
    return producer


async def get_bodies(request: Request) -> Bodies:
    bodies: Bodies = request.app.state.job_bodies
    return bodies


RuntimeDep = Annotated[Runtime, Depends(get_rt)]
BodiesDep = Annotated[Bodies, Depends(get_bodies)]
ProducerDep = Annotated[Producer, Depends(get_producer)]


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


async def bearer(request: Request) -> str:
    """The request's bearer token (401 without one); no I/O, so checked before anything."""
    return _bearer(request)


BearerToken = Annotated[str, Depends(bearer)]


def admit(principal: Principal | None, scope: str) -> Principal:
    """The caller, if its token is known (else 401) and holds `scope` (else 403)."""
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


def _lookup(rt: Runtime, token: str) -> Principal | None:
    # One statement on an autocommit connection: no BEGIN and ROLLBACK round trips.
    with rt.autocommit.connect() as conn:
        return authenticate(conn, token)


def require(scope: str) -> Callable[..., Awaitable[Principal]]:
    async def dependency(token: BearerToken, rt: RuntimeDep) -> Principal:
        return admit(await run_in_threadpool(_lookup, rt, token), scope)

    return dependency


READ = "jobs:read"
Reader = Annotated[Principal, Depends(require(READ))]
Writer = Annotated[Principal, Depends(require("jobs:write"))]
