"""Every Tencent CVM error code keybind knows, and what the worker does about it.

One table: the AssociateInstancesKeyPairs codes from the API doc (213/33232, 213/15698) and
the common codes every API 3.0 action may answer (213/33281), plus keybind's own codes for
failures that never reached an answer. Unknown codes are terminal, shown as they came.
"""

from __future__ import annotations

from app.providers.base import ErrorClass, error_table_markdown

R, W, P, T = ErrorClass.RETRY, ErrorClass.WAIT_STATE, ErrorClass.POWER_STATE, ErrorClass.TERMINAL

TABLE: dict[str, tuple[ErrorClass, str]] = {
    # Busy: another operation holds the instance; it will let go.
    "MutexOperation.TaskRunning": (R, "an identical task is running on the instance"),
    "OperationDenied.InstanceOperationInProgress": (
        R,
        "an operation is in progress on the instance",
    ),
    # Throttled, or the cloud's own trouble.
    "RequestLimitExceeded": (R, "over the API's rate limit"),
    "RequestLimitExceeded.UinLimitExceeded": (R, "over the account's rate limit"),
    "RequestLimitExceeded.GlobalRegionUinLimitExceeded": (R, "over the account's global limit"),
    "RequestLimitExceeded.IPLimitExceeded": (R, "over the caller IP's rate limit"),
    "InternalError": (R, "the cloud's internal error"),
    "InternalServerError": (R, "the cloud's internal error"),
    "ServiceUnavailable": (R, "the service is briefly unavailable"),
    "ResourceUnavailable": (R, "a resource is briefly unavailable"),
    "ResourceInUse": (R, "a resource is in use"),
    # Transitional instance states: retry once the instance settles.
    "UnsupportedOperation.InstanceStatePending": (W, "the instance is being created"),
    "UnsupportedOperation.InstanceStateStarting": (W, "the instance is starting"),
    "UnsupportedOperation.InstanceStateStopping": (W, "the instance is stopping"),
    "UnsupportedOperation.InstanceStateRebooting": (W, "the instance is rebooting"),
    "UnsupportedOperation.InstanceStateExitRescueMode": (W, "the instance is leaving rescue mode"),
    "UnsupportedOperation.InstanceStateEnterServiceLiveMigrate": (W, "the instance is migrating"),
    # Running and the job did not allow a force stop.
    "UnsupportedOperation.InstanceStateRunning": (P, "the instance is running"),
    # Terminal: retrying cannot change the answer.
    "UnsupportedOperation.InstanceStateShutdown": (T, "the instance is shut down (isolated)"),
    "UnsupportedOperation.InstanceStateTerminating": (T, "the instance is being terminated"),
    "UnsupportedOperation.InstanceStateIsolating": (T, "the instance is being isolated"),
    "UnsupportedOperation.InstanceStateFreezing": (T, "the instance is frozen"),
    "UnsupportedOperation.InstanceStateRescueMode": (T, "the instance is in rescue mode"),
    "UnsupportedOperation.InstanceOsWindows": (T, "Windows instances take no key pairs"),
    "UnsupportedOperation.StoppedModeStopCharging": (T, "the instance is stopped without charging"),
    "UnsupportedOperation": (T, "the operation is not supported"),
    "InvalidInstance.NotSupported": (T, "the instance is not supported"),
    "InvalidInstanceId.Malformed": (T, "malformed instance ID"),
    "InvalidInstanceId.NotFound": (T, "no such instance"),
    "InvalidKeyPairId.Malformed": (T, "malformed key pair ID"),
    "InvalidKeyPairId.NotFound": (T, "no such key pair"),
    "InvalidParameterValue": (T, "invalid parameter value"),
    "InvalidParameterValue.InstanceIdMalformed": (T, "malformed instance ID"),
    "InvalidParameterValue.KeyPairNotSupported": (T, "the key pair does not support this"),
    "InvalidParameterValue.LimitExceeded": (T, "too many values in one call"),
    "InvalidParameter": (T, "invalid parameter"),
    "MissingParameter": (T, "a required parameter is missing"),
    "UnknownParameter": (T, "an unknown parameter was sent"),
    "UnauthorizedOperation.MFAExpired": (T, "the MFA token expired"),
    "UnauthorizedOperation.MFANotFound": (T, "MFA is required"),
    "UnauthorizedOperation": (T, "not authorised (CAM policy)"),
    "AuthFailure.InvalidAuthorization": (T, "the Authorization header is malformed"),
    "AuthFailure.InvalidSecretId": (T, "the SecretId is invalid"),
    "AuthFailure.MFAFailure": (T, "MFA failed"),
    "AuthFailure.SecretIdNotFound": (T, "the SecretId does not exist or is disabled"),
    "AuthFailure.SignatureExpire": (T, "the signature expired (clock skew over 5 min)"),
    "AuthFailure.SignatureFailure": (T, "the signature is wrong (check the SecretKey)"),
    "AuthFailure.TokenFailure": (T, "the session token is invalid or expired"),
    "AuthFailure.UnauthorizedOperation": (T, "the credential may not call this action"),
    "ActionOffline": (T, "the action has been retired"),
    "DryRunOperation": (T, "a dry run succeeded (nothing changed)"),
    "FailedOperation": (T, "the operation failed"),
    "InvalidAction": (T, "no such action"),
    "InvalidRequest": (T, "the request is malformed"),
    "IpInBlacklist": (T, "the caller IP is blacklisted"),
    "IpNotInWhitelist": (T, "the caller IP is not whitelisted"),
    "LimitExceeded": (T, "a quota is exceeded"),
    "NoSuchProduct": (T, "no such product"),
    "NoSuchVersion": (T, "no such API version"),
    "RequestSizeLimitExceeded": (T, "the request is too large"),
    "ResourceInsufficient": (T, "insufficient resources"),
    "ResourceNotFound": (T, "a resource was not found"),
    "ResponseSizeLimitExceeded": (T, "the response would be too large"),
    "UnsupportedProtocol": (T, "unsupported protocol"),
    "UnsupportedRegion": (T, "the action is not offered in this region"),
    # keybind's own: the call did not get an answer.
    "keybind.Timeout": (R, "no answer within the HTTP timeout"),
    "keybind.ConnectionError": (R, "could not reach the endpoint"),
    "keybind.HttpStatus": (R, "a non-200 HTTP status (gateway or server trouble)"),
    "keybind.BadResponse": (R, "an answer that is not the API's JSON"),
    "keybind.AccountMisconfigured": (T, "the job's account has no usable credentials"),
    "keybind.WorkerLost": (R, "the worker calling for the instance stopped (the sweeper retries)"),
    # keybind's own: the verify phase (DescribeInstances after an accepted bind).
    "keybind.OperationFailed": (T, "DescribeInstances shows the bind operation FAILED"),
    "keybind.KeyNotBound": (T, "the operation succeeded but LoginSettings.KeyIds lacks the key"),
    "keybind.VerifyNotFound": (T, "DescribeInstances no longer finds the instance"),
    "keybind.VerifyTimeout": (T, "the bind was accepted but not confirmed within the budget"),
}


