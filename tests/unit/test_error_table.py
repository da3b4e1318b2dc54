"""The classification table covers the documented codes, each in the class the issue asks."""

from __future__ import annotations

import pytest

from app.providers.base import ErrorClass
from app.providers.tencent.errors import TABLE, classify

# The error table of AssociateInstancesKeyPairs on the international site (213/33232).
SEED_CODES = [
    "InternalServerError",
    "InvalidInstance.NotSupported",
    "InvalidInstanceId.Malformed",
    "InvalidInstanceId.NotFound",
    "InvalidKeyPairId.Malformed",
    "InvalidKeyPairId.NotFound",
    "InvalidParameterValue",
    "InvalidParameterValue.InstanceIdMalformed",
    "InvalidParameterValue.KeyPairNotSupported",
    "InvalidParameterValue.LimitExceeded",
    "MissingParameter",
    "MutexOperation.TaskRunning",
    "OperationDenied.InstanceOperationInProgress",
    "UnauthorizedOperation.MFAExpired",
    "UnauthorizedOperation.MFANotFound",
    "UnsupportedOperation.InstanceOsWindows",
    "UnsupportedOperation.InstanceStateEnterServiceLiveMigrate",
    "UnsupportedOperation.InstanceStateExitRescueMode",
    "UnsupportedOperation.InstanceStateFreezing",
    "UnsupportedOperation.InstanceStateIsolating",
    "UnsupportedOperation.InstanceStatePending",
    "UnsupportedOperation.InstanceStateRebooting",
    "UnsupportedOperation.InstanceStateRescueMode",
    "UnsupportedOperation.InstanceStateRunning",
    "UnsupportedOperation.InstanceStateShutdown",
    "UnsupportedOperation.InstanceStateStarting",
    "UnsupportedOperation.InstanceStateStopping",
    "UnsupportedOperation.InstanceStateTerminating",
    "UnsupportedOperation.StoppedModeStopCharging",
]
# Common error codes of every API 3.0 action (213/33281).
COMMON_CODES = [
    "ActionOffline",
    "AuthFailure.InvalidAuthorization",
    "AuthFailure.InvalidSecretId",
    "AuthFailure.MFAFailure",
    "AuthFailure.SecretIdNotFound",
    "AuthFailure.SignatureExpire",
    "AuthFailure.SignatureFailure",
    "AuthFailure.TokenFailure",
    "AuthFailure.UnauthorizedOperation",
    "DryRunOperation",
    "FailedOperation",
    "InternalError",
    "InvalidAction",
    "InvalidParameter",
    "InvalidParameterValue",
    "InvalidRequest",
    "IpInBlacklist",
    "IpNotInWhitelist",
    "LimitExceeded",
    "MissingParameter",
    "NoSuchProduct",
    "NoSuchVersion",
    "RequestLimitExceeded",
    "RequestLimitExceeded.GlobalRegionUinLimitExceeded",
    "RequestLimitExceeded.IPLimitExceeded",
    "RequestLimitExceeded.UinLimitExceeded",
    "RequestSizeLimitExceeded",
    "ResourceInUse",
    "ResourceInsufficient",
    "ResourceNotFound",
    "ResourceUnavailable",
    "ResponseSizeLimitExceeded",
    "ServiceUnavailable",
    "UnauthorizedOperation",
    "UnknownParameter",
    "UnsupportedOperation",
    "UnsupportedProtocol",
    "UnsupportedRegion",
]


@pytest.mark.parametrize("code", SEED_CODES + COMMON_CODES)
def test_every_documented_code_is_in_the_table(code: str) -> None:
    assert code in TABLE


@pytest.mark.parametrize(
    ("code", "error_class"),
    [
        ("MutexOperation.TaskRunning", ErrorClass.RETRY),
        ("OperationDenied.InstanceOperationInProgress", ErrorClass.RETRY),
        ("RequestLimitExceeded.IPLimitExceeded", ErrorClass.RETRY),
        ("InternalError", ErrorClass.RETRY),
        ("InternalServerError", ErrorClass.RETRY),
        ("UnsupportedOperation.InstanceStatePending", ErrorClass.WAIT_STATE),
        ("UnsupportedOperation.InstanceStateStarting", ErrorClass.WAIT_STATE),
        ("UnsupportedOperation.InstanceStateStopping", ErrorClass.WAIT_STATE),
        ("UnsupportedOperation.InstanceStateRebooting", ErrorClass.WAIT_STATE),
        ("UnsupportedOperation.InstanceStateExitRescueMode", ErrorClass.WAIT_STATE),
        ("UnsupportedOperation.InstanceStateEnterServiceLiveMigrate", ErrorClass.WAIT_STATE),
        ("UnsupportedOperation.InstanceStateRunning", ErrorClass.POWER_STATE),
        ("InvalidInstanceId.NotFound", ErrorClass.TERMINAL),
        ("InvalidInstanceId.Malformed", ErrorClass.TERMINAL),
        ("UnsupportedOperation.InstanceOsWindows", ErrorClass.TERMINAL),
        ("UnsupportedOperation.InstanceStateShutdown", ErrorClass.TERMINAL),
        ("UnsupportedOperation.InstanceStateTerminating", ErrorClass.TERMINAL),
        ("UnsupportedOperation.InstanceStateIsolating", ErrorClass.TERMINAL),
        ("UnsupportedOperation.InstanceStateFreezing", ErrorClass.TERMINAL),
        ("UnsupportedOperation.StoppedModeStopCharging", ErrorClass.TERMINAL),
        ("InvalidParameterValue.KeyPairNotSupported", ErrorClass.TERMINAL),
        ("AuthFailure.SignatureFailure", ErrorClass.TERMINAL),
        ("UnauthorizedOperation.MFAExpired", ErrorClass.TERMINAL),
        ("Totally.Unknown", ErrorClass.TERMINAL),
        ("RequestLimitExceeded.SomeFutureLimit", ErrorClass.RETRY),
    ],
)
def test_classes_as_the_issue_asks(code: str, error_class: ErrorClass) -> None:
    assert classify(code) is error_class
