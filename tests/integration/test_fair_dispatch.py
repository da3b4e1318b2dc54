"""Fair sharing of one account's limit, as an ordering property of the dispatcher (no workers,
no timing): a job submitted while another fills the horizon is released in the very next tick,
and its first call is the next but one a worker takes from the broker."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from itertools import pairwise

import redis
from sqlalchemy import select

from app.broker import names
from app.broker.names import BULK_PRIORITY
from app.broker.producer import CeleryProducer
from app.jobs.dispatch import dispatch
from app.jobs.schemas import JobCreate
from app.jobs.submit import Submitter, submit_job
from app.runtime import Runtime
from app.store.models import Target

SEP = "\x06\x16"  # kombu's Redis transport: queue name + SEP + priority step


def submit(rt: Runtime, n: int, prefix: str, batch_size: int = 1) -> list[int]:
    request = JobCreate(
        provider="tencent",
        region="ap-guangzhou",
        instance_ids=[f"ins-{prefix}{i:07d}" for i in range(n)],
        key_ids=["skey-3glfot13"],
        batch_size=batch_size,
    )
    job = submit_job(
        sessions=rt.sessions, request=request, submitter=Submitter("t"), max_instances=100_000
    ).job
    with rt.sessions() as s:
        return list(s.scalars(select(Target.id).where(Target.job_id == job.id).order_by(Target.id)))


def in_take_order(client: redis.Redis, key: str) -> list[list[int]]:
    """The target ids of each bind message in a broker list, in the order workers take them
    (kombu pushes on the left and pops on the right)."""
    out = []
    for raw in reversed(client.lrange(key, 0, -1)):
        body = json.loads(base64.b64decode(json.loads(raw)["body"]))
        out.append(body[0][0])
    return out


def test_a_small_job_is_released_at_once_and_goes_ahead_of_the_backlog(
    rt: Runtime, producer: CeleryProducer, redis_client: redis.Redis
) -> None:
    capacity = int(rt.rates.rate("tencent", "default", "AssociateInstancesKeyPairs"))
    capacity *= int(rt.settings.dispatch_horizon_s)
    big = submit(rt, 1000, "b")

    first = dispatch(rt, producer)
    assert sum(len(c) for c in first.released) == capacity  # the horizon, in calls of 1
    assert first.front == [[big[0]]]  # a job's first call goes ahead; the rest is bulk

    small = submit(rt, 1, "s")
    second = dispatch(rt, producer)

    # The first tick after submission releases it, although the big job filled the horizon,
    # and gives the big job (at its share) nothing more.
    assert second.released == [small]
    assert second.front == [small]
    front = in_take_order(redis_client, names.bind_queue(rt.settings))
    bulk = in_take_order(redis_client, f"{names.bind_queue(rt.settings)}{SEP}{BULK_PRIORITY}")
    assert front == [[big[0]], small]
    assert bulk == [[t] for t in big[1:capacity]]


def test_two_big_jobs_share_the_horizon(rt: Runtime, producer: CeleryProducer) -> None:
    a = submit(rt, 500, "a")
    b = submit(rt, 500, "c")
    tick = dispatch(rt, producer)
    released = {t for call in tick.released for t in call}
    capacity = int(rt.rates.rate("tencent", "default", "AssociateInstancesKeyPairs"))
    capacity *= int(rt.settings.dispatch_horizon_s)
    assert len(released & set(a)) == len(released & set(b)) == capacity // 2


def test_the_horizon_counts_calls_not_targets(rt: Runtime, producer: CeleryProducer) -> None:
    ids = submit(rt, 10_000, "d", batch_size=100)
    tick = dispatch(rt, producer)
    capacity = int(rt.rates.rate("tencent", "default", "AssociateInstancesKeyPairs"))
    capacity *= int(rt.settings.dispatch_horizon_s)
    assert len(tick.released) == capacity
    assert all(len(call) == 100 for call in tick.released)
    assert sorted(t for call in tick.released for t in call) == ids[: capacity * 100]


def test_bulk_calls_beyond_the_first_window_wait_in_the_broker_for_their_slot(
    rt: Runtime, producer: CeleryProducer, redis_client: redis.Redis
) -> None:
    """Not in a worker process asleep at the limiter: each bulk message past the account's
    first window carries an ETA, one slot (1/rate) after the one before."""
    rate = rt.rates.rate("tencent", "default", "AssociateInstancesKeyPairs")
    submit(rt, 1000, "e")
    tick = dispatch(rt, producer)
    bulk = f"{names.bind_queue(rt.settings)}{SEP}{BULK_PRIORITY}"
    etas = [
        json.loads(raw)["headers"].get("eta") for raw in reversed(redis_client.lrange(bulk, 0, -1))
    ]
    window = int(rate) - len(tick.front)  # the front call took the first slot
    assert etas[:window] == [None] * window
    paced = [datetime.fromisoformat(e).timestamp() for e in etas[window:]]
    assert len(paced) == len(tick.released) - int(rate)
    gaps = [b - a for a, b in pairwise(paced)]
    assert gaps and all(abs(g - 1 / rate) < 1e-5 for g in gaps), gaps
