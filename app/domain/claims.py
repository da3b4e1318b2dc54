"""What a worker holds while it calls the cloud for targets: a leased claim. Pure data."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from app.domain.states import TargetState


@dataclass(frozen=True, slots=True)
class Claim:
    """A target leased for its bind call."""

    target_id: int
    job_id: str
    instance_id: str
    prior_state: TargetState  # where it goes back to if no call is made for it
    attempts: int
    first_attempt_at: datetime
    lease_token: str
    bisect_calls: int = 0  # calls that included it and ended in a split (see Split)


@dataclass(frozen=True, slots=True)
class LookClaim:
    """A target leased for a verify look at its accepted bind."""

    target_id: int
    job_id: str
    instance_id: str
    bind_request_id: str | None
    verify_started_at: datetime
    verify_checks: int
    lease_token: str
