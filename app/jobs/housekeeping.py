"""Housekeeping: forget idempotency keys and webhook delivery ids once they are old enough."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from app.store import idempotency
from app.store.db import transaction, utcnow

# API clients retry within minutes; a day is plenty.
KEEP_KEYS_FOR = timedelta(hours=24)
# Webhook senders retry for a day or more (Svix: about 27 h), so their delivery ids are kept
# longer than API idempotency keys: a late retry must still find its job.
WEBHOOK_KEY_OWNER = "webhook"
KEEP_WEBHOOK_KEYS_FOR = timedelta(days=7)


def expire_idempotency_keys(*, sessions: sessionmaker[Session]) -> int:
    """Forget keys older than KEEP_KEYS_FOR (webhook delivery ids: KEEP_WEBHOOK_KEYS_FOR);
    their jobs stay."""
    now = utcnow()
    with transaction(sessions) as session:
        n = idempotency.expire_keys(session, now - KEEP_KEYS_FOR, exclude_owner=WEBHOOK_KEY_OWNER)
        return n + idempotency.expire_keys(
            session, now - KEEP_WEBHOOK_KEYS_FOR, owner=WEBHOOK_KEY_OWNER
        )
