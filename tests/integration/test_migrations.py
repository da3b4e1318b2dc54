"""The migrations and the models describe the same schema, and the chain has one head."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from app.config import Settings
from app.migrate import alembic_config, upgrade
from app.runtime import Runtime
from app.store import models  # noqa: F401  (registers the tables)
from app.store.db import Base, make_engine


def drift(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def test_models_match_the_migrated_postgresql_database(rt: Runtime) -> None:
    assert drift(rt.engine) == []


def test_migrations_run_on_sqlite_for_embedded_mode(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    upgrade(settings)
    engine = make_engine(settings)
    try:
        # SQLite reflects types loosely; what matters there is that every table and column exists.
        missing = [d for d in drift(engine) if d[0] in ("add_table", "add_column", "add_index")]
        assert missing == []
    finally:
        engine.dispose()


def test_the_migration_chain_has_one_head() -> None:
    heads = ScriptDirectory.from_config(alembic_config(Settings())).get_heads()
    assert len(heads) == 1, f"several heads, chain them: {heads}"
