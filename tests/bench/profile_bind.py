"""Profile one worker's hot path in-process with pyinstrument: claim, limiter, call, record.

`.venv/bin/python -m tests.bench.profile_bind [--batch-size N] [--calls N]` starts a database
and the simulator (limits raised so nothing waits), runs `bind_targets` directly and prints
where the time goes. Also profiles one dispatcher tick over a 100,000-instance job.
"""

from __future__ import annotations

import argparse
import time

from pyinstrument import Profiler
from sqlalchemy import select

from app.jobs.bind import bind_targets
from app.jobs.dispatch import dispatch
from app.runtime import Runtime
from app.store.models import Target
from tests.bench.harness import instance_ids, stack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    n = args.calls * args.batch_size
    with stack(layout=[], sim_limit=1e6, rate_limit=1e6, beat=False) as s:
        job_id = s.submit(instance_ids(n), kick=False, batch_size=args.batch_size)
        with s.rt.sessions() as session:
            ids = list(session.scalars(select(Target.id).where(Target.job_id == job_id)))
        batches = [ids[i : i + args.batch_size] for i in range(0, n, args.batch_size)]
        bind_targets(s.rt, s.producer, batches.pop())  # warm: connections, imports
        profiler = Profiler(interval=0.0005)
        started = time.perf_counter()
        with profiler:
            for batch in batches:
                bind_targets(s.rt, s.producer, batch)
        per_call = (time.perf_counter() - started) / len(batches)
        print(profiler.output_text(unicode=False, color=False, show_all=False))
        print(f"bind_targets: {per_call * 1000:.2f} ms per call of {args.batch_size}")

        big = s.submit(instance_ids(100_000, "z"), kick=False, batch_size=args.batch_size)
        # The real 10/s for the dispatcher: a tick releases a horizon's worth, not everything.
        rt = Runtime(s.settings.model_copy(update={"rate_limit": 10.0}))
        dispatch(rt, s.producer)  # warm
        profiler = Profiler(interval=0.0005)
        started = time.perf_counter()
        with profiler:
            for _ in range(20):
                dispatch(rt, s.producer)
        print(profiler.output_text(unicode=False, color=False, show_all=False))
        tick = (time.perf_counter() - started) / 20
        rt.close()
        print(f"dispatch tick with a 100k job ({big}): {tick * 1000:.2f} ms")


if __name__ == "__main__":
    main()
