"""Limiter utilisation end to end: N worker processes against the simulator's strict 10/s.

Figures: calls/s sustained at the simulator, the most calls it saw in any 1-s window, and
how many it refused with RequestLimitExceeded. Targets: >= 9.5/s (0.95), never over 10, 0 refused.
"""

from __future__ import annotations

import argparse

from tests.bench.harness import report, stack


def run(processes: int, instances: int, limit: float = 10.0) -> dict[str, object]:
    with stack(workers=processes, concurrency=1, sim_limit=limit, rate_limit=limit) as s:
        ids = [f"ins-r{i:07d}" for i in range(instances)]
        job_id = s.submit(ids)
        job = s.wait(job_id, timeout=instances / limit * 3 + 60)
        stats = s.sim.stats("AssociateInstancesKeyPairs", detail=False)
        wall = (job.finished_at - job.created_at).total_seconds()
        return {
            "worker_processes": processes,
            "instances": instances,
            "job_state": job.state,
            "calls_accepted": stats["accepted"],
            "calls_throttled": stats["throttled"],
            "max_calls_in_any_1s_window": stats["max_in_any_second"],
            "sustained_calls_per_s": stats["sustained_rate"],
            "utilisation": stats["sustained_rate"] / limit,
            "job_wall_s": wall,
            # Conservative: includes the start-up and the last call's round trip.
            "calls_per_s_over_whole_job": stats["accepted"] / wall,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--processes", type=int, nargs="+", default=[4])
    parser.add_argument("--instances", type=int, default=300)
    args = parser.parse_args()
    for n in args.processes:
        report(f"rate_{n}proc", run(n, args.instances))


if __name__ == "__main__":
    main()
