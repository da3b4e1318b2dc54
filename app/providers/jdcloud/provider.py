"""JD Cloud VM behind keybind's provider seam: bind with attachKeypair (per-instance answers),
rotate with detach + attach (`replace`), verify with describeInstances `keyNames`.

JD answers a batch per instance (`successInstanceId` / `failInstanceId`) but says nothing about
why an instance failed, and a batch may also fail whole with a 4xx that names one instance or
none. Either way, keybind looks the doubtful instances up with describeInstances and gives each
its own, documented reason: NOT_FOUND, Windows, bad status, another key already attached.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from app.config import Settings
from app.providers.base import (
    Account,
    BindRequest,
    CallError,
    CallResult,
    InstanceResult,
    InstanceStatus,
    NoSlot,
    Outcome,
    Pace,
    ProviderSpec,
    Slot,
    VerifyRequest,
    credentials_from,
)
from app.providers.jdcloud.client import (
    ATTACH,
    DEFAULT_ENDPOINT,
    DESCRIBE_INSTANCES,
    DETACH,
    MAX_PAGE_SIZE,
    InstanceView,
    JDCloudClient,
)
from app.providers.jdcloud.errors import REPLACE_HINT, classify, is_already_attached
from app.providers.jdcloud.regions import INSTANCE_ID, REGIONS
from app.providers.verify import verify_by_lookup

NAME = "jdcloud"
# JD publishes no per-action limit (reference B7): a conservative default for every action,
# KEYBIND_JDCLOUD_RATE_LIMIT overrides it.
DEFAULT_RATE = 5.0
ACTIONS = {ATTACH: DEFAULT_RATE, DETACH: DEFAULT_RATE, DESCRIBE_INSTANCES: DEFAULT_RATE}
# Instances per attach call. The docs give no maximum; per-instance answers make a batch safe.
BIND_BATCH = 20
ATTACHABLE = frozenset({"running", "stopped"})
NAMED_INSTANCE = re.compile(r"\bi-[0-9a-z]{10}\b")


def _error(status: str, message: str) -> CallError:
    return CallError(status, message, classify(status, message))


def _not_found(iid: str) -> CallError:
    return _error("NOT_FOUND", f"Instance '{iid}' not found.")


def _refusal(error: CallError, replacing: bool) -> CallError:
    """JD's refusal of one instance as keybind records it: "Already attached" says to use
    replace, or, in replace mode (a key attached since our detach), is worth another try."""
    if not is_already_attached(error.code, error.message):
        return error
    if replacing:
        return replace(error, error_class=classify("ABORTED"))
    return replace(error, message=error.message + REPLACE_HINT)


def diagnose(
    iid: str, view: InstanceView | None, key_name: str, *, replacing: bool
) -> InstanceResult:
    """Why attach did not take an instance, from what describeInstances shows of it; an
    instance that already holds `key_name` counts as attached."""
    if view is None:
        return InstanceResult(InstanceStatus.FAILED, _not_found(iid))
    if key_name in view.key_names:
        return InstanceResult(InstanceStatus.ACCEPTED)
    if view.os_type.lower() == "windows":
        return InstanceResult(
            InstanceStatus.FAILED,
            _error("FAILED_PRECONDITION", "Windows OS doesn't support attach keypair."),
        )
    if view.status not in ATTACHABLE:
        return InstanceResult(
            InstanceStatus.FAILED,
            _error("FAILED_PRECONDITION", f"Invalid instance status {view.status}"),
        )
    if view.key_names:
        held = ", ".join(view.key_names)
        message = f"Already attached key pair. instance id {iid} (holds {held})"
        if replacing:
            # Someone attached a key between our detach and attach: the next try detaches it.
            return InstanceResult(
                InstanceStatus.FAILED,
                CallError("FAILED_PRECONDITION", message, classify("ABORTED")),
            )
        return InstanceResult(
            InstanceStatus.FAILED, _error("FAILED_PRECONDITION", message + REPLACE_HINT)
        )
    return InstanceResult(
        InstanceStatus.FAILED,
        _error("keybind.NotAttached", "attachKeypair did not take the instance; it looks eligible"),
    )


def judge(view: InstanceView | None, key_name: str) -> InstanceResult:
    """Verify: the key is in `keyNames`, or it is not there yet, or it never will be."""
    if view is None:
        return InstanceResult(
            InstanceStatus.FAILED,
            _error("keybind.VerifyNotFound", "describeInstances no longer finds the instance"),
        )
    if key_name in view.key_names:
        return InstanceResult(InstanceStatus.VERIFIED)
    if view.key_names:
        return InstanceResult(
            InstanceStatus.FAILED,
            _error(
                "keybind.KeyNotBound",
                f"attachKeypair succeeded but keyNames is {list(view.key_names)}",
            ),
        )
    return InstanceResult(InstanceStatus.OPERATING)


class JDCloudProvider:
    """One JD Cloud account: its VM client and the calls keybind makes with it."""

    def __init__(self, client: JDCloudClient) -> None:
        self.spec = SPEC
        self.client = client

    def _describe(
        self, region: str, ids: Sequence[str], pace: Pace, outcome: Outcome
    ) -> tuple[CallResult, dict[str, InstanceView]]:
        """One describeInstances call per 100 IDs; stops at the first that fails."""
        views: dict[str, InstanceView] = {}
        call: CallResult | None = None
        for start in range(0, len(ids), MAX_PAGE_SIZE):
            call, found = self._look(
                region, ids[start : start + MAX_PAGE_SIZE], pace(DESCRIBE_INSTANCES)
            )
            outcome.calls.append(call)
            if not call.ok:
                return call, views
            views.update(found)
        assert call is not None
        return call, views

    def _look(
        self, region: str, ids: Sequence[str], slot: Slot
    ) -> tuple[CallResult, dict[str, InstanceView]]:
        """One describeInstances call for at most 100 IDs (pageSize 100: page 1 holds them all)."""
        chunk = tuple(ids)
        page = self.client.describe_instances(region, instance_ids=chunk, slot=slot)
        return replace(page.call, instance_ids=chunk), {v.instance_id: v for v in page.instances}

    def bind(self, request: BindRequest, pace: Pace) -> Outcome:
        outcome = Outcome()
        key = request.key_ids[0]
        password_auth = str(request.options.get("password_auth", "no"))
        replacing = bool(request.options.get("replace", False))
        ids = list(request.instance_ids)
        previous: dict[str, str] = {}
        detached: list[str] = []
        try:
            if replacing:
                ids = self._detach_others(request.region, key, ids, pace, outcome, previous)
                detached = [i for i in ids if i in previous]
            if ids:
                self._attach(request.region, key, ids, password_auth, pace, outcome, replacing)
        except NoSlot:
            if not outcome.calls:
                raise
            # What the calls so far decided stands; the rest is handed back untouched, except
            # instances already detached: their result carries the key they held.
            for iid in detached:
                if iid not in outcome.results:
                    why = _error("keybind.NoSlot", "detached; no attachKeypair slot in time")
                    outcome.results[iid] = InstanceResult(InstanceStatus.FAILED, why)
        for iid, old in previous.items():
            result = outcome.results.get(iid)
            if result is not None:
                outcome.results[iid] = replace(result, notes={"previous_key": old})
        return outcome

    def _detach_others(
        self,
        region: str,
        key: str,
        ids: list[str],
        pace: Pace,
        outcome: Outcome,
        previous: dict[str, str],
    ) -> list[str]:
        """Replace mode: detach whatever other key each instance holds; returns the instances
        ready for attach (holding no key now)."""
        call, views = self._describe(region, ids, pace, outcome)
        if not call.ok:
            for iid in ids:
                outcome.results[iid] = InstanceResult(
                    InstanceStatus.FAILED, call.error, call.request_id
                )
            return []
        ready: list[str] = []
        by_key: dict[str, list[str]] = {}
        for iid in ids:
            view = views.get(iid)
            if view is None:
                outcome.results[iid] = InstanceResult(
                    InstanceStatus.FAILED, _not_found(iid), call.request_id
                )
            elif key in view.key_names:
                # Already holds the new key: nothing to rotate; verify confirms it.
                previous[iid] = key
                outcome.results[iid] = InstanceResult(InstanceStatus.ACCEPTED, None, None)
            elif view.key_names:
                previous[iid] = view.key_names[0]
                by_key.setdefault(view.key_names[0], []).append(iid)
            else:
                ready.append(iid)
        for old, holders in by_key.items():
            slot = pace(DETACH)
            res = self.client.detach_keypair(region, old, holders, slot)
            failed: dict[str, CallError] = {}
            for iid in holders:
                if res.call.ok and iid in res.succeeded:
                    ready.append(iid)
                    continue
                error = res.call.error or _error(
                    "keybind.DetachFailed", f"detachKeypair {old} did not take the instance"
                )
                if "other keypair" in error.message:
                    # The key changed since we looked: the next try looks again.
                    error = replace(error, error_class=classify("ABORTED"))
                failed[iid] = error
                outcome.results[iid] = InstanceResult(
                    InstanceStatus.FAILED, error, res.call.request_id
                )
            outcome.calls.append(
                replace(res.call, instance_ids=tuple(holders), failed_instances=failed)
            )
        return ready

    def _attach(
        self,
        region: str,
        key: str,
        ids: list[str],
        password_auth: str,
        pace: Pace,
        outcome: Outcome,
        replacing: bool,
    ) -> None:
        slot = pace(ATTACH)
        res = self.client.attach_keypair(region, key, ids, password_auth, slot)
        call = res.call
        results: dict[str, InstanceResult] = {}
        doubtful: list[str] = []
        if call.ok:
            taken = set(res.succeeded)
            for iid in ids:
                if iid in taken:
                    results[iid] = InstanceResult(InstanceStatus.ACCEPTED, None, call.request_id)
                else:
                    doubtful.append(iid)  # in failInstanceId, or in neither list
        else:
            assert call.error is not None
            named = set(NAMED_INSTANCE.findall(call.error.message)) & set(ids)
            per_instance = call.error.code in ("FAILED_PRECONDITION", "NOT_FOUND") and not (
                call.error.code == "NOT_FOUND" and call.error.message.startswith("Keypair")
            )
            if len(ids) == 1 or not per_instance:
                # The answer is about this one instance, or about the whole call.
                error = _refusal(call.error, replacing) if len(ids) == 1 else call.error
                for iid in ids:
                    results[iid] = InstanceResult(InstanceStatus.FAILED, error, call.request_id)
            else:
                # A batch refused because of one instance (named, or not): find out for each.
                for iid in named:
                    error = _refusal(call.error, replacing)
                    results[iid] = InstanceResult(InstanceStatus.FAILED, error, call.request_id)
                doubtful = [i for i in ids if i not in named]
        if doubtful:
            try:
                look, views = self._describe(region, doubtful, pace, outcome)
            except NoSlot:
                look, views = None, {}
            for iid in doubtful:
                if look is None or not look.ok:
                    # Could not look: the instance is tried again later, its attach unexplained.
                    why = look.error if look is not None and look.error else None
                    error = why or _error("keybind.NotAttached", "attachKeypair did not take it")
                    results[iid] = InstanceResult(InstanceStatus.FAILED, error, call.request_id)
                    continue
                verdict = diagnose(iid, views.get(iid), key, replacing=replacing)
                results[iid] = InstanceResult(verdict.status, verdict.error, call.request_id)
        failed = {iid: r.error for iid, r in results.items() if r.error is not None}
        # The attach call's own row shows each instance's reason; it is inserted before the
        # describe calls made to find those reasons.
        index = next(
            (n for n, c in enumerate(outcome.calls) if c.started_at > call.started_at),
            len(outcome.calls),
        )
        outcome.calls.insert(index, replace(call, instance_ids=tuple(ids), failed_instances=failed))
        outcome.results.update(results)

    def verify(self, request: VerifyRequest, pace: Pace) -> Outcome:
        key = request.key_ids[0]
        return verify_by_lookup(
            request.instance_ids,
            pace,
            action=DESCRIBE_INSTANCES,
            chunk_size=MAX_PAGE_SIZE,
            describe=lambda chunk, slot: self._look(request.region, chunk, slot),
            judge=lambda iid, view: judge(view, key),
        )

    def close(self) -> None:
        self.client.close()

    def __repr__(self) -> str:
        return f"JDCloudProvider({self.client!r})"


def connect(account: Account, settings: Settings) -> JDCloudProvider:
    access_key = account.required("access_key", "JDCLOUD_")
    secret_key = account.required("secret_key", "JDCLOUD_")
    client = JDCloudClient(
        endpoint=account.endpoint or DEFAULT_ENDPOINT,
        access_key=access_key,
        secret_key=secret_key,
        timeout_s=settings.http_timeout_s,
    )
    return JDCloudProvider(client)


def default_account(settings: Settings) -> Account:
    """The account named "default": JD's own environment variable names, and
    KEYBIND_JDCLOUD_RATE_LIMIT for every JD action."""
    credentials = credentials_from(
        access_key=settings.jdcloud_access_key, secret_key=settings.jdcloud_secret_key
    )
    rates = {action: settings.jdcloud_rate_limit for action in ACTIONS}
    return Account(NAME, "default", settings.jdcloud_endpoint, credentials, rates)


SPEC = ProviderSpec(
    name=NAME,
    regions=REGIONS,
    actions=ACTIONS,
    bind_action=ATTACH,
    verify_action=DESCRIBE_INSTANCES,
    max_batch=MAX_PAGE_SIZE,
    instance_id=re.compile(INSTANCE_ID.pattern.strip("^$")),
    instance_id_example="i-abcdefgh12",
    classify=classify,
    connect=connect,
    default_account=default_account,
    bind_batch=BIND_BATCH,
)
