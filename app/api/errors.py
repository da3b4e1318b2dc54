"""Every error the API returns is JSON of one shape: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.jobs.schemas import PROVIDER_TAGS, FieldProblem
from app.jobs.submit import InvalidJob

log = logging.getLogger(__name__)

MAX_ECHO = 200  # characters of a bad value echoed back


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: list[FieldProblem] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details = details or []
        self.headers = headers


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[FieldProblem] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {
        "error": {
            "code": code,
            "message": message,
            "details": [d.model_dump() for d in details or []],
        }
    }
    return JSONResponse(body, status_code=status, headers=headers)


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or "body"


def _problem(error: Any) -> FieldProblem:
    """One validation error as a field problem. The job body is a union chosen by `provider`:
    a bad or missing tag is a problem with `provider`, and the tag is not part of a field's
    name (`instance_ids[1]`, not `jdcloud.instance_ids[1]`)."""
    loc = tuple(error["loc"])
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        body = error.get("input")
        value = body.get("provider") if isinstance(body, dict) else None
        expected = " or ".join(repr(t) for t in PROVIDER_TAGS)
        message = f"Input should be {expected}" if value is not None else "Field required"
        return FieldProblem(field=_field((*loc, "provider")), value=_echo(value), message=message)
    if len(loc) > 1 and loc[0] == "body" and loc[1] in PROVIDER_TAGS:
        loc = loc[:1] + loc[2:]
    return FieldProblem(field=_field(loc), value=_echo(error.get("input")), message=error["msg"])


def _echo(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value[:MAX_ECHO] if isinstance(value, str) else value
    text = repr(value)
    if len(text) <= MAX_ECHO and isinstance(value, list | dict):
        return value  # small enough to send back as it came
    return text if len(text) <= MAX_ECHO else text[:MAX_ECHO] + "..."


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.exception_handler(InvalidJob)
    async def _invalid_job(_: Request, exc: InvalidJob) -> JSONResponse:
        first = exc.problems[0]
        return error_response(
            422, "invalid_request", f"{first.field}: {first.message}", exc.problems
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [_problem(e) for e in exc.errors()[:20]]
        message = f"{details[0].field}: {details[0].message}" if details else "invalid request"
        return error_response(422, "invalid_request", message, details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers) if exc.headers else None
        return error_response(exc.status_code, "http_error", str(exc.detail), headers=headers)

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    async def _db_down(_: Request, exc: Exception) -> JSONResponse:
        # The driver's text can carry the connection URL; log its class, never echo it.
        log.error("database unavailable: %s", type(exc).__name__)
        return error_response(
            503,
            "database_unavailable",
            "the job store is unavailable; retry shortly",
            headers={"Retry-After": "2"},
        )

    @app.exception_handler(DBAPIError)
    async def _db_refused(_: Request, exc: DBAPIError) -> JSONResponse:
        # The database refused a statement (a constraint, or a move the domain does not
        # allow): keybind's bug, not the caller's and not an outage. The refusal's own first
        # line names it; the statement and its parameters stay out of the log.
        first = str(exc.orig).splitlines()[0] if exc.orig is not None else ""
        log.error("the database refused a statement: %s: %s", type(exc).__name__, first)
        return error_response(500, "internal_error", "keybind could not complete this request")
