"""Named accounts (credential profiles): one keybind serving many cloud accounts.

Each provider has an account named "default" built from the cloud's own environment names
(TENCENTCLOUD_SECRET_ID...). `KEYBIND_ACCOUNTS_FILE` (JSON, or TOML when it ends in .toml)
adds more, per provider:

    {"tencent": {"prod-intl": {"endpoint": "https://cvm.intl.tencentcloudapi.com",
                               "secret_id": "AKID...", "secret_key": {"env": "PROD_INTL_KEY"},
                               "rates": {"AssociateInstancesKeyPairs": 10}}}}

Every field other than `endpoint` and `rates` is a credential, kept as SecretStr; a value
`{"env": "NAME"}` is read from that environment variable instead of the file.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from app.config import Settings
from app.providers.base import Account, ProviderConfigError
from app.providers.registry import specs

ACCOUNT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
DEFAULT = "default"


@dataclass(frozen=True, slots=True)
class Accounts:
    by_provider: Mapping[str, Mapping[str, Account]]

    def get(self, provider: str, name: str) -> Account | None:
        return self.by_provider.get(provider, {}).get(name)

    def names(self, provider: str) -> list[str]:
        return sorted(self.by_provider.get(provider, {}))


def load_accounts(settings: Settings) -> Accounts:
    """The env-built "default" account of every provider, then the accounts file's."""
    by_provider: dict[str, dict[str, Account]] = {}
    for name, spec in specs().items():
        default = spec.default_account(settings)
        by_provider[name] = {DEFAULT: default} if default is not None else {}
    path = settings.accounts_file
    if path is None:
        return Accounts(by_provider)
    for provider, accounts in _read(path).items():
        if provider not in by_provider:
            raise ProviderConfigError(f"{path}: unknown provider {provider!r}")
        if not isinstance(accounts, dict):
            raise ProviderConfigError(f"{path}: {provider} must map account names to objects")
        defaults = by_provider[provider].get(DEFAULT)
        for name, fields in accounts.items():
            by_provider[provider][name] = _account(path, provider, name, fields, defaults)
    return Accounts(by_provider)


def _read(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
        data = tomllib.loads(raw.decode()) if path.suffix == ".toml" else json.loads(raw)
    except (OSError, ValueError) as exc:
        # The parser's message can quote the file, and the file holds secrets: name the type.
        raise ProviderConfigError(
            f"KEYBIND_ACCOUNTS_FILE {path}: unreadable ({type(exc).__name__})"
        ) from None
    if not isinstance(data, dict):
        raise ProviderConfigError(f"KEYBIND_ACCOUNTS_FILE {path}: not an object")
    return data


def _account(
    path: Path, provider: str, name: str, fields: Any, defaults: Account | None
) -> Account:
    where = f"{path}: {provider}.{name}"
    if not ACCOUNT_NAME.fullmatch(name):
        raise ProviderConfigError(f"{where}: account names are 1-64 of A-Z a-z 0-9 _ . -")
    if not isinstance(fields, dict):
        raise ProviderConfigError(f"{where}: must be an object")
    endpoint = fields.get("endpoint") or (defaults.endpoint if defaults else "")
    rates = fields.get("rates") or {}
    if not isinstance(rates, dict) or not all(
        isinstance(v, int | float) and v > 0 for v in rates.values()
    ):
        raise ProviderConfigError(f"{where}: rates must map action names to positive numbers")
    credentials: dict[str, SecretStr] = {}
    for key, value in fields.items():
        if key in ("endpoint", "rates"):
            continue
        if isinstance(value, dict) and set(value) == {"env"}:
            value = os.environ.get(str(value["env"]))
            if value is None:
                raise ProviderConfigError(f"{where}.{key}: environment variable is not set")
        if not isinstance(value, str):
            raise ProviderConfigError(f'{where}.{key}: must be a string or {{"env": NAME}}')
        credentials[key] = SecretStr(value)
    return Account(
        provider, name, str(endpoint), credentials, {str(k): float(v) for k, v in rates.items()}
    )
