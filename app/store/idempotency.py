"""Idempotency keys: a client's `Idempotency-Key` (or a webhook's delivery id) and its job."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from app.store.models import IdempotencyKey


def claim_key(
    session: Session, *, owner: str, key: str, fingerprint: str, now: datetime
) -> IdempotencyKey | None:
    """Insert the key; None when this caller now holds it, else the row someone else holds."""
    dialect = session.get_bind().dialect.name
    values = {"owner": owner, "key": key, "fingerprint": fingerprint, "created_at": now}
    stmt: Any
    if dialect == "postgresql":
        stmt = pg_insert(IdempotencyKey).values(values).on_conflict_do_nothing()
    else:
        stmt = sqlite_insert(IdempotencyKey).values(values).on_conflict_do_nothing()
    # rowcount is not reliable with RETURNING on every driver; a returned id is.
    if session.execute(stmt.returning(IdempotencyKey.id)).scalar_one_or_none() is not None:
        return None
    return session.scalars(
        select(IdempotencyKey).where(IdempotencyKey.owner == owner, IdempotencyKey.key == key)
    ).one()


def take_over_key(session: Session, row_id: int, fingerprint: str, now: datetime) -> bool:
    """Take an abandoned in-flight key (its writer died before committing a job)."""
    result = session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.id == row_id, IdempotencyKey.job_id.is_(None))
        .values(fingerprint=fingerprint, created_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def bind_key(session: Session, *, owner: str, key: str, job_id: str) -> None:
    session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.owner == owner, IdempotencyKey.key == key)
        .values(job_id=job_id)
    )


def release_key(session: Session, *, owner: str, key: str) -> None:
    session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.owner == owner,
            IdempotencyKey.key == key,
            IdempotencyKey.job_id.is_(None),
        )
    )


def expire_keys(
    session: Session,
    before: datetime,
    *,
    owner: str | None = None,
    exclude_owner: str | None = None,
) -> int:
    stmt = delete(IdempotencyKey).where(IdempotencyKey.created_at < before)
    if owner is not None:
        stmt = stmt.where(IdempotencyKey.owner == owner)
    if exclude_owner is not None:
        stmt = stmt.where(IdempotencyKey.owner != exclude_owner)
    result = session.execute(stmt)
    return int(result.rowcount)  # type: ignore[attr-defined]
