"""Every JD Cloud error status keybind knows, and what the worker does about it.

JD answers errors with a real HTTP status and `{"error": {"code": <http>, "status": <gRPC-style
name>, "message"}}`. The status names come from the attachKeypair/detachKeypair/describeInstances
docs and JD's generic API-gateway status table (reference B5). The message is always kept;
for FAILED_PRECONDITION it is also what separates "wait for the instance to settle" from
"never": the docs give one status for Windows, bad instance state and an attached key.
Unknown statuses fall back on the HTTP status: 429 and 5xx retry, anything else is terminal.
"""

from __future__ import annotations

import re

from app.providers.base import ErrorClass, error_table_markdown

R, W, T = ErrorClass.RETRY, ErrorClass.WAIT_STATE, ErrorClass.TERMINAL

TABLE: dict[str, tuple[ErrorClass, str]] = {
    "FAILED_PRECONDITION": (T, "Windows, a bad instance state, or a key already attached (400)"),
    "INVALID_ARGUMENT": (T, "a parameter is invalid (400)"),
    "OUT_OF_RANGE": (T, "a parameter is out of range, e.g. pageSize (400)"),
    "UNAUTHENTICATED": (T, "authentication failed: check the AccessKey/SecretKey (401)"),
    "HTTP_FORBIDDEN": (T, "forbidden (403)"),
    "PERMISSION_DENIED": (T, "the credential may not do this (403)"),
    "NOT_FOUND": (T, "no such instance or key pair (404)"),
    "RESOURCE_NOT_EXIST": (T, "no such resource (404)"),
    "ALREADY_EXISTS": (T, "already exists (409)"),
    "NOT_IMPLEMENTED": (T, "not implemented (501)"),
    "ABORTED": (R, "a concurrent operation aborted this one (409)"),
    "CONFLICT": (R, "a conflicting operation is in progress (409)"),
    "APIGW_NONCE_CONFLICT": (R, "the gateway saw this nonce before; a new call has a new one"),
    "RATE_LIMIT_EXCEEDED": (R, "over the API's rate limit (429)"),
    "QUOTA_EXCEEDED": (R, "over the gateway's call quota (429)"),
    "CANCELLED": (R, "the call was cancelled (499)"),
    "INTERNAL": (R, "the cloud's internal error (500)"),
    "UNKNOWN": (R, "the cloud's unknown error (500)"),
    "BAD_GATEWAY": (R, "bad gateway (502)"),
    "UNAVAILABLE": (R, "the service is briefly unavailable (503)"),
    "DEADLINE_EXCEEDED": (R, "the cloud timed out (504)"),
    # keybind's own: the call did not get an answer the API defines.
    "keybind.Timeout": (R, "no answer within the HTTP timeout"),
    "keybind.ConnectionError": (R, "could not reach the endpoint"),
    "keybind.HttpStatus": (R, "an HTTP error without the API's JSON (gateway or server trouble)"),
    "keybind.BadResponse": (R, "an answer that is not the API's JSON"),
    "keybind.NotAttached": (R, "the cloud listed the instance as failed; it looks eligible"),
    "keybind.DetachFailed": (R, "replace: detachKeypair did not take the instance"),
    "keybind.NoSlot": (R, "replace: detached, but no attachKeypair slot within the wait"),
    "keybind.WorkerLost": (R, "the worker calling for the instance stopped (the sweeper retries)"),
    "keybind.AccountMisconfigured": (T, "the job's account has no usable credentials"),
    # keybind's own: the verify phase (describeInstances after an accepted attach).
    "keybind.KeyNotBound": (T, "attach succeeded but keyNames shows another key"),
    "keybind.VerifyNotFound": (T, "describeInstances no longer finds the instance"),
    "keybind.VerifyTimeout": (T, "the attach was accepted but not confirmed within the budget"),
}

# JD VM status values (Vm_Status.md) that pass by themselves; attach takes running or stopped.
TRANSITIONAL_STATUSES = frozenset(
    {"pending", "starting", "stopping", "rebooting", "rebuilding", "resizing"}
)
INVALID_STATUS = re.compile(r"Invalid instance status\s+([a-z]+)", re.IGNORECASE)
ALREADY_ATTACHED = "Already attached"
REPLACE_HINT = (
    " (the instance already holds a key pair and JD allows one per instance: submit with"
    " replace=true to detach it and attach the new one)"
)


def classify(status: str, message: str = "", http_status: int | None = None) -> ErrorClass:
    """The class of an error; a transitional instance state waits, other preconditions fail."""
    if status == "FAILED_PRECONDITION":
        m = INVALID_STATUS.search(message)
        if m and m.group(1).lower() in TRANSITIONAL_STATUSES:
            return W
        return T
    entry = TABLE.get(status)
    if entry is not None:
        return entry[0]
    if http_status is not None and (http_status == 429 or http_status >= 500):
        return R
    return T


def is_already_attached(status: str, message: str) -> bool:
    return status == "FAILED_PRECONDITION" and ALREADY_ATTACHED.lower() in message.lower()


def markdown_table() -> str:
    return error_table_markdown(TABLE, "status")


if __name__ == "__main__":
    print(markdown_table())
