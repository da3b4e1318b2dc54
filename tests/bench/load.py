"""What is using the machine's CPUs while a benchmark measures, read from /proc.

A latency figure means little without the load it was taken under: the benchmark's stack
(API, workers, simulator) shares the machine's cores with PostgreSQL, Redis, the benchmark
process itself and whatever else runs there. `CpuWatch` reports cores used (CPU seconds per
second of wall time) by each role, by the whole machine, and the rest as `other`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence

TICK = os.sysconf("SC_CLK_TCK")
REDIS = "redis-server"
POSTGRES = "postgres"


def _processes() -> dict[int, tuple[int, str, float]]:
    """pid -> (parent pid, name, user+system CPU seconds) of every process now. A
    PostgreSQL backend's name is its title ("postgres: user database host ...")."""
    out: dict[int, tuple[int, str, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                raw = f.read()
        except OSError:
            continue  # gone meanwhile
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        if name == POSTGRES:
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    title = f.read().replace(b"\0", b" ").decode(errors="replace")
                name = f"{POSTGRES} {title.strip()}"
            except OSError:
                continue
        out[int(entry)] = (int(fields[1]), name, (int(fields[11]) + int(fields[12])) / TICK)
    return out


def machine_busy_s() -> float:
    """CPU seconds all cores have spent not idle since boot."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return (sum(values) - values[3] - values[4]) / TICK  # minus idle and iowait


def _role_of(
    pid: int, procs: Mapping[int, tuple[int, str, float]], roots: Mapping[int, str], db: str
) -> str:
    name = procs[pid][1]
    if name == REDIS:
        return "redis"
    if name.startswith(POSTGRES):
        # Backends serving another database are someone else's load; the server's own
        # processes (checkpointer, WAL writer, autovacuum) count as PostgreSQL's.
        backend = "127.0.0.1(" in name or "[local]" in name
        return "postgres" if not backend or f" {db} " in name else "other"
    seen = 0
    while pid in procs and seen < 64:  # walk up to a root we started
        if pid in roots:
            return roots[pid]
        pid, seen = procs[pid][0], seen + 1
    return "other"


class CpuWatch:
    """Cores used per role between `start()` and `stop()`. `roles` names the root process
    ids of each role; their descendants count too. PostgreSQL counts its own processes and
    the backends serving `database`. Processes that end inside the window are not seen
    (their time goes to `other`): account for such a child by what it reports."""

    def __init__(self, roles: Mapping[str, Sequence[int]], *, database: str) -> None:
        self.db = database
        self.roots = {pid: role for role, pids in roles.items() for pid in pids}
        self._before: dict[int, tuple[int, str, float]] = {}
        self._busy0 = self._t0 = 0.0
        self.wall_s = 0.0

    def start(self) -> None:
        self._before = _processes()
        self._busy0, self._t0 = machine_busy_s(), time.monotonic()

    def stop(self, *, ended: Mapping[str, float] | None = None) -> dict[str, float]:
        """Cores per role, `machine` and `other`; `ended`: CPU seconds of roles whose
        processes ended inside the window (as they reported them)."""
        after = _processes()
        wall = self.wall_s = time.monotonic() - self._t0
        busy = machine_busy_s() - self._busy0
        used: dict[str, float] = dict.fromkeys(
            [*sorted(set(self.roots.values())), "postgres", "redis"], 0.0
        )
        for pid, (_, _, cpu) in after.items():
            role = _role_of(pid, after, self.roots, self.db)
            if role != "other":
                used[role] += cpu - self._before.get(pid, (0, "", 0.0))[2]
        for role, cpu in (ended or {}).items():
            used[role] = used.get(role, 0.0) + cpu
        cores = {role: cpu / wall for role, cpu in used.items()}
        cores["machine"] = busy / wall
        cores["other"] = max(0.0, cores["machine"] - sum(used.values()) / wall)
        return cores
