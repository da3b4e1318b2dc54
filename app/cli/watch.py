"""Following a job in the terminal: a rich progress bar while it runs, a summary table at the
end, and the exit code that says how it ended."""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from app.cli.client import ApiClient

# Exit codes of `keybind submit --wait` and `keybind status`: 0 only when every instance
# succeeded; each other outcome has its own code so scripts can branch on it.
EXIT_OK = 0
EXIT_FAILED = 1  # the job ended failed: no instance succeeded
EXIT_USAGE = 2  # bad options, an unreadable instances file, or a request the API refused (4xx)
EXIT_PARTIAL = 3  # some instances succeeded and some failed
EXIT_CANCELLED = 4  # the job was cancelled
EXIT_API = 5  # the API could not be reached, refused the token, or failed (5xx)
EXIT_RUNNING = 6  # `status` without --watch (or `submit` without --wait): not final yet

EXIT_BY_STATE = {
    "succeeded": EXIT_OK,
    "failed": EXIT_FAILED,
    "partial": EXIT_PARTIAL,
    "cancelled": EXIT_CANCELLED,
}
FINAL = frozenset(EXIT_BY_STATE)


def exit_code(job: dict[str, Any]) -> int:
    return EXIT_BY_STATE.get(job["state"], EXIT_RUNNING)


class RateColumn(ProgressColumn):
    """Instances finished per second, as rich measures it over the last half minute."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.1f}/s" if speed else "-/s", style="progress.data.speed")


def _done(job: dict[str, Any]) -> int:
    c = job["counts"]
    return int(c["succeeded"] + c["failed"] + c["cancelled"])


def _describe(job: dict[str, Any]) -> str:
    c = job["counts"]
    return (
        f"{job['state']:<9} [green]ok {c['succeeded']:,}[/] [red]failed {c['failed']:,}[/] "
        f"retrying {c['retrying']:,} cancelled {c['cancelled']:,}"
    )


def follow(
    client: ApiClient, job_id: str, console: Console, *, interval: float = 1.0
) -> dict[str, Any]:
    """Poll the job (with If-None-Match, so unchanged polls cost the API nothing) and draw
    its progress until it is final; returns the final job."""
    job, etag = client.job(job_id)
    assert job is not None
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    with progress:
        task = progress.add_task(_describe(job), total=job["total"], completed=_done(job))
        while job["state"] not in FINAL:
            time.sleep(interval)
            fresh, etag = client.job(job_id, etag)
            if fresh is not None:
                job = fresh
                progress.update(task, completed=_done(job), description=_describe(job))
    return job


def summary(client: ApiClient, job: dict[str, Any], console: Console) -> None:
    """The job's outcome as a table, then its failing error codes with an example each."""
    c = job["counts"]
    table = Table(title=f"job {job['id']}", title_justify="left")
    for name in ("state", "total", "succeeded", "failed", "cancelled", "elapsed", "rate"):
        table.add_column(name, justify="left" if name == "state" else "right")
    elapsed = "-"
    rate = "-"
    if job.get("started_at") and job.get("finished_at"):
        seconds = (
            datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["started_at"])
        ).total_seconds()
        elapsed = f"{seconds:,.1f} s"
        rate = f"{_done(job) / seconds:,.1f}/s" if seconds > 0 else "-"
    table.add_row(
        job["state"],
        f"{job['total']:,}",
        f"{c['succeeded']:,}",
        f"{c['failed']:,}",
        f"{c['cancelled']:,}",
        elapsed,
        rate,
    )
    console.print(table)
    if c["failed"]:
        failed = client.failed_instances(job["id"])
        codes = Counter(i["error_code"] or "unknown" for i in failed)
        example: dict[str, dict[str, Any]] = {}
        for i in failed:
            example.setdefault(i["error_code"] or "unknown", i)
        errors = Table(title="failed instances by error code", title_justify="left")
        errors.add_column("error code")
        errors.add_column("instances", justify="right")
        errors.add_column("example")
        errors.add_column("message")
        for code, n in codes.most_common():
            errors.add_row(
                code, f"{n:,}", example[code]["instance_id"], example[code]["error_message"] or ""
            )
        console.print(errors)
        if len(failed) < c["failed"]:
            console.print(f"(counted over the first {len(failed):,} of {c['failed']:,} failures)")
        console.print(f"all of them: GET /v1/jobs/{job['id']}/instances?state=failed")
