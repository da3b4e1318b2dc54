"""Settings: one typed object read from the environment, never built at import time."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.webhooks.signing import parse_secrets

DEFAULT_HOME = Path(".keybind")


class Settings(BaseSettings):
    """Everything keybind reads from its environment (`KEYBIND_*` plus the clouds' own names)."""

    # hide_input_in_errors: a malformed secret must not be echoed into a start-up error.
    model_config = SettingsConfigDict(
        env_prefix="KEYBIND_", extra="ignore", populate_by_name=True, hide_input_in_errors=True
    )

    # Embedded defaults: a SQLite file, a filesystem broker and a file-based limiter, so
    # `keybind dev` runs with nothing but Python. Production sets PostgreSQL and Redis URLs.
    home: Path = DEFAULT_HOME
    database_url: str = ""
    redis_url: str = ""
    broker_url: str = ""
    queue_prefix: str = "keybind"

    tencent_endpoint: str = "https://cvm.tencentcloudapi.com"
    tencentcloud_secret_id: SecretStr | None = Field(
        default=None, validation_alias="TENCENTCLOUD_SECRET_ID"
    )
    tencentcloud_secret_key: SecretStr | None = Field(
        default=None, validation_alias="TENCENTCLOUD_SECRET_KEY"
    )
    tencentcloud_session_token: SecretStr | None = Field(
        default=None, validation_alias="TENCENTCLOUD_SESSION_TOKEN"
    )

    jdcloud_endpoint: str = "https://vm.jdcloud-api.com"
    jdcloud_access_key: SecretStr | None = Field(
        default=None, validation_alias="JDCLOUD_ACCESS_KEY"
    )
    jdcloud_secret_key: SecretStr | None = Field(
        default=None, validation_alias="JDCLOUD_SECRET_KEY"
    )
    # JD publishes no rate limit; calls/s for each JD action (attach, detach, describe).
    jdcloud_rate_limit: float = Field(default=5.0, gt=0)

    # Named accounts beyond the env-built "default" (app/providers/accounts.py has the format).
    accounts_file: Path | None = None

    # Calls/s of each provider's bind action per account; unset: the cloud's documented limit
    # (Tencent: 10). An account's own `rates` in the accounts file win over both.
    rate_limit: float | None = Field(default=None, gt=0)
    # The limiter's window is one second plus this margin, so scheduling jitter between our
    # grant and the cloud's clock cannot push an 11th call into one of the cloud's seconds.
    rate_limit_margin_ms: int = Field(default=10, ge=0, le=500)
    # A grant older than this when its request goes on the wire is re-stamped to the send
    # (one more Redis round trip); younger ones rely on the margin. Keep it well under it.
    rate_limit_restamp_ms: float = Field(default=2.0, ge=0, le=500)
    rate_limit_max_wait_s: float = Field(default=5.0, gt=0)

    max_attempts: int = Field(default=8, ge=1)
    retry_budget_s: float = Field(default=900.0, gt=0)
    backoff_base_s: float = Field(default=1.0, gt=0)
    backoff_max_s: float = Field(default=60.0, gt=0)

    http_timeout_s: float = Field(default=10.0, gt=0)
    lease_s: float = Field(default=60.0, gt=0)
    dispatch_lease_s: float = Field(default=30.0, gt=0)
    dispatch_horizon_s: float = Field(default=3.0, gt=0)
    dispatch_interval_s: float = Field(default=1.0, gt=0)
    # Verify phase: first look this long after the bind was accepted, then back off up to
    # verify_interval_max_s; a bind not confirmed within verify_budget_s fails.
    verify_delay_s: float = Field(default=1.0, ge=0)
    verify_interval_max_s: float = Field(default=10.0, gt=0)
    verify_budget_s: float = Field(default=600.0, gt=0)
    max_instances: int = Field(default=100_000, ge=1)
    # 100,000 instance IDs are about 1.7 MB of JSON; the limit leaves room without inviting abuse.
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)

    # Inbound webhooks (`POST /v1/hooks/rotate`): one or more `whsec_<base64>` secrets, comma
    # separated so a sender can move to a new secret while the old one still verifies.
    webhook_secret: SecretStr | None = None
    webhook_tolerance_s: int = Field(default=300, ge=1)
    # Webhook jobs jump ahead of bulk API jobs on the same account (the dispatcher serves
    # higher priorities first).
    webhook_priority: int = 10
    # Outbound callbacks: signed with this `whsec_<base64>` secret, retried with backoff.
    callback_secret: SecretStr | None = None
    callback_timeout_s: float = Field(default=10.0, gt=0)
    callback_max_attempts: int = Field(default=8, ge=1)
    callback_backoff_base_s: float = Field(default=2.0, gt=0)
    callback_backoff_max_s: float = Field(default=600.0, gt=0)
    # Callbacks go to public addresses only (no metadata service, localhost or private
    # network) unless this is set: for receivers inside your own network.
    callback_allow_private_networks: bool = False

    @field_validator("webhook_secret", "callback_secret")
    @classmethod
    def _whsec(cls, value: SecretStr | None) -> SecretStr | None:
        # Checked at start, so a mistyped secret stops the process instead of failing
        # every webhook with a 500. The message never contains the secret.
        if value is not None:
            try:
                if not parse_secrets(value.get_secret_value()):
                    raise ValueError("no secret in it")
            except ValueError as exc:
                raise ValueError(f"not a valid webhook secret list: {exc}") from None
        return value

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'keybind.sqlite3').resolve()}"

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or self.redis_url or "filesystem://"

    @property
    def uses_embedded_broker(self) -> bool:
        return self.effective_broker_url.startswith("filesystem://")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
