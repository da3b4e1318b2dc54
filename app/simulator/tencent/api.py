"""The Tencent CVM API 3.0 side of the simulator: TC3 verification and the CVM actions."""

from __future__ import annotations

import hmac
import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from app.providers.tencent import signing
from app.providers.tencent.regions import REGIONS
from app.simulator.faults import act_out, is_api_error
from app.simulator.params import json_object, strings, unflatten
from app.simulator.state import SimState

AUTH_RE = re.compile(
    r"^TC3-HMAC-SHA256 Credential=([^/]+)/(\d{4}-\d{2}-\d{2})/([^/]+)/tc3_request, "
    r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$"
)
INSTANCE_ID = re.compile(r"ins-[0-9a-z]{8}")
KEY_ID = re.compile(r"skey-[0-9a-z]{8}")
MAX_SKEW_S = 300
MAX_IDS = 100

STATE_CODES = {
    "PENDING": "UnsupportedOperation.InstanceStatePending",
    "STARTING": "UnsupportedOperation.InstanceStateStarting",
    "STOPPING": "UnsupportedOperation.InstanceStateStopping",
    "REBOOTING": "UnsupportedOperation.InstanceStateRebooting",
    "EXIT_RESCUE_MODE": "UnsupportedOperation.InstanceStateExitRescueMode",
    "ENTER_SERVICE_LIVE_MIGRATE": "UnsupportedOperation.InstanceStateEnterServiceLiveMigrate",
    "RUNNING": "UnsupportedOperation.InstanceStateRunning",
    "SHUTDOWN": "UnsupportedOperation.InstanceStateShutdown",
    "TERMINATING": "UnsupportedOperation.InstanceStateTerminating",
    "ISOLATING": "UnsupportedOperation.InstanceStateIsolating",
    "FREEZING": "UnsupportedOperation.InstanceStateFreezing",
    "RESCUE_MODE": "UnsupportedOperation.InstanceStateRescueMode",
    "ENTER_RESCUE_MODE": "UnsupportedOperation.InstanceStateRescueMode",
    "LAUNCH_FAILED": "InvalidInstance.NotSupported",
    "SERVICE_LIVE_MIGRATE": "UnsupportedOperation.InstanceStateEnterServiceLiveMigrate",
    "EXIT_SERVICE_LIVE_MIGRATE": "UnsupportedOperation.InstanceStateEnterServiceLiveMigrate",
}