def classify(code: str) -> ErrorClass:
    """The class of `code`; unknown codes are terminal."""
    entry = TABLE.get(code)
    if entry is not None:
        return entry[0]
    if code.startswith("RequestLimitExceeded"):
        return ErrorClass.RETRY
    return ErrorClass.TERMINAL


# Codes that one instance of a multi-instance AssociateInstancesKeyPairs call can cause for the
# whole call (Tencent answers all-or-nothing): keybind splits such a call in halves until the
# instance stands alone. Throttling, auth, key pair and server errors concern the whole call.
INSTANCE_CODES = frozenset(
    {
        "MutexOperation.TaskRunning",
        "OperationDenied.InstanceOperationInProgress",
        "InvalidInstance.NotSupported",
        "InvalidInstanceId.Malformed",
        "InvalidInstanceId.NotFound",
        "InvalidParameterValue.InstanceIdMalformed",
    }
)


def names_an_instance(code: str) -> bool:
    """True when `code` can be one instance's fault in a call naming many (see INSTANCE_CODES);
    every UnsupportedOperation.Instance* state or OS refusal is one."""
    return code in INSTANCE_CODES or code.startswith(
        ("UnsupportedOperation.Instance", "UnsupportedOperation.StoppedMode")
    )


def markdown_table() -> str:
    return error_table_markdown(TABLE, "code")


if __name__ == "__main__":
    print(markdown_table())
