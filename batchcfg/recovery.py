"""Picking up after an interrupted run: what earlier runs finished, and the rows left to fix.

``apply --resume PATH`` skips a row when an earlier report or journal shows it ``succeeded`` (or
``skipped``, so chains of resumed runs work) for the same project, config name and request body
hash. Matching on the body, not the row number, means that a row edited since is sent again and a
row moved in the file is still recognised.

``--failed-manifest PATH`` writes the invalid, failed and cancelled rows back out in the input's
own columns, plus ``#status`` and ``#error``, ready to fix and feed back: the loader ignores
``#`` columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from .errors import UsageError
from .manifest import FAILED_MARKER, Manifest
from .report import CANCELLED, FAILED, INVALID, SKIPPED, SUCCEEDED, read_records, write_table

DONE_STATUSES = (SUCCEEDED, SKIPPED)
TO_FIX_STATUSES = (INVALID, FAILED, CANCELLED)
ERROR_MARKER = "#error"
FAILED_SUFFIXES = (".csv", ".xlsx")  # what --failed-manifest writes

Key = tuple[str, str, str]  # project id, config name, body hash


def _chain(path: Path) -> Iterator[dict[str, str]]:
    """The records of an earlier report or journal, then those of the runs it resumed: a
    resuming run's journal begins with ``{"resume": PATH}``."""
    followed: set[Path] = set()
    next_path: Path | None = path
    while next_path is not None and next_path.is_file() and next_path.resolve() not in followed:
        followed.add(next_path.resolve())
        current, next_path = next_path, None
        for record in read_records(current):
            if "resume" in record and "status" not in record:
                next_path = Path(record["resume"])
            else:
                yield record


def done_keys(path: Path) -> set[Key]:
    """The (project, config name, body hash) of every row an earlier report or journal (and the
    runs it resumed) shows done."""
    if not path.is_file():
        raise UsageError(f"--resume {path}: no such file")
    return {(record.get("project_id", ""), record.get("config_name", ""), record["body_sha256"])
            for record in _chain(path)
            if record.get("status") in DONE_STATUSES and record.get("body_sha256")}


def backup_of(path: Path | None) -> Path | None:
    """The backup file an earlier run (or a run it resumed) wrote to, from its ``backup``
    column: a resumed run keeps appending to it."""
    if path is None:
        return None
    return next((Path(record["backup"]) for record in _chain(path) if record.get("backup")), None)


def write_failed_manifest(manifest: Manifest, to_fix: Mapping[int, tuple[str, str]], path: Path) -> int:
    """Write the rows in ``to_fix`` (row -> status, error) in the input's own columns plus
    ``#status`` and ``#error``; returns how many were written. The manifest is read again rather
    than every row's cells kept in memory."""
    keep = [i for i, name in enumerate(manifest.columns) if name not in (FAILED_MARKER, ERROR_MARKER)]
    header = [manifest.header[i] for i in keep] + [FAILED_MARKER, ERROR_MARKER]

    def rows() -> Iterable[list[str]]:
        for row in manifest.rows():
            if row.number in to_fix:
                yield [row.values[i] for i in keep] + list(to_fix[row.number])

    write_table(path, header, rows())
    return len(to_fix)
