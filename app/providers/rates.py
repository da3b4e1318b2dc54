"""How fast keybind may call each account's actions, and the limiter key each is counted on."""

from __future__ import annotations

from typing import Protocol

from app.config import Settings
from app.providers.accounts import Accounts
from app.providers.registry import spec


class RatedJob(Protocol):
    @property
    def provider(self) -> str: ...
    @property
    def account(self) -> str: ...
    @property
    def batch_size(self) -> int: ...


def limiter_key(provider: str, account: str, action: str) -> str:
    """Each account's actions have their own bucket: the cloud limits them separately."""
    return f"{provider}:{account}:{action}"


class RatePolicy:
    def __init__(self, accounts: Accounts, settings: Settings) -> None:
        self._accounts = accounts
        self._settings = settings

    def rate(self, provider: str, account: str, action: str) -> float:
        """Calls/s allowed for one account's action: the account's own rate, else
        KEYBIND_RATE_LIMIT for the bind action, else the cloud's documented limit."""
        s = spec(provider)
        own = self._accounts.get(provider, account)
        if own is not None and action in own.rates:
            return own.rates[action]
        if action == s.bind_action and self._settings.rate_limit is not None:
            return self._settings.rate_limit
        return s.actions[action]

    def job_rate(self, job: RatedJob) -> float:
        """Instances/s the cloud's limit lets `job` through: its account's bind calls/s times
        the instances each call carries. What progress estimates (ETA) divide by."""
        bind = spec(job.provider).bind_action
        return self.rate(job.provider, job.account, bind) * job.batch_size
