"""The JD Cloud VM OpenAPI side of the simulator, under `/v1/regions/...` on the same port as
Tencent's `/`: JDCLOUD2 and JDCLOUD3 verification, attachKeypair, detachKeypair and
describeInstances with the documented statuses (reference B4, B5, B7; seed 003).

Per-instance outcomes: the docs give both a per-instance answer (`successInstanceId`,
`failInstanceId`) and whole-call 4xx errors naming one instance. The simulator answers 200 with
both lists when at least one instance succeeds, and otherwise the documented error of the
first failing instance, which is what a one-instance call sees. The docs do not say which the
real cloud does for a mixed batch; keybind's provider copes with both.
"""

from __future__ import annotations

import hmac
import json
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.providers.jdcloud import signing
from app.providers.jdcloud.regions import REGIONS
from app.simulator.faults import act_out, is_api_error
from app.simulator.params import json_object, strings, unflatten
from app.simulator.state import SimState

AUTH_RE = re.compile(
    r"^(JDCLOUD[23]-HMAC-SHA256) Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/(jdcloud[23]_request), "
    r"SignedHeaders=([a-z0-9;_-]+), Signature=([0-9a-f]{64})$"
)
# Not documented; AWS-style 15 minutes (reference B4).
MAX_SKEW_S = 15 * 60
MAX_IDS = 100
ATTACH, DETACH, DESCRIBE = "attachKeypair", "detachKeypair", "describeInstances"
HTTP_OF_STATUS = {
    "INVALID_ARGUMENT": 400,
    "OUT_OF_RANGE": 400,
    "FAILED_PRECONDITION": 400,
    "UNAUTHENTICATED": 401,
    "NOT_FOUND": 404,
    "ABORTED": 409,
    "CONFLICT": 409,
    "RATE_LIMIT_EXCEEDED": 429,
    "INTERNAL": 500,
    "UNKNOWN": 500,
    "UNAVAILABLE": 503,
}
MESSAGES = {
    "INTERNAL": "Internal server error",
    "UNKNOWN": "Unknown server error",
    "UNAVAILABLE": "Service unavailable",
    "ABORTED": "The operation was aborted by a concurrent operation",
    "CONFLICT": "Another operation is in progress on the instance",
}
# Tencent-named fault kinds (app.simulator.faults) as JD answers them.
FAULTS = {
    "MutexOperation.TaskRunning": "ABORTED",
    "OperationDenied.InstanceOperationInProgress": "CONFLICT",
    "InternalError": "INTERNAL",
    "RequestLimitExceeded": "RATE_LIMIT_EXCEEDED",
}


class JDFailure(Exception):
    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message
        self.http = HTTP_OF_STATUS.get(status, 500)


def reply(request_id: str, *, result: Any = None, error: JDFailure | None = None) -> Response:
    body: dict[str, Any] = {"requestId": request_id}
    if error is not None:
        body["error"] = {"code": error.http, "status": error.status, "message": error.message}
    else:
        body["result"] = result
    return Response(
        json.dumps(body),
        status_code=error.http if error is not None else 200,
        headers={"Content-Type": "application/json", "x-jdcloud-request-id": request_id},
    )


def _raw_path_and_query(request: Request) -> tuple[str, str]:
    raw = request.scope.get("raw_path") or request.url.path.encode()
    return raw.decode("latin-1").split("?", 1)[0], request.scope.get("query_string", b"").decode(
        "latin-1"
    )


