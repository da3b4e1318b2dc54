"""Dashboard pollers in a process of their own, on a lean HTTP/1.1 client.

`python -m tests.bench.pollers URL TOKEN JOB_ID --seconds S [--pollers N] [--every S]
[--etag]` prints one JSON object: each poll's (start, latency ms, status) and the process's
own CPU seconds.

Why not httpx in the benchmark's own process: 100 dashboards are 100 browsers elsewhere, not
100 coroutines sharing one Python event loop with the benchmark's samplers. There, httpx cost
about as much CPU per request as the server did (~1.3 ms), on the same two cores, and its
event loop and garbage collector stalled many polls at once (one 49 ms gen-2 collection was
the run's worst latency). This client writes a prebuilt request and reads the answer by its
Content-Length on a kept-alive connection per poller: its latency is the server's answer
time plus loopback and this loop's scheduling, which is what a dashboard sees.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from urllib.parse import urlsplit


class Poller:
    """One dashboard: one kept-alive connection, a poll every `every` seconds."""

    def __init__(self, host: str, port: int, path: str, token: str, etag: bool) -> None:
        self.host, self.port, self.path, self.etag = host, port, path, etag
        self.head = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
        )
        self.tag: str | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def poll(self) -> int:
        """One GET (with If-None-Match once a tag is known and `etag`); returns the status."""
        assert self.reader is not None and self.writer is not None
        extra = f"If-None-Match: {self.tag}\r\n" if self.etag and self.tag else ""
        self.writer.write(f"{self.head}{extra}\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "etag":
                self.tag = value.strip()
        if length:
            await self.reader.readexactly(length)
        return status

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


async def run(
    url: str, token: str, job_id: str, *, pollers: int, seconds: float, every: float, etag: bool
) -> list[tuple[float, float, int]]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    clients = [Poller(host, port, f"/v1/jobs/{job_id}", token, etag) for _ in range(pollers)]
    # Connections first, as dashboards that are already open: the clock starts after.
    await asyncio.gather(*(c.connect() for c in clients))
    out: list[tuple[float, float, int]] = []
    stop = time.monotonic() + seconds

    async def one(client: Poller, offset: float) -> None:
        await asyncio.sleep(offset)  # spread the pollers over one interval
        while time.monotonic() < stop:
            started = time.perf_counter()
            status = await client.poll()
            out.append((time.monotonic(), (time.perf_counter() - started) * 1000, status))
            await asyncio.sleep(every)

    await asyncio.gather(*(one(c, i * every / pollers) for i, c in enumerate(clients)))
    await asyncio.gather(*(c.close() for c in clients))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("token")
    parser.add_argument("job_id")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--pollers", type=int, default=100)
    parser.add_argument("--every", type=float, default=1.0)
    parser.add_argument("--etag", action="store_true", help="send If-None-Match once known")
    args = parser.parse_args()
    cpu0 = os.times()
    polls = asyncio.run(
        run(
            args.url,
            args.token,
            args.job_id,
            pollers=args.pollers,
            seconds=args.seconds,
            every=args.every,
            etag=args.etag,
        )
    )
    cpu1 = os.times()
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    json.dump({"polls": polls, "cpu_s": cpu}, sys.stdout)


if __name__ == "__main__":
    main()
