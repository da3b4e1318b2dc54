"""Run the benchmark suite: `.venv/bin/python -m tests.bench [NAME ...] [--quick]`.

Needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 (as the tests do). Each
benchmark starts its own database, simulator and worker processes, prints its figures as
`name: key = value` lines and writes them to bench/results/NAME.json; a summary of every
figure against its target ends the run and goes to bench/results/summary.json.
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
from collections.abc import Callable
from typing import Any

from tests.bench import (
    bench_api,
    bench_fairness,
    bench_rate,
    bench_rotation,
    bench_worker_cost,
)
from tests.bench.harness import RESULTS

SUITE: dict[str, Callable[[bool], list[dict[str, Any]]]] = {
    "rate": bench_rate.main,
    "rotation": bench_rotation.main,
    "api": bench_api.main,
    "worker_cost": bench_worker_cost.main,
    "fairness": bench_fairness.main,
}

# (result file, figure, comparison, target)
TARGETS = [
    ("rate_1proc", "utilisation", ">=", 0.98),
    ("rate_1proc", "max_calls_in_any_1s_window", "<=", 10),
    ("rate_4proc", "utilisation", ">=", 0.98),
    ("rate_4proc", "max_calls_in_any_1s_window", "<=", 10),
    ("rate_16proc", "utilisation", ">=", 0.98),
    ("rate_16proc", "max_calls_in_any_1s_window", "<=", 10),
    ("rotation_one_per_call", "wall_over_floor", "<=", 1.05),
    ("rotation_coalesced", "wall_over_floor", "<=", 1.2),
    ("api_post", "post_10000_s", "<=", 0.3),
    ("api_post", "post_100000_s", "<=", 2.0),
    ("api_poll", "plain_p99_ms", "<=", 20.0),
    ("api_poll", "etag_p99_ms", "<=", 20.0),
    ("redis_memory", "used_memory_peak_delta_mb", "<=", 50.0),
    ("worker_cost", "bind_over_noop", "<=", 3.0),
    ("fairness_one_per_call", "small_job_wall_max_s", "<=", 2.0),
    ("fairness_coalesced", "small_job_wall_max_s", "<=", 2.0),
]


def summary() -> list[dict[str, Any]]:
    rows = []
    for name, figure, op, target in TARGETS:
        path = RESULTS / f"{name}.json"
        if not path.exists():
            continue
        value = json.loads(path.read_text()).get(figure)
        if value is None:
            continue
        met = value >= target if op == ">=" else value <= target
        rows.append(
            {
                "bench": name,
                "figure": figure,
                "value": value,
                "target": f"{op} {target}",
                "met": met,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help=f"any of {', '.join(SUITE)}; default: all")
    parser.add_argument("--quick", action="store_true", help="smaller jobs: a smoke run")
    args = parser.parse_args()
    unknown = [n for n in args.names if n not in SUITE]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {list(SUITE)}")
    started = time.monotonic()
    for name in args.names or list(SUITE):
        t0 = time.monotonic()
        print(f"== {name}", flush=True)
        try:
            SUITE[name](args.quick)
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            print(f"== {name} FAILED: {type(exc).__name__}: {exc}", flush=True)
        print(f"== {name} took {time.monotonic() - t0:.0f} s", flush=True)
    rows = summary()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"== summary (whole run {time.monotonic() - started:.0f} s)")
    for r in rows:
        value = r["value"]
        shown = f"{value:.3f}" if isinstance(value, float) else value
        flag = "met" if r["met"] else "NOT MET"
        print(f"summary: {r['bench']}.{r['figure']} = {shown} (target {r['target']}) {flag}")


if __name__ == "__main__":
    main()