def verify(request: Request, body: bytes, credentials: dict[str, str], now: float) -> None:
    """Reference B4: rebuild the canonical request from what was received. The normalised path
    and query (JDCLOUD3, Python SDKs) and the raw ones (Go SDK: `:` unencoded) both pass."""
    m = AUTH_RE.match(request.headers.get("authorization", ""))
    if m is None:
        raise JDFailure("UNAUTHENTICATED", "Authentication failed: malformed Authorization")
    algorithm, access_key, date8, region, service, terminator, names_text, sig = m.groups()
    version = signing.VERSIONS[algorithm]
    if terminator != version.terminator:
        raise JDFailure("UNAUTHENTICATED", "Authentication failed: scope does not match algorithm")
    secret_key = credentials.get(access_key)
    if secret_key is None:
        raise JDFailure("UNAUTHENTICATED", "Authentication failed: unknown access key")
    jd_date = request.headers.get("x-jdcloud-date", "")
    try:
        signed_at = datetime.strptime(jd_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError as exc:
        raise JDFailure("UNAUTHENTICATED", "Authentication failed: bad x-jdcloud-date") from exc
    if abs(now - signed_at) > MAX_SKEW_S or jd_date[:8] != date8:
        raise JDFailure("UNAUTHENTICATED", "Authentication failed: request time out of range")
    names = names_text.split(";")
    if "host" not in names or names != sorted(names):
        raise JDFailure("UNAUTHENTICATED", "Authentication failed: bad SignedHeaders")
    headers = {name: request.headers.get(name, "") for name in names}
    raw_path, raw_query = _raw_path_and_query(request)
    body_hash = signing.sha256_hex(body)
    scope = signing.credential_scope(version, date8, region, service)
    for uri in dict.fromkeys([signing.canonical_uri(raw_path), raw_path or "/"]):
        for query in dict.fromkeys([signing.canonical_query(raw_query), raw_query]):
            canonical = signing.canonical_request(
                method=request.method,
                uri=uri,
                query=query,
                headers=headers,
                signed_headers=names,
                body_hash=body_hash,
            )
            to_sign = signing.string_to_sign(
                version, jd_date=jd_date, scope=scope, canonical=canonical
            )
            expected = signing.signature(
                version,
                secret_key=secret_key,
                date8=date8,
                region=region,
                service=service,
                to_sign=to_sign,
            )
            if hmac.compare_digest(expected, sig):
                return
    raise JDFailure("UNAUTHENTICATED", "Authentication failed: signature does not match")


def _int(params: dict[str, Any], name: str, default: int) -> int:
    try:
        return int(params.get(name, default))
    except (TypeError, ValueError) as exc:
        raise JDFailure("INVALID_ARGUMENT", f"{name} must be an integer") from exc


@dataclass
class JDCloudApi:
    state: SimState

    def routes(self) -> list[Route]:
        return [
            Route("/v1/regions/{region}/keypairs/{key_action}", self.keypair, methods=["POST"]),
            Route("/v1/regions/{region}/instances", self.instances, methods=["GET"]),
            Route("/v1/{rest:path}", self.unknown, methods=["GET", "POST", "PUT", "DELETE"]),
        ]

    async def _serve(self, request: Request, action: str, handler: Any) -> Response:
        arrived = time.monotonic()
        request_id = uuid.uuid4().hex
        body = await request.body()
        code: str | None = None
        instance_ids: list[str] = []
        try:
            verify(request, body, self.state.config.jd_credentials, time.time())
            try:
                # A GET's query is the describe handler's to read.
                params = json_object(body) if request.method == "POST" else {}
            except ValueError as exc:
                raise JDFailure("INVALID_ARGUMENT", str(exc)) from exc
            instance_ids = strings(params.get("instanceIds"))
            if not self.state.window.admit(action, arrived):
                raise JDFailure("RATE_LIMIT_EXCEEDED", f"{action} exceeds its call rate limit")
            fault = self.state.faults.draw(action)
            if fault is not None and is_api_error(fault):
                status = FAULTS.get(fault, "INTERNAL")
                raise JDFailure(status, f"injected fault: {MESSAGES.get(status, status)}")
            config = self.state.config
            broken = await act_out(
                fault, timeout_s=config.timeout_fault_s, slow_s=config.slow_fault_s
            )
            if broken is not None:
                code, response = broken
                return response
            region = request.path_params.get("region", "")
            if region not in REGIONS:
                raise JDFailure("INVALID_ARGUMENT", f"invalid regionId {region!r}")
            result = handler(request, params, region, time.monotonic())
            return reply(request_id, result=result)
        except JDFailure as failure:
            code = failure.status
            return reply(request_id, error=failure)
        finally:
            self.state.stats.record(action, arrived, code, instance_ids)

    async def keypair(self, request: Request) -> Response:
        key_name, _, verb = request.path_params["key_action"].rpartition(":")
        if verb not in ("attach", "detach") or not key_name:
            return await self.unknown(request)
        action = ATTACH if verb == "attach" else DETACH

        def handle(req: Request, params: dict[str, Any], region: str, now: float) -> Any:
            return self._keypair(params, region, key_name, now, attach=verb == "attach")

        return await self._serve(request, action, handle)

    async def instances(self, request: Request) -> Response:
        def handle(req: Request, params: dict[str, Any], region: str, now: float) -> Any:
            try:
                query = unflatten(req.scope.get("query_string", b"").decode())
            except ValueError as exc:
                raise JDFailure("INVALID_ARGUMENT", str(exc)) from exc
            return self._describe(query, region, now)

        return await self._serve(request, DESCRIBE, handle)

    async def unknown(self, request: Request) -> Response:
        failure = JDFailure("NOT_FOUND", f"no such API: {request.method} {request.url.path}")
        return reply(uuid.uuid4().hex, error=failure)

    def _keypair(
        self, params: dict[str, Any], region: str, key_name: str, now: float, *, attach: bool
    ) -> dict[str, Any]:
        fleet = self.state.jd_fleet
        ids = params.get("instanceIds")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise JDFailure("INVALID_ARGUMENT", "instanceIds must be a non-empty array of strings")
        if len(ids) > MAX_IDS:
            raise JDFailure("INVALID_ARGUMENT", f"instanceIds takes at most {MAX_IDS} IDs")
        if attach:
            # The SDK and the parameter table say passWordAuth; the doc's example passwordAuth.
            auth = params.get("passWordAuth", params.get("passwordAuth"))
            if auth not in ("yes", "no"):
                raise JDFailure("INVALID_ARGUMENT", "passWordAuth must be 'yes' or 'no'")
        if not fleet.key_exists(key_name):
            raise JDFailure("NOT_FOUND", f"Keypair '{key_name}' not found")
        verb = "attach" if attach else "detach"
        succeeded: list[str] = []
        failed: list[tuple[str, JDFailure]] = []
        for iid in dict.fromkeys(ids):
            inst = fleet.instance(iid, region, now)
            if inst is None:
                failed.append((iid, JDFailure("NOT_FOUND", f"Instance '{iid}' not found.")))
                continue
            fault = inst.next_fault()
            if fault is not None:
                failed.append((iid, JDFailure(fault, MESSAGES.get(fault, fault))))
                continue
            if inst.os == "windows":
                message = f"Windows OS doesn't support {verb} keypair."
                failed.append((iid, JDFailure("FAILED_PRECONDITION", message)))
                continue
            if inst.status not in ("running", "stopped"):
                message = f"Invalid instance status {inst.status}"
                failed.append((iid, JDFailure("FAILED_PRECONDITION", message)))
                continue
            if attach and inst.key_names:
                message = f"Already attached key pair. instance id {iid}"
                failed.append((iid, JDFailure("FAILED_PRECONDITION", message)))
                continue
            if not attach and key_name not in inst.key_names:
                message = (
                    f"Already attached other keypair. instance id {iid}"
                    if inst.key_names
                    else f"Keypair '{key_name}' is not attached. instance id {iid}"
                )
                failed.append((iid, JDFailure("FAILED_PRECONDITION", message)))
                continue
            if attach:
                inst.key_names = [key_name]
                inst.attaches += 1
            else:
                inst.key_names = [k for k in inst.key_names if k != key_name]
            succeeded.append(iid)
        if not succeeded and failed:
            raise failed[0][1]
        return {"successInstanceId": succeeded, "failInstanceId": [iid for iid, _ in failed]}

    def _describe(self, params: dict[str, Any], region: str, now: float) -> dict[str, Any]:
        fleet = self.state.jd_fleet
        page_number = _int(params, "pageNumber", 1)
        page_size = _int(params, "pageSize", 20)
        if not 10 <= page_size <= 100:
            raise JDFailure("OUT_OF_RANGE", "PageSize out of range")
        if page_number < 1:
            raise JDFailure("OUT_OF_RANGE", "PageNumber out of range")
        filters = params.get("filters") or []
        tags = params.get("tags") or []
        if not isinstance(filters, list) or not isinstance(tags, list):
            raise JDFailure("INVALID_ARGUMENT", "filters and tags are lists")
        by_name: dict[str, list[str]] = {}
        for f in filters:
            if not isinstance(f, dict) or "name" not in f:
                raise JDFailure("INVALID_ARGUMENT", "each filter needs a name")
            values = f.get("values") or []
            by_name[str(f["name"])] = [str(v) for v in values] if isinstance(values, list) else []
        unknown = set(by_name) - {"instanceId", "status", "name", "az"}
        if unknown:
            raise JDFailure("INVALID_ARGUMENT", f"unsupported filter {sorted(unknown)[0]!r}")
        if "instanceId" in by_name:
            found = [
                inst
                for iid in dict.fromkeys(by_name["instanceId"])
                if (inst := fleet.instance(iid, region, now)) is not None
            ]
        else:
            found = [
                inst
                for iid in list(fleet.instances)
                if (inst := fleet.instance(iid, region, now)) is not None
            ]
        found = [i for i in found if _matches(i.view(), i.tags, by_name, tags)]
        start = (page_number - 1) * page_size
        page = found[start : start + page_size]
        return {"instances": [i.view() for i in page], "totalCount": len(found)}


def _matches(
    view: dict[str, Any],
    tags: dict[str, str],
    filters: dict[str, list[str]],
    tag_filters: list[Any],
) -> bool:
    """AND across filters and tag filters, OR within one filter's values."""
    if "status" in filters and view["status"] not in filters["status"]:
        return False
    if "az" in filters and view["az"] not in filters["az"]:
        return False
    if "name" in filters and not any(n in view["instanceName"] for n in filters["name"]):
        return False
    for t in tag_filters:
        if not isinstance(t, dict):
            raise JDFailure("INVALID_ARGUMENT", "each tag filter is an object")
        key = str(t.get("key", ""))
        values = t.get("values") or []
        if key not in tags or (values and tags[key] not in [str(v) for v in values]):
            return False
    return True
