"""Reading an instances file: one ID per line, or CSV with a header naming an ID column."""

from __future__ import annotations

import csv
import io
from pathlib import Path

# Header names (lower-cased, without '_', '-' or spaces) taken as the instance ID column.
ID_COLUMNS = ("instanceid", "instance", "id", "instanceids")


class FleetFileError(Exception):
    """The file cannot be read as a list of instance IDs; the message says why."""


def _normal(name: str) -> str:
    return "".join(c for c in name.lower() if c.isalnum())


def read_instance_ids(path: Path) -> list[str]:
    """The IDs in `path`, in file order. Blank lines and lines starting with '#' are skipped.
    A first line with a comma is a CSV header and must name an ID column."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise FleetFileError(f"{path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise FleetFileError(f"{path}: not UTF-8 text") from exc
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise FleetFileError(f"{path}: no instance IDs in it")
    if "," in lines[0] or path.suffix.lower() == ".csv":
        return _from_csv(path, "\n".join(lines))
    return [ln.strip() for ln in lines]


def _from_csv(path: Path, text: str) -> list[str]:
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    names = [_normal(h) for h in header]
    column = next((names.index(c) for c in ID_COLUMNS if c in names), None)
    if column is None:
        raise FleetFileError(
            f"{path}: the CSV header {header} has no instance ID column "
            "(name one instance_id, InstanceId, instance or id)"
        )
    ids: list[str] = []
    for row_no, row in enumerate(reader, start=2):
        if column >= len(row) or not row[column].strip():
            raise FleetFileError(f"{path}: row {row_no} has no value in column {header[column]!r}")
        ids.append(row[column].strip())
    if not ids:
        raise FleetFileError(f"{path}: the CSV has a header but no rows")
    return ids
