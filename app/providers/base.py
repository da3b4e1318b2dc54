"""What every cloud provider offers the worker, in keybind's own types.

Vendor payloads and `httpx.Response` never leave `providers/<vendor>/`; the worker only sees
`CallResult` and the `ErrorClass` that says what to do next.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class ErrorClass(StrEnum):
    """What the worker does with a failed call."""

    RETRY = "retry"  # busy/mutex, throttled, internal error, 5xx, timeout, connection error
    WAIT_STATE = "wait_state"  # instance in a transitional state: retry once it settles
    POWER_STATE = "power_state"  # instance running and the job did not allow a force stop
    TERMINAL = "terminal"  # retrying cannot help: not found, malformed, Windows, auth...

    @property
    def retryable(self) -> bool:
        return self in (ErrorClass.RETRY, ErrorClass.WAIT_STATE)


@dataclass(frozen=True, slots=True)
class CallError:
    code: str
    message: str
    error_class: ErrorClass


@dataclass(frozen=True, slots=True)
class BindRequest:
    region: str
    instance_ids: tuple[str, ...]
    key_ids: tuple[str, ...]
    force_stop: bool = False


@dataclass(frozen=True, slots=True)
class CallResult:
    """One API call's outcome. `error is None` means the cloud accepted the call."""

    action: str
    request_id: str | None
    latency_ms: float
    http_status: int | None
    error: CallError | None = None
    # Clouds that answer per instance (JD) name the instances that failed; empty otherwise.
    failed_instances: dict[str, CallError] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


class Provider(Protocol):
    """A cloud that can bind key pairs to instances."""

    name: str
    bind_action: str

    def bind(self, request: BindRequest) -> CallResult: ...

    def close(self) -> None: ...
