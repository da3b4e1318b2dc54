"""A job's status for pollers: one indexed read, and a body rendered once per version.

Dashboards poll `GET /v1/jobs/{id}` many times a second. Each poll reads the job's row and
its callback attempts in one statement (on an autocommit connection, so no BEGIN/ROLLBACK
round trips); the JSON body is rendered only when this process has not yet rendered the
job's current version. Every change to what the body shows moves the version in the same
statement or transaction (store/counters.counts_update, store/callbacks.record_callback_attempt),
so a body kept under the version just read is the job as it is now, never an older one.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Container
from dataclasses import dataclass

from pydantic import TypeAdapter
from sqlalchemy import Connection

from app.jobs.schemas import JobView
from app.jobs.views import JobFields, job_view
from app.store import jobs as store

# FastAPI writes a `response_model=JobView` answer with this adapter's dump_json; so do we.
_JOB_JSON = TypeAdapter(JobView)


def render(view: JobView) -> bytes:
    """The JSON body of `GET /v1/jobs/{id}`, byte for byte as the route's response model."""
    return _JOB_JSON.dump_json(view)


class Bodies:
    """The last rendered body of up to `size` jobs; the least recently polled go first.

    Keyed by job, holding one version each: an older version is never served (a lookup must
    name the version it just read) and never replaces a newer one."""

    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._items: OrderedDict[str, tuple[int, bytes]] = OrderedDict()
        # Polls run on the threadpool: the lookups and the eviction must not interleave.
        self._lock = threading.Lock()

    def get(self, job_id: str, version: int) -> bytes | None:
        with self._lock:
            held = self._items.get(job_id)
            if held is None or held[0] != version:
                return None
            self._items.move_to_end(job_id)
            return held[1]

    def put(self, job_id: str, version: int, body: bytes) -> None:
        with self._lock:
            held = self._items.get(job_id)
            if held is not None and held[0] > version:
                return  # a slower poll read an older version; keep the newer body
            self._items[job_id] = (version, body)
            self._items.move_to_end(job_id)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True, slots=True)
class Status:
    version: int
    body: bytes | None  # None: the caller holds this version already (answer 304)


def read_status(
    *,
    conn: Connection,
    bodies: Bodies,
    job_id: str,
    tenant: str | None,
    rate: Callable[[JobFields], float],
    held: Container[str] = (),
) -> Status | None:
    """The job's version and body, if it exists and `tenant` may see it. No body when the
    version is in `held` (the versions the caller's ETags name, as they spell them). `rate`:
    the job's instances/s, which its ETA divides by."""
    found = store.job_status(conn, job_id, tenant)
    if found is None:
        return None
    version: int = found.job.version
    if str(version) in held:
        return Status(version, None)
    body = bodies.get(job_id, version)
    if body is None:
        body = render(job_view(found.job, rate=rate(found.job), callbacks=found.callbacks))
        bodies.put(job_id, version, body)
    return Status(version, body)
