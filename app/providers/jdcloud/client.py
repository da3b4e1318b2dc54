"""JD Cloud VM OpenAPI client on httpx: one typed method per action. Never raises for the
cloud's or the network's failures: every call comes back with a `CallResult` carrying its
requestId (body `requestId`, else the `x-jdcloud-request-id` header) and its error."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from app.providers import slots
from app.providers.base import CallError, CallResult, Slot
from app.providers.http import cloud_client, endpoint_base, no_answer
from app.providers.jdcloud.errors import classify
from app.providers.jdcloud.signing import JDCLOUD3, JDCloudAuth, Version

DEFAULT_ENDPOINT = "https://vm.jdcloud-api.com"
ATTACH = "attachKeypair"
DETACH = "detachKeypair"
DESCRIBE_INSTANCES = "describeInstances"
MIN_PAGE_SIZE, MAX_PAGE_SIZE = 10, 100


@dataclass(frozen=True, slots=True)
class KeypairResult:
    """attach/detach: the call, and the per-instance lists of a 200 answer."""

    call: CallResult
    succeeded: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class InstanceView:
    instance_id: str
    status: str
    os_type: str
    key_names: tuple[str, ...]
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InstancePage:
    call: CallResult
    instances: tuple[InstanceView, ...] = ()
    total: int = 0


def _error(code: str, message: str, http_status: int | None = None) -> CallError:
    return CallError(code=code, message=message, error_class=classify(code, message, http_status))


def query_pairs(
    *,
    page_number: int,
    page_size: int,
    filters: Mapping[str, Sequence[str]] | None = None,
    tags: Mapping[str, Sequence[str]] | None = None,
) -> list[tuple[str, str]]:
    """describeInstances parameters flattened as the SDK does, with 1-based indices."""
    pairs = [("pageNumber", str(page_number)), ("pageSize", str(page_size))]
    for i, (name, values) in enumerate((filters or {}).items(), start=1):
        pairs.append((f"filters.{i}.name", name))
        pairs += [(f"filters.{i}.values.{j}", v) for j, v in enumerate(values, start=1)]
    for i, (key, values) in enumerate((tags or {}).items(), start=1):
        pairs.append((f"tags.{i}.key", key))
        pairs += [(f"tags.{i}.values.{j}", v) for j, v in enumerate(values, start=1)]
    return pairs


class JDCloudClient:
    """Calls the VM actions keybind uses; `transport` lets tests inject an `httpx.MockTransport`."""

    def __init__(
        self,
        *,
        endpoint: str = DEFAULT_ENDPOINT,
        access_key: str,
        secret_key: str,
        timeout_s: float = 10.0,
        version: Version = JDCLOUD3,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.endpoint = endpoint_base(endpoint, "KEYBIND_JDCLOUD_ENDPOINT")
        self._http = cloud_client(
            self.endpoint,
            auth=JDCloudAuth(access_key, secret_key, version=version),
            timeout_s=timeout_s,
            transport=transport,
        )

    def __repr__(self) -> str:  # never the credentials
        return f"JDCloudClient(endpoint={self.endpoint!r})"

    def call(
        self,
        action: str,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Sequence[tuple[str, str]] | None = None,
        slot: Slot | None = None,
    ) -> tuple[CallResult, dict[str, Any]]:
        """One request; returns the result and the answer's `result` object (empty on failure).
        `slot`: the limiter's grant for this call, marked sent as the request goes out."""
        content = json.dumps(body).encode() if body is not None else b""
        started = time.perf_counter()
        try:
            response = self._http.request(
                method,
                path,
                content=content,
                # A tuple: httpx's type takes str pairs in a tuple, not in a list (invariant).
                params=tuple(params) if params is not None else None,
                headers={"Content-Type": "application/json"},
                extensions=slots.extensions(slot),
            )
        except httpx.TransportError as exc:
            return self._failed(action, started, None, *no_answer(exc)), {}
        latency = (time.perf_counter() - started) * 1000
        status = response.status_code
        header_id = response.headers.get("x-jdcloud-request-id")
        try:
            payload = response.json()
            assert isinstance(payload, dict)
        except (ValueError, AssertionError):
            code = "keybind.BadResponse" if status < 400 else "keybind.HttpStatus"
            message = f"HTTP {status}: {response.text[:200]!r}"
            return CallResult(action, header_id, latency, status, _error(code, message, status)), {}
        request_id = payload.get("requestId") or header_id
        error = payload.get("error")
        if isinstance(error, dict) or status >= 400:
            err = error if isinstance(error, dict) else {}
            code = str(err.get("status") or "keybind.HttpStatus")
            message = str(err.get("message") or f"HTTP {status}")
            return CallResult(
                action, request_id, latency, status, _error(code, message, status)
            ), {}
        result = payload.get("result")
        body = result if isinstance(result, dict) else {}
        return CallResult(action, request_id, latency, status), body

    @staticmethod
    def _failed(
        action: str, started: float, status: int | None, code: str, message: str
    ) -> CallResult:
        latency = (time.perf_counter() - started) * 1000
        return CallResult(action, None, latency, status, _error(code, message, status))

    @staticmethod
    def _keypair_path(region: str, key_name: str, verb: str) -> str:
        # Region and key name are validated on submission; quoting keeps a bad one in its segment.
        return f"/v1/regions/{quote(region, safe='')}/keypairs/{quote(key_name, safe='')}:{verb}"

    def _keypair_call(
        self,
        action: str,
        path: str,
        body: dict[str, Any],
        instance_ids: Sequence[str],
        slot: Slot | None,
    ) -> KeypairResult:
        result, payload = self.call(action, "POST", path, body=body, slot=slot)
        if not result.ok:
            return KeypairResult(result)
        succeeded = tuple(str(i) for i in payload.get("successInstanceId") or ())
        failed = tuple(str(i) for i in payload.get("failInstanceId") or ())
        return KeypairResult(result, succeeded, failed)

    def attach_keypair(
        self,
        region: str,
        key_name: str,
        instance_ids: Sequence[str],
        password_auth: str,
        slot: Slot | None = None,
    ) -> KeypairResult:
        """POST /v1/regions/{region}/keypairs/{key}:attach; `password_auth` is `yes` or `no`."""
        body = {"instanceIds": list(instance_ids), "passWordAuth": password_auth}
        path = self._keypair_path(region, key_name, "attach")
        return self._keypair_call(ATTACH, path, body, instance_ids, slot)

    def detach_keypair(
        self, region: str, key_name: str, instance_ids: Sequence[str], slot: Slot | None = None
    ) -> KeypairResult:
        """POST /v1/regions/{region}/keypairs/{key}:detach."""
        path = self._keypair_path(region, key_name, "detach")
        body = {"instanceIds": list(instance_ids)}
        return self._keypair_call(DETACH, path, body, instance_ids, slot)

    def describe_instances(
        self,
        region: str,
        *,
        instance_ids: Sequence[str] | None = None,
        tags: Mapping[str, Sequence[str]] | None = None,
        page_number: int = 1,
        page_size: int = MAX_PAGE_SIZE,
        slot: Slot | None = None,
    ) -> InstancePage:
        """One page (1-based) of GET /v1/regions/{region}/instances, filtered by ID and tags."""
        if not MIN_PAGE_SIZE <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be within [{MIN_PAGE_SIZE}, {MAX_PAGE_SIZE}]")
        if page_number < 1:
            raise ValueError("page_number starts at 1")
        filters = {"instanceId": list(instance_ids)} if instance_ids else None
        params = query_pairs(
            page_number=page_number, page_size=page_size, filters=filters, tags=tags
        )
        path = f"/v1/regions/{quote(region, safe='')}/instances"
        result, payload = self.call(DESCRIBE_INSTANCES, "GET", path, params=params, slot=slot)
        if not result.ok:
            return InstancePage(result)
        views = tuple(
            InstanceView(
                instance_id=str(i.get("instanceId", "")),
                status=str(i.get("status", "")),
                os_type=str(i.get("osType", "")),
                key_names=tuple(str(k) for k in i.get("keyNames") or ()),
                tags={str(t.get("key", "")): str(t.get("value", "")) for t in i.get("tags") or []},
            )
            for i in payload.get("instances") or []
            if isinstance(i, dict)
        )
        return InstancePage(result, views, int(payload.get("totalCount") or 0))

    def describe_all(
        self,
        region: str,
        *,
        instance_ids: Sequence[str] | None = None,
        tags: Mapping[str, Sequence[str]] | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> tuple[list[CallResult], list[InstanceView]]:
        """Every page, until `pageNumber * pageSize >= totalCount`; stops at the first error."""
        calls: list[CallResult] = []
        views: list[InstanceView] = []
        page_number = 1
        while True:
            page = self.describe_instances(
                region,
                instance_ids=instance_ids,
                tags=tags,
                page_number=page_number,
                page_size=page_size,
            )
            calls.append(page.call)
            views += page.instances
            if not page.call.ok or page_number * page_size >= page.total or not page.instances:
                return calls, views
            page_number += 1

    def close(self) -> None:
        self._http.close()
