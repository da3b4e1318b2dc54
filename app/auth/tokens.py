"""API tokens: random secrets shown once, stored only as SHA-256 hashes, with scopes."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import Connection
from sqlalchemy.orm import Session, sessionmaker

from app.store import tokens as store
from app.store.db import transaction, utcnow

TOKEN_PREFIX = "kb_"
SCOPES = frozenset({"jobs:read", "jobs:write", "admin"})
DEFAULT_SCOPES = ("jobs:read", "jobs:write")
TENANT = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    scopes: frozenset[str]
    # None: an operator's token that sees every job. Otherwise only this tenant's jobs.
    tenant: str | None = None

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


def hash_token(token: str) -> str:
    # Tokens carry 256 random bits, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    sessions: sessionmaker[Session],
    *,
    name: str,
    scopes: tuple[str, ...] = DEFAULT_SCOPES,
    tenant: str | None = None,
) -> str:
    """A new token for `name`; the only time its plain value exists."""
    unknown = set(scopes) - SCOPES
    if unknown:
        raise ValueError(f"unknown scope(s): {', '.join(sorted(unknown))}")
    if tenant is not None and not TENANT.fullmatch(tenant):
        raise ValueError(f"tenant {tenant!r}: 1 to 64 letters, digits, '.', '_' or '-'")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with transaction(sessions) as session:
        if store.name_taken(session, name):
            raise ValueError(f"a token named {name!r} exists already")
        store.add_token(
            session,
            name=name,
            token_hash=hash_token(token),
            scopes=" ".join(sorted(set(scopes))),
            tenant=tenant,
            now=utcnow(),
        )
    return token


def revoke_token(sessions: sessionmaker[Session], *, name: str) -> bool:
    with transaction(sessions) as session:
        return store.revoke(session, name, utcnow())


def authenticate(db: Connection | Session, token: str) -> Principal | None:
    """The token's principal; None for an unknown or revoked token. One indexed read."""
    digest = hash_token(token)
    row = store.by_hash(db, digest)
    # The lookup is by hash; compare again in constant time so no timing leaks which prefix matched.
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return None
    return Principal(name=row.name, scopes=frozenset(row.scopes.split()), tenant=row.tenant)
