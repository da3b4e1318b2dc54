"""The HTTP API: `create_app(settings)` builds it; nothing is built at import time."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy import text

from app.api import errors
from app.api.deps import Reader, RuntimeDep
from app.api.limits import BodyLimit
from app.api.metrics import KeybindCollector
from app.api.routes import hooks, jobs, ui
from app.broker.celery_app import celery_for
from app.broker.producer import CeleryProducer
from app.config import Settings, get_settings
from app.jobs.status import Bodies
from app.runtime import Runtime


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    runtime = Runtime(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # What exists by now (modules, this app, its routes and schemas: ~160k objects) lives
        # as long as the process. Frozen, the collector no longer walks it: a full collection
        # otherwise stalls every request in flight for 20-150 ms on a busy machine.
        gc.collect()
        gc.freeze()
        yield
        gc.unfreeze()
        runtime.close()

    app = FastAPI(
        title="keybind",
        version="0.1.0",
        description="Bind SSH key pairs to cloud instances in bulk.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    # The API only sends (a kick to the dispatcher after each submission).
    app.state.producer = CeleryProducer(celery_for(settings), settings)
    # Status bodies this process rendered, by job and version (see app/jobs/status.py).
    app.state.job_bodies = Bodies()
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    errors.install(app)
    app.include_router(jobs.router)
    app.include_router(hooks.router)
    app.include_router(ui.router)
    # Everything is read from PostgreSQL and Redis at scrape time (see app/api/metrics.py), so
    # the registry is per app and holds no counts of its own.
    registry = CollectorRegistry(auto_describe=False)
    registry.register(KeybindCollector(runtime))

    @app.get("/metrics", tags=["ops"], response_class=Response)
    def metrics(_: Reader) -> Response:
        """Prometheus text format; needs a token with jobs:read, like every read."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", tags=["ops"])
    def healthz(rt: RuntimeDep) -> dict[str, str]:
        with rt.sessions() as session:
            session.execute(text("SELECT 1"))
        return {"status": "ok"}

    return app
