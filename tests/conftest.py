"""Shared fixtures: a real PostgreSQL database migrated once per run, real Redis, real processes."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import text

from app.auth.tokens import create_token
from app.broker.celery_app import celery_for
from app.broker.producer import CeleryProducer
from app.config import Settings
from app.migrate import upgrade
from app.runtime import Runtime

PG_ADMIN = os.environ.get("KEYBIND_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_HOST_URL = os.environ.get("KEYBIND_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("KEYBIND_TEST_REDIS", "redis://127.0.0.1:6379/1")
RUN_ID = uuid.uuid4().hex[:8]
TEST_DB = f"keybind_test_{RUN_ID}"

os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh database for this test run, migrated with the project's own migrations."""
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{TEST_DB}"')
    url = f"{PG_HOST_URL}/{TEST_DB}"
    upgrade(Settings(database_url=url))
    yield url
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (TEST_DB,)
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{TEST_DB}"')


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Settings for one test: its own queues, fast retries, the shared test database."""
    return Settings(
        database_url=database_url,
        redis_url=REDIS_URL,
        queue_prefix=f"kbtest-{uuid.uuid4().hex[:8]}",
        home=tmp_path / "home",
        backoff_base_s=0.2,
        backoff_max_s=1.0,
        dispatch_interval_s=0.5,
        lease_s=15.0,
        dispatch_lease_s=10.0,
    )


@pytest.fixture
def rt(settings: Settings) -> Iterator[Runtime]:
    runtime = Runtime(settings)
    with runtime.sessions.begin() as session:
        session.execute(
            text("TRUNCATE jobs, targets, attempts, api_tokens RESTART IDENTITY CASCADE")
        )
    yield runtime
    runtime.close()


@pytest.fixture
def producer(rt: Runtime) -> CeleryProducer:
    """Sends to the test's own queues, as the API and the workers do."""
    return CeleryProducer(celery_for(rt.settings), rt.settings)


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def token(rt: Runtime) -> str:
    return create_token(rt.sessions, name=f"test-{uuid.uuid4().hex[:6]}")


@pytest.fixture
def client(rt: Runtime, token: str) -> Iterator[TestClient]:
    """The real API app in-process, authenticated, sharing the test's runtime settings."""
    from app.api.main import create_app

    app = create_app(rt.settings)
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as c:
        yield c
