"""Tencent CVM behind keybind's provider seam: bind with AssociateInstancesKeyPairs, verify with
DescribeInstances (the bind call answers only a RequestId; the outcome shows in the instance)."""

from __future__ import annotations

import re

from app.config import Settings
from app.providers.base import (
    Account,
    BindRequest,
    CallError,
    CallResult,
    InstanceResult,
    InstanceStatus,
    Outcome,
    Pace,
    ProviderSpec,
    Slot,
    VerifyRequest,
    credentials_from,
)
from app.providers.tencent.client import (
    ASSOCIATE,
    DESCRIBE_INSTANCES,
    MAX_IDS_PER_CALL,
    InstanceView,
    TencentClient,
)
from app.providers.tencent.errors import classify, names_an_instance
from app.providers.tencent.regions import REGIONS
from app.providers.verify import verify_by_lookup

NAME = "tencent"
CN_ENDPOINT = "https://cvm.tencentcloudapi.com"
INTL_ENDPOINT = "https://cvm.intl.tencentcloudapi.com"
# Short names for the two sites, accepted wherever an endpoint is configured.
ENDPOINT_ALIASES = {"cn": CN_ENDPOINT, "intl": INTL_ENDPOINT}
# Each action's documented per-account limit (213/33232 and 213/33260).
ACTIONS = {ASSOCIATE: 10.0, DESCRIBE_INSTANCES: 40.0}


def _error(code: str, message: str) -> CallError:
    return CallError(code, message, classify(code))


def judge(
    view: InstanceView | None, keys: tuple[str, ...], bind_request_id: str | None
) -> InstanceResult:
    """One instance's verdict from DescribeInstances, given the bind call that was accepted.

    Our own operation record decides (OPERATING / FAILED / SUCCESS); SUCCESS still needs every
    key in LoginSettings.KeyIds. When a later operation has replaced the record, the keys alone
    decide, and their absence means 'not yet' until the verify budget runs out."""
    if view is None:
        return InstanceResult(
            InstanceStatus.FAILED,
            _error("keybind.VerifyNotFound", "DescribeInstances no longer finds the instance"),
        )
    holds_keys = all(k in view.key_ids for k in keys)
    ours = bind_request_id is not None and view.latest_operation_request_id == bind_request_id
    if ours:
        if view.latest_operation_state == "OPERATING":
            return InstanceResult(InstanceStatus.OPERATING)
        if view.latest_operation_state == "FAILED":
            why = view.latest_operation_error or "no message from the cloud"
            return InstanceResult(
                InstanceStatus.FAILED,
                _error(
                    "keybind.OperationFailed",
                    f"{view.latest_operation} {bind_request_id} ended FAILED: {why}",
                ),
            )
        if view.latest_operation_state == "SUCCESS":
            if holds_keys:
                return InstanceResult(InstanceStatus.VERIFIED)
            return InstanceResult(
                InstanceStatus.FAILED,
                _error(
                    "keybind.KeyNotBound",
                    f"the operation succeeded but LoginSettings.KeyIds is {list(view.key_ids)}",
                ),
            )
    if holds_keys:
        return InstanceResult(InstanceStatus.VERIFIED)
    return InstanceResult(InstanceStatus.OPERATING)


class TencentProvider:
    """One Tencent account: its CVM client and the calls keybind makes with it."""

    def __init__(self, client: TencentClient) -> None:
        self.spec = SPEC
        self.client = client

    def bind(self, request: BindRequest, pace: Pace) -> Outcome:
        slot = pace(ASSOCIATE)
        call = self.client.associate_instances_key_pairs(
            request.region,
            list(request.instance_ids),
            list(request.key_ids),
            request.force_stop,
            slot,
        )
        return Outcome.from_call(call, InstanceStatus.ACCEPTED)

    def verify(self, request: VerifyRequest, pace: Pace) -> Outcome:
        return verify_by_lookup(
            request.instance_ids,
            pace,
            action=DESCRIBE_INSTANCES,
            chunk_size=MAX_IDS_PER_CALL,
            describe=lambda chunk, slot: self._describe(request.region, chunk, slot),
            judge=lambda iid, view: judge(view, request.key_ids, request.bind_request_ids.get(iid)),
        )

    def _describe(
        self, region: str, ids: list[str], slot: Slot
    ) -> tuple[CallResult, dict[str, InstanceView]]:
        call, views = self.client.describe_instances(
            region, instance_ids=ids, limit=MAX_IDS_PER_CALL, slot=slot
        )
        return call, {v.instance_id: v for v in views}

    def close(self) -> None:
        self.client.close()

    def __repr__(self) -> str:
        return f"TencentProvider({self.client!r})"


def connect(account: Account, settings: Settings) -> TencentProvider:
    secret_id = account.required("secret_id", "TENCENTCLOUD_")
    secret_key = account.required("secret_key", "TENCENTCLOUD_")
    client = TencentClient(
        endpoint=ENDPOINT_ALIASES.get(account.endpoint, account.endpoint),
        secret_id=secret_id,
        secret_key=secret_key,
        session_token=account.secret("session_token"),
        timeout_s=settings.http_timeout_s,
    )
    return TencentProvider(client)


def default_account(settings: Settings) -> Account:
    """The account named "default": Tencent's own environment variable names."""
    credentials = credentials_from(
        secret_id=settings.tencentcloud_secret_id,
        secret_key=settings.tencentcloud_secret_key,
        session_token=settings.tencentcloud_session_token,
    )
    return Account(NAME, "default", settings.tencent_endpoint, credentials)


SPEC = ProviderSpec(
    name=NAME,
    regions=REGIONS,
    actions=ACTIONS,
    bind_action=ASSOCIATE,
    verify_action=DESCRIBE_INSTANCES,
    max_batch=MAX_IDS_PER_CALL,
    instance_id=re.compile(r"ins-[0-9a-z]{8}"),
    instance_id_example="ins-r8hr2upy",
    classify=classify,
    connect=connect,
    default_account=default_account,
    names_an_instance=names_an_instance,
)
