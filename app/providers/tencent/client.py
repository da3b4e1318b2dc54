"""Tencent Cloud CVM API 3.0 client on httpx: one typed method per action, never raises for
the cloud's or the network's failures; every call comes back as a `CallResult`."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from app.providers import slots
from app.providers.base import CallError, CallResult, ProviderConfigError, Slot, utcnow
from app.providers.http import cloud_client, endpoint_base, no_answer
from app.providers.tencent.errors import classify
from app.providers.tencent.signing import TC3Auth

VERSION = "2017-03-12"
ASSOCIATE = "AssociateInstancesKeyPairs"
DESCRIBE_INSTANCES = "DescribeInstances"
DESCRIBE_KEY_PAIRS = "DescribeKeyPairs"
MAX_IDS_PER_CALL = 100


@dataclass(frozen=True, slots=True)
class InstanceView:
    instance_id: str
    state: str
    os_name: str
    key_ids: tuple[str, ...]
    latest_operation: str | None
    latest_operation_state: str | None
    latest_operation_request_id: str | None
    latest_operation_error: str | None
    tags: dict[str, str]


@dataclass(frozen=True, slots=True)
class _Call:
    """A call under way: what it covers and when it started."""

    action: str
    instance_ids: tuple[str, ...]
    started_at: datetime
    started: float  # perf_counter, for the latency

    def result(
        self, status: int | None, request_id: str | None, error: CallError | None
    ) -> CallResult:
        latency = (time.perf_counter() - self.started) * 1000
        return CallResult(
            self.action,
            request_id,
            latency,
            status,
            error,
            instance_ids=self.instance_ids,
            started_at=self.started_at,
        )

    def failed(self, status: int | None, code: str, message: str) -> CallResult:
        return self.result(status, None, CallError(code, message, classify(code)))


class TencentClient:
    """Calls CVM actions; `transport` lets tests inject an `httpx.MockTransport`."""

    def __init__(
        self,
        *,
        endpoint: str,
        secret_id: str,
        secret_key: str,
        session_token: str | None = None,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.endpoint = endpoint_base(endpoint, "KEYBIND_TENCENT_ENDPOINT")
        self._http = cloud_client(
            self.endpoint,
            auth=TC3Auth(secret_id, secret_key, session_token=session_token),
            timeout_s=timeout_s,
            transport=transport,
        )

    def __repr__(self) -> str:  # never the credentials
        return f"TencentClient(endpoint={self.endpoint!r})"

    def call(
        self, action: str, region: str, params: dict[str, Any], slot: Slot | None = None
    ) -> tuple[CallResult, dict[str, Any]]:
        """POST one action; returns the result and the `Response` object (empty on failure).
        `slot`: the limiter's grant for this call, marked sent as the request goes out."""
        body = json.dumps(params).encode()
        headers = {
            "Content-Type": "application/json",
            "X-TC-Action": action,
            "X-TC-Version": VERSION,
            "X-TC-Region": region,
            "X-TC-Language": "en-US",
        }
        call = _Call(action, tuple(params.get("InstanceIds") or ()), utcnow(), time.perf_counter())
        try:
            response = self._http.post(
                "/", content=body, headers=headers, extensions=slots.extensions(slot)
            )
        except httpx.TransportError as exc:
            return call.failed(None, *no_answer(exc)), {}
        if response.status_code != 200:
            message = f"HTTP {response.status_code}: {response.text[:200]}"
            return call.failed(response.status_code, "keybind.HttpStatus", message), {}
        try:
            payload = response.json()["Response"]
            assert isinstance(payload, dict)
        except (ValueError, KeyError, TypeError, AssertionError):
            message = f"not an API 3.0 answer: {response.text[:200]!r}"
            return call.failed(200, "keybind.BadResponse", message), {}
        error = payload.get("Error")
        call_error = None
        if isinstance(error, dict):
            code = str(error.get("Code", "UnknownError"))
            call_error = CallError(code, str(error.get("Message", "")), classify(code))
        return call.result(200, payload.get("RequestId"), call_error), payload

    def associate_instances_key_pairs(
        self,
        region: str,
        instance_ids: list[str],
        key_ids: list[str],
        force_stop: bool,
        slot: Slot | None = None,
    ) -> CallResult:
        params = {"InstanceIds": instance_ids, "KeyIds": key_ids, "ForceStop": force_stop}
        return self.call(ASSOCIATE, region, params, slot)[0]

    def describe_instances(
        self,
        region: str,
        instance_ids: list[str] | None = None,
        filters: list[dict[str, Any]] | None = None,
        offset: int = 0,
        limit: int = 100,
        slot: Slot | None = None,
    ) -> tuple[CallResult, list[InstanceView]]:
        params: dict[str, Any] = {"Offset": offset, "Limit": limit}
        if instance_ids:
            params["InstanceIds"] = instance_ids
        if filters:
            params["Filters"] = filters
        result, payload = self.call(DESCRIBE_INSTANCES, region, params, slot)
        views = [
            InstanceView(
                instance_id=i.get("InstanceId", ""),
                state=i.get("InstanceState", ""),
                os_name=i.get("OsName", ""),
                key_ids=tuple((i.get("LoginSettings") or {}).get("KeyIds") or ()),
                latest_operation=i.get("LatestOperation"),
                latest_operation_state=i.get("LatestOperationState"),
                latest_operation_request_id=i.get("LatestOperationRequestId"),
                latest_operation_error=i.get("LatestOperationErrorMsg"),
                tags={t.get("Key", ""): t.get("Value", "") for t in i.get("Tags") or []},
            )
            for i in payload.get("InstanceSet") or []
        ]
        return result, views

    def close(self) -> None:
        self._http.close()


__all__ = [
    "ASSOCIATE",
    "DESCRIBE_INSTANCES",
    "InstanceView",
    "ProviderConfigError",
    "TencentClient",
]