class ApiFailure(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def reply(payload: dict[str, Any], request_id: str) -> Response:
    # Exactly `application/json`: the official SDK ignores error bodies under any other value.
    body = {"Response": {**payload, "RequestId": request_id}}
    return Response(json.dumps(body), headers={"Content-Type": "application/json"})


def error_reply(code: str, message: str, request_id: str) -> Response:
    return reply({"Error": {"Code": code, "Message": message}}, request_id)


def verify(
    request: Request,
    body: bytes,
    credentials: dict[str, str],
    now: float,
    tokens: dict[str, str] | None = None,
) -> str:
    """Reference A4: rebuild the canonical request from what was received and compare.
    Returns the SecretId; one that has an STS token configured must send it as X-TC-Token."""
    auth = request.headers.get("authorization", "")
    m = AUTH_RE.match(auth)
    if m is None:
        raise ApiFailure("AuthFailure.InvalidAuthorization", "Authorization header is malformed")
    secret_id, date, service, signed_headers, sig = m.groups()
    secret_key = credentials.get(secret_id)
    if secret_key is None:
        raise ApiFailure("AuthFailure.SecretIdNotFound", "the SecretId is not found")
    try:
        ts = int(request.headers.get("x-tc-timestamp", ""))
    except ValueError as exc:
        raise ApiFailure("MissingParameter", "X-TC-Timestamp is missing or not a number") from exc
    if abs(now - ts) > MAX_SKEW_S:
        raise ApiFailure(
            "AuthFailure.SignatureExpire",
            "the signature expired: timestamp is off by over 5 minutes",
        )
    if signing.utc_date(ts) != date:
        raise ApiFailure(
            "AuthFailure.SignatureFailure", "credential date does not match X-TC-Timestamp"
        )
    names = signed_headers.split(";")
    if "content-type" not in names or "host" not in names:
        raise ApiFailure("AuthFailure.SignatureFailure", "content-type and host must be signed")
    headers = {name: request.headers.get(name, "") for name in names}
    query = request.url.query if request.method == "GET" else ""
    canonical = signing.canonical_request(
        method=request.method, query=query, headers=headers, signed_headers=names, body=body
    )
    to_sign = signing.string_to_sign(timestamp=ts, service=service, canonical=canonical)
    expected = signing.signature(
        secret_key=secret_key, timestamp=ts, service=service, to_sign=to_sign
    )
    if not hmac.compare_digest(expected, sig):
        raise ApiFailure("AuthFailure.SignatureFailure", "the request signature does not match")
    token = (tokens or {}).get(secret_id)
    if token is not None and not hmac.compare_digest(
        token.encode(), request.headers.get("x-tc-token", "").encode()
    ):
        raise ApiFailure("AuthFailure.TokenFailure", "the session token is invalid or missing")
    return str(secret_id)


def _id_list(
    params: dict[str, Any], name: str, pattern: re.Pattern[str], malformed: str, *, required: bool
) -> list[str]:
    values = params.get(name)
    if values is None:
        if required:
            raise ApiFailure("MissingParameter", f"the request is missing parameter {name}")
        return []
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ApiFailure("InvalidParameter", f"{name} must be an array of strings")
    if required and not values:
        raise ApiFailure("MissingParameter", f"the request is missing parameter {name}")
    if len(values) > MAX_IDS:
        raise ApiFailure(
            "InvalidParameterValue.LimitExceeded", f"{name} takes at most {MAX_IDS} values"
        )
    for v in values:
        if not pattern.fullmatch(v):
            raise ApiFailure(malformed, f"invalid ID format: {v}")
    return values


def _instance_ids(params: dict[str, Any], *, required: bool) -> list[str]:
    return _id_list(
        params, "InstanceIds", INSTANCE_ID, "InvalidInstanceId.Malformed", required=required
    )


def _bool(params: dict[str, Any], name: str) -> bool:
    value = params.get(name, False)
    if isinstance(value, str):  # GET sends Python's str(bool)
        return value.lower() == "true"
    return bool(value)


def _page(params: dict[str, Any]) -> tuple[int, int]:
    try:
        offset = int(params.get("Offset", 0))
        limit = int(params.get("Limit", 20))
    except (TypeError, ValueError) as exc:
        raise ApiFailure("InvalidParameterValue", "Offset and Limit must be integers") from exc
    if offset < 0 or not 1 <= limit <= 100:
        raise ApiFailure("InvalidParameterValue", "Limit must be within [1, 100], Offset >= 0")
    return offset, limit


@dataclass
class TencentApi:
    state: SimState

    async def handle(self, request: Request) -> Response:
        arrived = time.monotonic()
        request_id = str(uuid.uuid4())
        body = await request.body()
        action = request.headers.get("x-tc-action", "")
        params: dict[str, Any] = {}
        instance_ids: list[str] = []
        code: str | None = None
        account = ""
        try:
            account = verify(
                request, body, self.state.config.credentials, time.time(), self.state.config.tokens
            )
            try:
                get = request.method == "GET"
                params = unflatten(request.url.query) if get else json_object(body)
            except ValueError as exc:
                raise ApiFailure("InvalidParameter", str(exc)) from exc
            instance_ids = strings(params.get("InstanceIds"))
            if request.headers.get("x-tc-version") != "2017-03-12":
                raise ApiFailure("NoSuchVersion", "X-TC-Version must be 2017-03-12")
            handler = getattr(self, f"do_{action}", None)
            if handler is None:
                raise ApiFailure("InvalidAction", f"no such action: {action!r}")
            if not self.state.window.admit(action, arrived, account):
                raise ApiFailure(
                    "RequestLimitExceeded",
                    f"{action} exceeds its limit of calls per second; reduce the call rate",
                )
            fault = self.state.faults.draw(action)
            if fault is not None and is_api_error(fault):
                raise ApiFailure(fault, f"injected fault: {fault}")
            config = self.state.config
            broken = await act_out(
                fault, timeout_s=config.timeout_fault_s, slow_s=config.slow_fault_s
            )
            if broken is not None:
                code, response = broken
                return response
            region = request.headers.get("x-tc-region", "")
            if region not in REGIONS:
                raise ApiFailure("UnsupportedRegion", f"the region {region!r} is not supported")
            payload = handler(params, request_id, time.monotonic())
            return reply(payload, request_id)
        except ApiFailure as failure:
            code = failure.code
            return error_reply(failure.code, failure.message, request_id)
        finally:
            self.state.stats.record(action, arrived, code, instance_ids, account)

    # --- actions -------------------------------------------------------------------------

    def do_AssociateInstancesKeyPairs(
        self, params: dict[str, Any], request_id: str, now: float
    ) -> dict[str, Any]:
        return self._bind(params, request_id, now, associate=True)

    def do_DisassociateInstancesKeyPairs(
        self, params: dict[str, Any], request_id: str, now: float
    ) -> dict[str, Any]:
        return self._bind(params, request_id, now, associate=False)

    def _bind(
        self, params: dict[str, Any], request_id: str, now: float, *, associate: bool
    ) -> dict[str, Any]:
        fleet = self.state.fleet
        ids = _instance_ids(params, required=True)
        keys = _id_list(params, "KeyIds", KEY_ID, "InvalidKeyPairId.Malformed", required=True)
        force_stop = _bool(params, "ForceStop")
        for key in keys:
            if fleet.key_pair(key) is None:
                raise ApiFailure("InvalidKeyPairId.NotFound", f"the key pair {key} does not exist")
        instances = []
        for iid in ids:
            inst = fleet.instance(iid, now)
            if inst is None:
                raise ApiFailure("InvalidInstanceId.NotFound", f"the instance {iid} does not exist")
            instances.append(inst)
        # Scripted faults, then the documented refusals; one refusal fails the whole batch.
        for inst in instances:
            fault = inst.next_fault()
            if fault is not None:
                raise ApiFailure(fault, f"{fault} on {inst.id}")
        action = "AssociateInstancesKeyPairs" if associate else "DisassociateInstancesKeyPairs"
        for inst in instances:
            if inst.operating:
                # The same action still running is an identical task; anything else in flight
                # is an operation in progress.
                if inst.latest_operation == action:
                    raise ApiFailure(
                        "MutexOperation.TaskRunning",
                        f"an identical task is running on the instance {inst.id}",
                    )
                raise ApiFailure(
                    "OperationDenied.InstanceOperationInProgress",
                    f"the instance {inst.id} has an operation in progress",
                )
            if inst.os == "windows":
                raise ApiFailure(
                    "UnsupportedOperation.InstanceOsWindows",
                    f"the Windows instance {inst.id} does not support this operation",
                )
            if inst.state == "STOPPED" or (inst.state == "RUNNING" and force_stop):
                continue
            code = STATE_CODES.get(inst.state, "UnsupportedOperation")
            raise ApiFailure(
                code, f"the instance {inst.id} in the {inst.state} status is not supported"
            )
        for inst in instances:
            if associate:
                new_keys = list(keys)  # binding replaces whatever key was bound before
                inst.binds += 1
            else:
                new_keys = [k for k in inst.key_ids if k not in keys]
            inst.start_operation(action, request_id, new_keys, now=now, delay=fleet.op_delay_s)
        return {}

    def do_DescribeInstances(
        self, params: dict[str, Any], request_id: str, now: float
    ) -> dict[str, Any]:
        fleet = self.state.fleet
        ids = _instance_ids(params, required=False)
        filters = params.get("Filters") or []
        if ids and filters:
            raise ApiFailure("InvalidParameter", "InstanceIds and Filters cannot be given together")
        offset, limit = _page(params)
        found = fleet.listed(ids, now)
        if filters:
            found = [i for i in found if _matches(i.view(), i.tags, filters)]
        page = found[offset : offset + limit]
        return {"TotalCount": len(found), "InstanceSet": [i.view() for i in page]}

    def do_DescribeInstancesStatus(
        self, params: dict[str, Any], request_id: str, now: float
    ) -> dict[str, Any]:
        ids = _instance_ids(params, required=False)
        offset, limit = _page(params)
        found = self.state.fleet.listed(ids, now)
        page = found[offset : offset + limit]
        return {
            "TotalCount": len(found),
            "InstanceStatusSet": [{"InstanceId": i.id, "InstanceState": i.state} for i in page],
        }

    def do_DescribeKeyPairs(
        self, params: dict[str, Any], request_id: str, now: float
    ) -> dict[str, Any]:
        fleet = self.state.fleet
        keys = _id_list(params, "KeyIds", KEY_ID, "InvalidKeyPairId.Malformed", required=False)
        offset, limit = _page(params)
        if keys:
            pairs = []
            for k in keys:
                kp = fleet.key_pair(k)
                if kp is None:
                    raise ApiFailure(
                        "InvalidKeyPairId.NotFound", f"the key pair {k} does not exist"
                    )
                pairs.append(kp)
        else:
            pairs = list(fleet.key_pairs.values())
        bound: dict[str, list[str]] = {}
        for inst in fleet.instances.values():
            inst.advance(now)
            for k in inst.key_ids:
                bound.setdefault(k, []).append(inst.id)
        page = pairs[offset : offset + limit]
        return {
            "TotalCount": len(pairs),
            "KeyPairSet": [
                {
                    "KeyId": kp.id,
                    "KeyName": kp.name,
                    "ProjectId": 0,
                    "Description": "",
                    "PublicKey": f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{kp.id} sim",
                    "PrivateKey": "",
                    "AssociatedInstanceIds": bound.get(kp.id, []),
                    "CreatedTime": kp.created,
                    "Tags": [],
                }
                for kp in page
            ],
        }


def _matches(view: dict[str, Any], tags: dict[str, str], filters: list[Any]) -> bool:
    """AND across filters, OR within a filter's Values (DescribeInstances semantics)."""
    for f in filters:
        if not isinstance(f, dict):
            raise ApiFailure("InvalidFilter", "each filter must be an object")
        name = str(f.get("Name", ""))
        values = [str(v) for v in f.get("Values") or []]
        if name == "instance-id":
            ok = view["InstanceId"] in values
        elif name == "instance-state":
            ok = view["InstanceState"] in values
        elif name == "zone":
            ok = view["Placement"]["Zone"] in values
        elif name == "instance-name":
            ok = view["InstanceName"] in values
        elif name == "tag-key":
            ok = any(k in values for k in tags)
        elif name == "tag-value":
            ok = any(v in values for v in tags.values())
        elif name.startswith("tag:"):
            ok = tags.get(name[4:]) in values
        else:
            raise ApiFailure("InvalidFilter", f"unsupported filter {name!r}")
        if not ok:
            return False
    return True
