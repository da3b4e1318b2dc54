"""Tables: jobs, their targets (one per instance), every API attempt, and API tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.store.db import Base, UTCDateTime

# SQLite only auto-increments INTEGER PRIMARY KEY, PostgreSQL wants BIGINT for 100k-row jobs.
BigId = BigInteger().with_variant(Integer(), "sqlite")

WAITING_SQL = text("state IN ('pending', 'retrying')")
# Accepted binds whose outcome is still to be confirmed, and no worker holds.
VERIFY_DUE_SQL = text("state = 'running' AND phase = 'verify' AND lease_token IS NULL")
CALLBACK_PENDING_SQL = text("callback_state = 'pending'")


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        # `GET /v1/jobs`: newest first, keyset-paged on (created_at, id).
        Index("ix_jobs_created", "created_at", "id"),
        # The callback tick's scan: finished jobs whose callback is still owed.
        Index(
            "ix_jobs_callback_due",
            "callback_next_at",
            postgresql_where=CALLBACK_PENDING_SQL,
            sqlite_where=CALLBACK_PENDING_SQL,
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    provider: Mapped[str] = mapped_column(String(16))
    account: Mapped[str] = mapped_column(String(64))
    region: Mapped[str] = mapped_column(String(32))
    key_ids: Mapped[list[str]] = mapped_column(JSON)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    power_policy: Mapped[str] = mapped_column(String(16))
    batch_size: Mapped[int] = mapped_column(Integer, default=1)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16), index=True)
    total: Mapped[int] = mapped_column(Integer)
    # Counters kept in the same transaction as each target move, so a status poll reads one
    # row instead of counting 100k targets.
    n_pending: Mapped[int] = mapped_column(Integer, default=0)
    n_running: Mapped[int] = mapped_column(Integer, default=0)
    n_retrying: Mapped[int] = mapped_column(Integer, default=0)
    n_succeeded: Mapped[int] = mapped_column(Integer, default=0)
    n_failed: Mapped[int] = mapped_column(Integer, default=0)
    n_cancelled: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[int] = mapped_column(Integer, default=0)
    submitted_by: Mapped[str] = mapped_column(String(128))
    # The submitting token's tenant; a token with a tenant sees only that tenant's jobs.
    tenant: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    source: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Set by `POST /v1/jobs/{id}/cancel`: waiting targets are cancelled and the job ends
    # `cancelled` once the calls already in flight have finished.
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Where to POST the job summary once it is final. callback_state is 'pending' from
    # submission until delivered ('delivered') or given up ('failed'); callback_next_at is
    # when the next attempt is due and doubles as the sender's lease while one is in flight.
    callback_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    callback_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    callback_next_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Target(Base):
    __tablename__ = "targets"
    __table_args__ = (
        UniqueConstraint("job_id", "instance_id"),
        # The dispatcher's scan: waiting targets of one job, oldest due first.
        Index(
            "ix_targets_waiting",
            "job_id",
            "next_attempt_at",
            postgresql_where=WAITING_SQL,
            sqlite_where=WAITING_SQL,
        ),
        Index("ix_targets_job_state", "job_id", "state", "id"),
        # The dispatcher's in-flight count: targets out with the broker, not yet claimed.
        Index(
            "ix_targets_dispatched",
            "job_id",
            "dispatched_until",
            postgresql_where=text("dispatched_until IS NOT NULL"),
            sqlite_where=text("dispatched_until IS NOT NULL"),
        ),
        # The dispatcher's verify scan: accepted binds waiting for their next look.
        Index(
            "ix_targets_verify_due",
            "job_id",
            "next_attempt_at",
            postgresql_where=VERIFY_DUE_SQL,
            sqlite_where=VERIFY_DUE_SQL,
        ),
        # The sweeper's scan: claims whose lease ran out.
        Index(
            "ix_targets_running_lease",
            "lease_until",
            postgresql_where=text("state = 'running'"),
            sqlite_where=text("state = 'running'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    instance_id: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Set when the dispatcher hands the target to the broker; a lost message is released
    # again once this passes.
    dispatched_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Set while a worker owns the target; only the holder of lease_token may record a result.
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    lease_token: Mapped[str | None] = mapped_column(String(32), nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(128), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The accepted bind call's RequestId (or the failed one's).
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # 'bind' until the cloud accepts the bind, then 'verify' (state stays running) until the
    # verify call confirms the key or gives up.
    phase: Mapped[str] = mapped_column(String(8), default="bind", server_default="bind")
    verify_request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    verify_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    verify_checks: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # What a provider noted about the instance, e.g. {"previous_key": "..."} (JD replace).
    notes: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # The key a JD replace detached from the instance before attaching the job's key.
    previous_key: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # Coalesced calls: a call that failed for one instance is retried in halves. Targets that
    # share a bisect_group go out together and with no one else; bisect_calls counts the calls
    # that included the target but ended in such a split (they say nothing about it, so they
    # do not count towards giving up).
    bisect_group: Mapped[str | None] = mapped_column(String(32), nullable=True)
    bisect_calls: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    first_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Attempt(Base):
    """One call to the cloud for one target: kept for audit and for counting calls."""

    __tablename__ = "attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("targets.id", ondelete="CASCADE"), index=True)
    action: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    latency_ms: Mapped[float] = mapped_column()
    http_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(128), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[str] = mapped_column(String(256))
    tenant: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class IdempotencyKey(Base):
    """A client's `Idempotency-Key` and the job it created; kept at least 24 h."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("owner", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(128))
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[str | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class CallbackAttempt(Base):
    """One POST of a job's summary to its callback_url, whatever came of it."""

    __tablename__ = "callback_attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    latency_ms: Mapped[float] = mapped_column()
    http_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # What went wrong in a few words ("HTTP 500", "ConnectTimeout"); null when delivered.
    error: Mapped[str | None] = mapped_column(String(256), nullable=True)
