"""Injected faults: at a rate, the transient trouble a real cloud has on a bad day
(`RateFaults`), and per instance, as the fleet file scripts them (`ScriptedFault`)."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

from starlette.responses import Response

# kind -> what the simulator does: an API error code, which each cloud answers in its own
# way, or one of the three below, which break the answer itself.
HTTP5XX, TIMEOUT, SLOW = "http5xx", "timeout", "slow"
KINDS = {
    "mutex": "MutexOperation.TaskRunning",
    "in_progress": "OperationDenied.InstanceOperationInProgress",
    "internal": "InternalError",
    "throttle": "RequestLimitExceeded",
    "http5xx": HTTP5XX,  # HTTP 502 with an HTML body, as a gateway would
    "timeout": TIMEOUT,  # no answer until the client gives up
    "slow": SLOW,  # a correct answer, late
}


@dataclass
class RateFaults:
    rate: float = 0.0
    kinds: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=lambda: ["AssociateInstancesKeyPairs"])
    rng: random.Random = field(default_factory=random.Random)

    def configure(
        self, rate: float, kinds: list[str], seed: int | None, actions: list[str] | None
    ) -> None:
        unknown = [k for k in kinds if k not in KINDS]
        if unknown:
            raise ValueError(f"unknown fault kinds: {unknown}; known: {sorted(KINDS)}")
        if not 0 <= rate <= 1:
            raise ValueError("rate must be within [0, 1]")
        self.rate, self.kinds = rate, list(kinds)
        self.rng = random.Random(seed)
        if actions:
            self.actions = list(actions)

    def draw(self, action: str) -> str | None:
        """The fault to inject into this call, if any."""
        if not self.kinds or action not in self.actions or self.rng.random() >= self.rate:
            return None
        return KINDS[self.rng.choice(self.kinds)]


def is_api_error(fault: str) -> bool:
    """True for a drawn fault the cloud answers as an API error (a code, not a broken answer)."""
    return fault not in (HTTP5XX, TIMEOUT, SLOW)


async def act_out(
    fault: str | None, *, timeout_s: float, slow_s: float
) -> tuple[str, Response] | None:
    """Break the answer as `fault` says: a gateway's 502, or nothing until the client gives up
    (either returned with the code the stats record); or wait `slow_s` and return None, as for
    no fault or an API error, so the call goes on."""
    if fault == HTTP5XX:
        page = "<html><body>502 Bad Gateway</body></html>"
        return "HTTP502", Response(page, status_code=502, media_type="text/html")
    if fault == TIMEOUT:
        await asyncio.sleep(timeout_s)
        return "Timeout", Response("", status_code=504)
    if fault == SLOW:
        await asyncio.sleep(slow_s)
    return None


@dataclass
class ScriptedFault:
    """A fleet file's fault for one instance: its next `times` calls answer `code`."""

    code: str
    times: int


def next_scripted(faults: list[ScriptedFault]) -> str | None:
    """The code this call answers, if any; uses up one time of the first fault left."""
    while faults:
        fault = faults[0]
        if fault.times > 0:
            fault.times -= 1
            return fault.code
        faults.pop(0)
    return None
