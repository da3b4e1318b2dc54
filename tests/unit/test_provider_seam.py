"""The provider seam: Outcome bookkeeping, target validation, rates and named accounts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.config import Settings
from app.providers.accounts import load_accounts
from app.providers.base import (
    CallError,
    CallResult,
    ErrorClass,
    InstanceStatus,
    Outcome,
    ProviderConfigError,
)
from app.providers.rates import limiter_key
from app.providers.registry import spec
from app.runtime import Runtime

BUSY = CallError("MutexOperation.TaskRunning", "busy", ErrorClass.RETRY)


def test_an_all_or_nothing_call_gives_every_instance_the_same_answer() -> None:
    ok = CallResult("A", "req-1", 1.0, 200, instance_ids=("ins-a", "ins-b"))
    out = Outcome.from_call(ok, InstanceStatus.ACCEPTED)
    assert {i: r.status for i, r in out.results.items()} == {
        "ins-a": InstanceStatus.ACCEPTED,
        "ins-b": InstanceStatus.ACCEPTED,
    }
    assert all(r.request_id == "req-1" for r in out.results.values())
    failed = CallResult("A", "req-2", 1.0, 200, BUSY, instance_ids=("ins-a", "ins-b"))
    out = out.merge(Outcome.from_call(failed, InstanceStatus.ACCEPTED))
    assert len(out.calls) == 2
    assert out.results["ins-a"].status is InstanceStatus.FAILED
    assert out.results["ins-a"].error == BUSY and out.results["ins-a"].request_id == "req-2"


def test_per_instance_failures_override_the_call() -> None:
    missing = CallError("NOT_FOUND", "gone", ErrorClass.TERMINAL)
    call = CallResult(
        "attach", "r", 1.0, 200, failed_instances={"i-b": missing}, instance_ids=("i-a", "i-b")
    )
    out = Outcome.from_call(call, InstanceStatus.VERIFIED)
    assert out.results["i-a"].status is InstanceStatus.VERIFIED
    assert out.results["i-b"].error == missing


def test_tencent_targets_are_validated_by_their_id_format() -> None:
    problems = spec("tencent").validate_targets(["ins-r8hr2upy", "ins-1122", "i-abcdefghij"])
    assert [(p.index, p.value) for p in problems] == [(1, "ins-1122"), (2, "i-abcdefghij")]
    assert "ins-r8hr2upy" in problems[0].message


def test_each_action_has_its_own_rate(tmp_path: Path) -> None:
    rt = Runtime(Settings(home=tmp_path))
    assert rt.rates.rate("tencent", "default", "AssociateInstancesKeyPairs") == 10
    assert rt.rates.rate("tencent", "default", "DescribeInstances") == 40
    assert limiter_key("tencent", "default", "DescribeInstances") != limiter_key(
        "tencent", "default", "AssociateInstancesKeyPairs"
    )
    raised = Runtime(Settings(home=tmp_path, rate_limit=100))
    assert raised.rates.rate("tencent", "default", "AssociateInstancesKeyPairs") == 100
    assert raised.rates.rate("tencent", "default", "DescribeInstances") == 40


def test_accounts_file_adds_named_accounts_with_their_own_rates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KB_TEST_INTL_KEY", "intl-secret-value")
    path = tmp_path / "accounts.json"
    path.write_text(
        json.dumps(
            {
                "tencent": {
                    "intl": {
                        "endpoint": "https://cvm.intl.tencentcloudapi.com",
                        "secret_id": "AKIDintl",
                        "secret_key": {"env": "KB_TEST_INTL_KEY"},
                        "rates": {"AssociateInstancesKeyPairs": 5},
                    }
                }
            }
        )
    )
    settings = Settings(home=tmp_path, accounts_file=path)
    accounts = load_accounts(settings)
    assert accounts.names("tencent") == ["default", "intl"]
    intl = accounts.get("tencent", "intl")
    assert intl is not None and intl.endpoint == "https://cvm.intl.tencentcloudapi.com"
    assert intl.secret("secret_key") == "intl-secret-value"
    assert "intl-secret-value" not in repr(intl) and "AKIDintl" not in repr(intl)
    rt = Runtime(settings)
    assert rt.rates.rate("tencent", "intl", "AssociateInstancesKeyPairs") == 5
    assert rt.rates.rate("tencent", "default", "AssociateInstancesKeyPairs") == 10


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"nocloud": {}}, "unknown provider 'nocloud'"),
        ({"tencent": {"bad name!": {}}}, "account names"),
        ({"tencent": {"x": {"secret_key": {"env": "KB_UNSET_VAR_XYZ"}}}}, "not set"),
        ({"tencent": {"x": {"rates": {"A": -1}}}}, "rates"),
    ],
)
def test_a_bad_accounts_file_is_refused_naming_the_place(
    tmp_path: Path, body: object, says: str
) -> None:
    path = tmp_path / "accounts.json"
    path.write_text(json.dumps(body))
    with pytest.raises(ProviderConfigError, match=says):
        load_accounts(Settings(home=tmp_path, accounts_file=path))


def test_an_unparsable_accounts_file_does_not_echo_its_contents(tmp_path: Path) -> None:
    path = tmp_path / "accounts.json"
    path.write_text('{"tencent": {"x": {"secret_key": "hunter2-secret"')
    with pytest.raises(ProviderConfigError) as info:
        load_accounts(Settings(home=tmp_path, accounts_file=path))
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("cn", "https://cvm.tencentcloudapi.com"),
        ("intl", "https://cvm.intl.tencentcloudapi.com"),
        ("http://127.0.0.1:9100", "http://127.0.0.1:9100"),
    ],
)
def test_cn_and_intl_endpoints(endpoint: str, url: str, tmp_path: Path) -> None:
    from pydantic import SecretStr

    from app.providers.base import Account
    from app.providers.tencent.provider import TencentProvider, connect

    creds = {"secret_id": SecretStr("AKIDx"), "secret_key": SecretStr("k")}
    p = connect(Account("tencent", "x", endpoint, creds), Settings(home=tmp_path))
    assert isinstance(p, TencentProvider) and p.client.endpoint == url
    p.close()


@pytest.mark.parametrize(
    ("provider", "credentials", "variable"),
    [
        ("tencent", {"secret_id": "AKIDvisible", "secret_key": "tc-TOPSECRET"}, "TENCENT"),
        ("jdcloud", {"access_key": "JDCvisible", "secret_key": "jd-TOPSECRET"}, "JDCLOUD"),
    ],
)
def test_a_malformed_endpoint_is_a_config_error_naming_the_variable(
    tmp_path: Path, provider: str, credentials: dict[str, str], variable: str
) -> None:
    """What the bind task turns into keybind.AccountMisconfigured, whichever the cloud."""
    from pydantic import SecretStr

    from app.providers.base import Account

    creds = {k: SecretStr(v) for k, v in credentials.items()}
    account = Account(provider, "default", "not a url", creds)
    with pytest.raises(ProviderConfigError) as info:
        spec(provider).connect(account, Settings(home=tmp_path))
    message = str(info.value)
    assert f"KEYBIND_{variable}_ENDPOINT" in message
    assert not any(v in message for v in credentials.values())


def test_the_accounts_file_may_be_toml(tmp_path: Path) -> None:
    path = tmp_path / "accounts.toml"
    path.write_text(
        '[tencent.staging]\nendpoint = "intl"\nsecret_id = "AKIDs"\nsecret_key = "k"\n'
        "[tencent.staging.rates]\nAssociateInstancesKeyPairs = 5\n"
    )
    staging = load_accounts(Settings(home=tmp_path, accounts_file=path)).get("tencent", "staging")
    assert staging is not None and staging.endpoint == "intl"
    assert staging.rates == {"AssociateInstancesKeyPairs": 5.0}
