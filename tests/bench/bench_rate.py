"""Limiter utilisation: worker processes against the simulator's strict 10 calls/s.

Measured at the simulator, which records every call's arrival: the sustained rate of
accepted calls divided by the limit, and the most calls in any 1-s window. Sustained rate =
(calls - limit) / (last - limit-th), from the `limit`-th arrival on. The first `limit` calls
find the limiter's window empty and are granted at once, so how long they take to arrive is
the workers' start (a fresh process's first call costs tens of ms of CPU; 16 of them share 2
cores), never the limiter's pacing; from the `limit`-th call on, the limiter is what paces
them. A perfect limiter (`limit` at once, then `limit` more each window) scores 1.0, and so
does one that spaces calls evenly at the limit. `utilisation_from_first_call` is the same
rate over the whole span, (calls - limit) / (last - first), start-up included.
Targets: utilisation >= 0.98, never more than 10 in a window, none refused.
"""

from __future__ import annotations

from typing import Any

from tests.bench.harness import BIND, instance_ids, report, stack

LIMIT = 10.0
# 1, 4 and 16 pool processes, as (processes per `keybind worker`) x workers: several worker
# processes each with a pool, as in production, so the limiter is shared across hosts' worth
# of processes and not only within one pool.
LAYOUTS = {1: [1], 4: [2, 2], 16: [4, 4, 4, 4]}


def run(processes: int, instances: int) -> dict[str, Any]:
    layout = LAYOUTS.get(processes, [processes])
    with stack(layout=layout, sim_limit=LIMIT, rate_limit=LIMIT) as s:
        job_id = s.submit(instance_ids(instances))
        job = s.wait(job_id, timeout=instances / LIMIT * 3 + 60)
        stats = s.sim.stats(BIND)
        wall = (job.finished_at - job.created_at).total_seconds()
        arrivals = stats["accepted_at"]  # in order
        burst = int(LIMIT)  # what an empty window grants at once
        paced = len(arrivals) - burst
        start = arrivals[burst - 1] - arrivals[0] if paced > 0 else 0.0
        span = arrivals[-1] - arrivals[burst - 1] if paced > 0 else 0.0
        sustained = paced / span if span > 0 else 0.0
        whole = (paced / (span + start) if span + start > 0 else 0.0) / LIMIT
        return {
            "worker_processes": processes,
            "worker_layout": "+".join(str(n) for n in layout),
            "limit_per_s": LIMIT,
            "instances": instances,
            "job_state": job.state,
            "calls_accepted": stats["accepted"],
            "calls_throttled": stats["throttled"],
            "max_calls_in_any_1s_window": stats["max_in_any_second_all"],
            "sustained_calls_per_s": sustained,
            "utilisation": sustained / LIMIT,
            "first_calls_spread_s": start,
            "utilisation_from_first_call": whole,
            "job_wall_s": wall,
        }


def main(quick: bool = False) -> list[dict[str, Any]]:
    instances = 100 if quick else 200
    return [report(f"rate_{n}proc", run(n, instances)) for n in (1, 4, 16)]
