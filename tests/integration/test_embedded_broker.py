"""The embedded (filesystem) broker under concurrent producers: no message is ever read
half-written, none is lost."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from kombu import Connection, Exchange, Queue

from app.broker import embedded as embedded_broker

N_PER_PRODUCER = 500
PRODUCERS = 4


def produce(
    url: str,
    options: dict[str, object],
    exchange: Exchange,
    queue: Queue,
    payload: dict[str, str],
    n: int,
) -> None:
    with Connection(url, transport_options=options) as conn:
        producer = conn.Producer()
        for i in range(N_PER_PRODUCER):
            producer.publish(
                {**payload, "id": f"{n}-{i}"},
                exchange=exchange,
                routing_key="q",
                declare=[queue],
                serializer="json",
            )


def test_concurrent_producers_and_a_fast_consumer_see_every_message_whole(
    tmp_path: Path,
) -> None:
    options = {
        "data_folder_in": str(tmp_path),
        "data_folder_out": str(tmp_path),
        # Without it kombu writes its exchange table to ./control, in whatever directory the
        # test runs from.
        "control_folder": str(tmp_path / "control"),
        "polling_interval": 0.0005,  # poll as hard as possible: the race is in the gap
    }
    url = embedded_broker.broker_url("filesystem://")
    exchange = Exchange("q", type="direct")
    queue = Queue("q", exchange, routing_key="q")
    payload = {"pad": "x" * 20_000}  # big enough that a write is not one syscall's worth

    received: list[str] = []
    with Connection(url, transport_options=options) as conn:
        # Separate processes, as the API, the dispatcher and the workers are.
        ctx = multiprocessing.get_context("fork")
        procs = [
            ctx.Process(target=produce, args=(url, options, exchange, queue, payload, n))
            for n in range(PRODUCERS)
        ]
        for proc in procs:
            proc.start()
        simple = conn.SimpleQueue(queue)
        while len(received) < PRODUCERS * N_PER_PRODUCER:
            message = simple.get(timeout=30)
            assert message.payload["pad"] == payload["pad"]
            received.append(message.payload["id"])
            message.ack()
        for proc in procs:
            proc.join(30)
            assert proc.exitcode == 0
    assert len(set(received)) == PRODUCERS * N_PER_PRODUCER
    assert not list(tmp_path.glob("*.part")), "no half-written message is left behind"
