"""What a cloud call answered, in keybind's terms: error classes, per-call and per-instance
results. Providers build these from their vendor's payloads; the domain decides from them.
Pure: no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

_EMPTY: Mapping[str, Any] = MappingProxyType({})


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


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class CallResult:
    """One API call: which instances it covered and how it ended (`error is None`: accepted).

    Clouds that answer per instance (JD) put the instances that failed in `failed_instances`;
    the call-level `error` then stays None unless the whole call failed."""

    action: str
    request_id: str | None
    latency_ms: float
    http_status: int | None
    error: CallError | None = None
    failed_instances: Mapping[str, CallError] = field(default_factory=lambda: _EMPTY)
    instance_ids: tuple[str, ...] = ()
    started_at: datetime = field(default_factory=utcnow)

    @property
    def ok(self) -> bool:
        return self.error is None

    def error_for(self, instance_id: str) -> CallError | None:
        return self.failed_instances.get(instance_id, self.error)


class InstanceStatus(StrEnum):
    ACCEPTED = "accepted"  # the cloud took the bind; its outcome is still to be verified
    VERIFIED = "verified"  # the key is confirmed on the instance
    OPERATING = "operating"  # the cloud is still working on it: look again later
    FAILED = "failed"  # `error` says why, and its class whether to try again


@dataclass(frozen=True, slots=True)
class InstanceResult:
    status: InstanceStatus
    error: CallError | None = None
    request_id: str | None = None  # the call that decided this result
    # Facts worth keeping with the target, e.g. {"previous_key": "old"} from a JD replace.
    notes: Mapping[str, str] = field(default_factory=lambda: _EMPTY)


@dataclass(slots=True)
class Outcome:
    """Every call made (for the attempts table) and a result per instance it decided."""

    calls: list[CallResult] = field(default_factory=list)
    results: dict[str, InstanceResult] = field(default_factory=dict)

    def merge(self, other: Outcome) -> Outcome:
        """This outcome followed by `other` (a later result for an instance wins)."""
        return Outcome(self.calls + other.calls, {**self.results, **other.results})

    @classmethod
    def from_call(cls, call: CallResult, accepted: InstanceStatus) -> Outcome:
        """One all-or-nothing call: each instance gets `accepted` or the call's error."""
        results: dict[str, InstanceResult] = {}
        for iid in call.instance_ids:
            error = call.error_for(iid)
            status = accepted if error is None else InstanceStatus.FAILED
            results[iid] = InstanceResult(status, error, call.request_id)
        return cls([call], results)
