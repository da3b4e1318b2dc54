"""Reaching a job's cloud from a worker: its connected provider (or, without usable
credentials, the error its targets fail with) and the pace its calls keep."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from app.domain import codes
from app.domain.calls import CallError, ErrorClass, InstanceResult, InstanceStatus, Outcome
from app.providers.base import NoSlot, Pace, Provider, ProviderConfigError, Slot
from app.providers.rates import limiter_key
from app.runtime import Runtime
from app.store.models import Job

log = logging.getLogger(__name__)


def connect(rt: Runtime, job: Job) -> Provider | CallError:
    """The job's provider, connected; or, with no credentials to call with, the error every
    target fails with: retrying cannot help until an operator fixes the configuration."""
    try:
        return rt.provider(job.provider, job.account)
    except (ProviderConfigError, KeyError) as exc:
        log.error("cannot call %s account %r: %s", job.provider, job.account, exc)
        # Says what is missing, never a secret.
        return CallError(codes.ACCOUNT_MISCONFIGURED, str(exc).strip("'\""), ErrorClass.TERMINAL)


def all_failed(instance_ids: Iterable[str], error: CallError) -> Outcome:
    failed = InstanceResult(InstanceStatus.FAILED, error)
    return Outcome([], dict.fromkeys(instance_ids, failed))


def pace(rt: Runtime, provider: str, account: str, *, front: bool = False) -> Pace:
    """What a provider calls before each cloud call: wait for the global limiter.
    `front`: for a front-lane call, which waits ahead of the bulk."""

    def wait_for_slot(action: str) -> Slot:
        grant = rt.limiter.acquire(
            limiter_key(provider, account, action),
            rt.rates.rate(provider, account, action),
            max_wait=rt.settings.rate_limit_max_wait_s,
            front=front,
        )
        if grant is None:
            raise NoSlot(action)
        return grant

    return wait_for_slot
