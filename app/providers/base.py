"""The seam between keybind and a cloud: what the worker hands a provider, what it gets back.

A cloud is one folder under `app/providers/<name>/` that exports a `ProviderSpec` (static
facts: regions, ID format, actions and their rates, error table, how to connect) and a
`Provider` (one connected account: `bind` and `verify`). Vendor payloads and
`httpx.Response` never leave the folder; the worker only sees the types below.

The worker owns the limiter: it hands the provider a `Pace`, which the provider calls with the
action name before EACH cloud call. `Pace` blocks until the global limiter grants a `Slot` for
(provider, account, action), or raises `NoSlot`; the provider passes the slot to the client
call, which tells it when the request is written (`app/providers/slots.py`). A provider lets
`NoSlot` propagate only when it has made no call yet; after a call it returns what it knows,
and every instance missing from `Outcome.results` is handed back to wait, untouched (no
attempt counted).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from pydantic import SecretStr

# The answers' types belong to the domain (it decides from them); the seam hands them on.
from app.config import Settings
from app.domain.calls import (
    CallError,
    CallResult,
    ErrorClass,
    InstanceResult,
    InstanceStatus,
    Outcome,
    utcnow,
)

__all__ = [
    "Account",
    "BindRequest",
    "CallError",
    "CallResult",
    "ErrorClass",
    "InstanceResult",
    "InstanceStatus",
    "NoSlot",
    "Outcome",
    "Pace",
    "Provider",
    "ProviderConfigError",
    "ProviderSpec",
    "Slot",
    "TargetProblem",
    "VerifyRequest",
    "utcnow",
]


class Slot(Protocol):
    """A limiter slot granted for one cloud call. The client tells it when the call's
    request is written, so the slot counts from when the cloud saw the call, not from the
    grant (`app/providers/slots.py`)."""

    def sending(self) -> None:
        """Just before the request is written; may wait for a fresh slot."""
        ...

    def sent(self) -> None:
        """Just after the request is written."""
        ...


Pace = Callable[[str], Slot]
"""Called with an action name before each cloud call; blocks for a slot or raises NoSlot.
The provider hands the slot to the client call it was taken for."""

_EMPTY: Mapping[str, Any] = MappingProxyType({})


class NoSlot(Exception):
    """The limiter had no slot for `action` within KEYBIND_RATE_LIMIT_MAX_WAIT_S."""

    def __init__(self, action: str) -> None:
        super().__init__(f"no rate-limit slot for {action}")
        self.action = action


class ProviderConfigError(Exception):
    """A provider or account cannot be built from the settings (names what is missing)."""


ErrorTable = Mapping[str, tuple[ErrorClass, str]]
"""A cloud's known error codes: each one's class and what it means (`<cloud>/errors.py`)."""


def error_table_markdown(table: ErrorTable, code_heading: str) -> str:
    """`table` as the Markdown table the README shows."""
    rows = [f"| {code_heading} | class | meaning |", "|---|---|---|"]
    rows += [f"| `{code}` | {cls.value} | {why} |" for code, (cls, why) in table.items()]
    return "\n".join(rows)


@dataclass(frozen=True, slots=True)
class BindRequest:
    region: str
    instance_ids: tuple[str, ...]
    key_ids: tuple[str, ...]  # in the provider's own terms: Tencent key IDs, JD key names
    force_stop: bool = False
    options: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)  # provider-specific


@dataclass(frozen=True, slots=True)
class VerifyRequest:
    region: str
    instance_ids: tuple[str, ...]
    key_ids: tuple[str, ...]
    # Each instance's accepted bind call, so the provider can find that very operation.
    bind_request_ids: Mapping[str, str | None] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True, slots=True)
class Account:
    """One named credential profile on one cloud; each has its own limiter buckets."""

    provider: str
    name: str
    endpoint: str
    credentials: Mapping[str, SecretStr]
    rates: Mapping[str, float] = field(default_factory=lambda: _EMPTY)  # action -> calls/s

    def secret(self, name: str) -> str | None:
        value = self.credentials.get(name)
        return value.get_secret_value() if value is not None else None

    def required(self, name: str, env_prefix: str) -> str:
        """A credential the account cannot call without. Missing, the error names where it
        should come from (`<env_prefix>NAME` for the default account), never a value."""
        value = self.secret(name)
        if not value:
            where = env_prefix if self.name == "default" else f"account {self.name!r}: "
            raise ProviderConfigError(f"{where}{name.upper()} is not set")
        return value

    def __repr__(self) -> str:  # never the credentials
        return f"Account(provider={self.provider!r}, name={self.name!r})"


def credentials_from(**values: SecretStr | None) -> dict[str, SecretStr]:
    """The credentials among `values` that are set, by name (None: not configured)."""
    return {name: value for name, value in values.items() if value is not None}


class Provider(Protocol):
    """One connected account on one cloud."""

    spec: ProviderSpec

    def bind(self, request: BindRequest, pace: Pace) -> Outcome:
        """Bind the keys to the instances (at most `spec.max_batch`)."""
        ...

    def verify(self, request: VerifyRequest, pace: Pace) -> Outcome:
        """Look each instance up: VERIFIED, OPERATING, or FAILED with the cloud's reason."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class TargetProblem:
    index: int
    value: str
    message: str


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """What keybind knows about a cloud without credentials."""

    name: str
    regions: frozenset[str]
    actions: Mapping[str, float]  # every action the provider calls -> documented calls/s
    bind_action: str
    verify_action: str | None  # None: the bind's answer is final, no verify phase
    max_batch: int  # instances per bind call
    instance_id: re.Pattern[str]
    instance_id_example: str
    classify: Callable[[str], ErrorClass]
    connect: Callable[[Account, Settings], Provider]
    default_account: Callable[[Settings], Account | None]  # from the cloud's own env names
    # Instances per bind task. 1 where one bad instance fails the whole call (Tencent); more
    # where the cloud answers per instance (JD).
    bind_batch: int = 1
    # For clouds that answer a multi-instance bind all-or-nothing: True when a call-level
    # error code can be one instance's fault, so the worker splits the call to find it.
    # Clouds that answer per instance (JD) never need it.
    names_an_instance: Callable[[str], bool] = field(default=lambda code: False)

    def validate_targets(self, instance_ids: Sequence[str]) -> list[TargetProblem]:
        if all(map(self.instance_id.fullmatch, instance_ids)):  # the common case, fast
            return []
        return [
            TargetProblem(i, v, f"not an ID like {self.instance_id_example}")
            for i, v in enumerate(instance_ids)
            if not self.instance_id.fullmatch(v)
        ]
