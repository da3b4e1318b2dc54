"""API tokens: stored by name with the SHA-256 of the token, never the token itself."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.orm import Session

from app.store.models import ApiToken


def name_taken(session: Session, name: str) -> bool:
    return session.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None


def add_token(
    session: Session,
    *,
    name: str,
    token_hash: str,
    scopes: str,
    tenant: str | None,
    now: datetime,
) -> None:
    session.add(
        ApiToken(name=name, token_hash=token_hash, scopes=scopes, tenant=tenant, created_at=now)
    )


def revoke(session: Session, name: str, now: datetime) -> bool:
    result = session.execute(
        update(ApiToken)
        .where(ApiToken.name == name, ApiToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


_TOKENS = ApiToken.__table__.c
# Built once: every API request runs it.
_BY_HASH = select(_TOKENS.name, _TOKENS.token_hash, _TOKENS.scopes, _TOKENS.tenant).where(
    _TOKENS.token_hash == bindparam("digest"), _TOKENS.revoked_at.is_(None)
)


@dataclass(frozen=True, slots=True)
class TokenRow:
    name: str
    token_hash: str
    scopes: str
    tenant: str | None


def by_hash(db: Connection | Session, digest: str) -> TokenRow | None:
    """The live token with this hash; one indexed read."""
    row = db.execute(_BY_HASH, {"digest": digest}).first()
    return None if row is None else TokenRow(row.name, row.token_hash, row.scopes, row.tenant)
