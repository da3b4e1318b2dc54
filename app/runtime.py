"""The long-lived things one process needs: database sessions, limiter, cloud clients, producer.

Built lazily and once per process (after a prefork worker forks), never at import time.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.accounts import Accounts, load_accounts
from app.config import Settings, get_settings
from app.db import make_engine, make_sessionmaker, utcnow
from app.jobs.retry import RetryPolicy
from app.providers.base import Account, NoSlot, Pace, Provider, ProviderSpec, Slot
from app.providers.registry import spec
from app.ratelimit import Limiter, build_limiter

if TYPE_CHECKING:
    from celery import Celery

BIND_TASK = "keybind.bind"
VERIFY_TASK = "keybind.verify"
DISPATCH_TASK = "keybind.dispatch"
# Broker lanes (kombu's Redis transport serves priority 0 before 3, 6, 9; unprioritised
# messages, such as verify calls and dispatcher kicks, ride at 0). Bulk bind calls wait
# behind everything else, so a job's first call is not queued behind another job's backlog.
FRONT_PRIORITY = 0
BULK_PRIORITY = 6


class RatedJob(Protocol):
    @property
    def provider(self) -> str: ...
    @property
    def account(self) -> str: ...
    @property
    def batch_size(self) -> int: ...


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.rng = random.Random()
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
        return RetryPolicy(
            max_attempts=s.max_attempts,
            budget_s=s.retry_budget_s,
            base_s=s.backoff_base_s,
            max_s=s.backoff_max_s,
        )

    @cached_property
    def celery(self) -> Celery:
        from app.worker.celery_app import create_celery

        return create_celery(self.settings)

    @property
    def bind_queue(self) -> str:
        return f"{self.settings.queue_prefix}.bind"

    @property
    def control_queue(self) -> str:
        return f"{self.settings.queue_prefix}.control"

    @cached_property
    def accounts(self) -> Accounts:
        return load_accounts(self.settings)

    def spec(self, provider: str) -> ProviderSpec:
        return spec(provider)

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

    def rate(self, provider: str, account: str, action: str) -> float:
        """Calls/s allowed for one account's action: the account's own rate, else
        KEYBIND_RATE_LIMIT for the bind action, else the cloud's documented limit."""
        s = spec(provider)
        own = self.accounts.get(provider, account)
        if own is not None and action in own.rates:
            return own.rates[action]
        if action == s.bind_action and self.settings.rate_limit is not None:
            return self.settings.rate_limit
        return s.actions[action]

    def job_rate(self, job: RatedJob) -> float:
        """Instances/s the cloud's limit lets `job` through: its account's bind calls/s times
        the instances each call carries. What progress estimates (ETA) divide by."""
        bind = spec(job.provider).bind_action
        return self.rate(job.provider, job.account, bind) * job.batch_size

    def limiter_key(self, provider: str, account: str, action: str) -> str:
        return f"{provider}:{account}:{action}"

    def pace(self, provider: str, account: str, *, front: bool = False) -> Pace:
        """What a provider calls before each cloud call: wait for the global limiter.
        `front`: for a front-lane call, which waits ahead of the bulk."""

        def wait_for_slot(action: str) -> Slot:
            grant = self.limiter.acquire(
                self.limiter_key(provider, account, action),
                self.rate(provider, account, action),
                max_wait=self.settings.rate_limit_max_wait_s,
                front=front,
            )
            if grant is None:
                raise NoSlot(action)
            return grant

        return wait_for_slot

    def enqueue_binds(
        self,
        batches: Sequence[Sequence[int]],
        *,
        front: bool = False,
        countdowns: Sequence[float] = (),
    ) -> None:
        """One bind task per batch; `front`: ahead of every bulk call waiting in the broker;
        `countdowns`: per batch, seconds from now until it is to run (none: now)."""
        # One clock reading for the whole release: the countdowns are spaced one limiter
        # slot apart, and the time spent sending must not stretch them.
        now = utcnow()
        for i, batch in enumerate(batches):
            countdown = countdowns[i] if i < len(countdowns) else 0.0
            self.celery.send_task(
                BIND_TASK,
                args=[list(batch)],
                kwargs={"front": True} if front else {},
                queue=self.bind_queue,
                priority=FRONT_PRIORITY if front else BULK_PRIORITY,
                eta=now + timedelta(seconds=countdown) if countdown else None,
                # After the dispatch lease the dispatcher releases the target again anyway.
                expires=now + timedelta(seconds=countdown + self.settings.dispatch_lease_s),
            )

    def enqueue_verifies(self, batches: Sequence[Sequence[int]], countdown: float = 0.0) -> None:
        """One verify task per batch, now or in `countdown` s (the claim only takes targets
        whose look is due, so an early or duplicate message changes nothing)."""
        for batch in batches:
            self.celery.send_task(
                VERIFY_TASK,
                args=[list(batch)],
                queue=self.bind_queue,
                countdown=countdown or None,
                expires=countdown + self.settings.dispatch_lease_s,
            )

    def kick_dispatch(self, countdown: float = 0.0) -> None:
        """Ask for a dispatcher tick now (or in `countdown` s) rather than at the next beat.
        Only ever an accelerator: what is due lives in PostgreSQL, and the beat ticks anyway."""
        self.celery.send_task(
            DISPATCH_TASK,
            queue=self.control_queue,
            countdown=countdown or None,
            expires=countdown + max(5.0, 5 * self.settings.dispatch_interval_s),
        )

    def close(self) -> None:
        for p in self._providers.values():
            p.close()
        self._providers.clear()
        if "engine" in self.__dict__:
            self.engine.dispose()


_runtime: Runtime | None = None
_runtime_pid: int | None = None


def get_runtime() -> Runtime:
    """This process's runtime; a forked child builds its own (no shared sockets)."""
    global _runtime, _runtime_pid
    if _runtime is None or _runtime_pid != os.getpid():
        _runtime = Runtime(get_settings())
        _runtime_pid = os.getpid()
    return _runtime


def reset_runtime() -> None:
    global _runtime
    if _runtime is not None and _runtime_pid == os.getpid():
        _runtime.close()
    _runtime = None
