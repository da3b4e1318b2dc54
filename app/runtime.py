"""The long-lived things one process holds: database engine and sessions, the limiter, the
accounts and their rate policy, connected cloud clients, the policies built from Settings.

Built lazily, never at import time; each process builds its own (a forked worker child after
the fork, app/worker/process.py). The broker producer is not here: entry points build one and
hand it to the use cases that send work (app/jobs/ports.py).
"""

from __future__ import annotations

import random
from functools import cached_property

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.domain.retry import RetryPolicy, VerifyPolicy
from app.limiter.base import Limiter
from app.limiter.build import build_limiter
from app.providers.accounts import Accounts, load_accounts
from app.providers.base import Account, Provider
from app.providers.rates import RatePolicy
from app.providers.registry import spec
from app.store.db import make_engine, make_sessionmaker
from app.store.job_cache import JobCache


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.rng = random.Random()
        self.jobs = JobCache()
        self._providers: dict[tuple[str, str], Provider] = {}

    @cached_property
    def engine(self) -> Engine:
        return make_engine(self.settings)

    @cached_property
    def autocommit(self) -> Engine:
        """The same pool, each statement its own transaction: for work done in one statement."""
        return self.engine.execution_options(isolation_level="AUTOCOMMIT")

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return make_sessionmaker(self.engine)

    @cached_property
    def limiter(self) -> Limiter:
        return build_limiter(self.settings)

    @cached_property
    def retry_policy(self) -> RetryPolicy:
        s = self.settings
        return RetryPolicy(s.max_attempts, s.retry_budget_s, s.backoff_base_s, s.backoff_max_s)

    @cached_property
    def verify_policy(self) -> VerifyPolicy:
        s = self.settings
        return VerifyPolicy(s.verify_delay_s, s.verify_interval_max_s, s.verify_budget_s)

    @cached_property
    def accounts(self) -> Accounts:
        return load_accounts(self.settings)

    @cached_property
    def rates(self) -> RatePolicy:
        return RatePolicy(self.accounts, self.settings)

    def account(self, provider: str, name: str) -> Account:
        found = self.accounts.get(provider, name)
        if found is None:
            raise KeyError(f"no {provider} account named {name!r}")
        return found

    def provider(self, name: str, account: str) -> Provider:
        """This process's connected provider for (cloud, account), built on first use."""
        key = (name, account)
        if key not in self._providers:
            self._providers[key] = spec(name).connect(self.account(name, account), self.settings)
        return self._providers[key]

    def close(self) -> None:
        for p in self._providers.values():
            p.close()
        self._providers.clear()
        if "engine" in self.__dict__:
            self.engine.dispose()
