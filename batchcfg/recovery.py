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

from collections.abc import Iterable, Mapping
from pathlib import Path

from .errors import UsageError
from .manifest import FAILED_MARKER, Manifest
from .report import CANCELLED, FAILED, INVALID, SKIPPED, SUCCEEDED, read_records, write_table

DONE_STATUSES = (SUCCEEDED, SKIPPED)
TO_FIX_STATUSES = (INVALID, FAILED, CANCELLED)
ERROR_MARKER = "#error"
FAILED_SUFFIXES = (".csv", ".xlsx")

Key = tuple[str, str, str]  # project id, config name, body hash


def done_keys(path: Path, _followed: frozenset[Path] = frozenset()) -> set[Key]:
    """The (project, config name, body hash) of every row an earlier report or journal shows
    done; a journal that says it resumed another (``{"resume": PATH}``) brings that one's too."""
    if not path.is_file():
        raise UsageError(f"--resume {path}: no such file")
    keys = set()
    for record in read_records(path):
        if record.get("status") in DONE_STATUSES and record.get("body_sha256"):
            keys.add((record.get("project_id", ""), record.get("config_name", ""), record["body_sha256"]))
        elif "resume" in record and "status" not in record:
            earlier = Path(record["resume"])
            if earlier.is_file() and earlier.resolve() not in _followed | {path.resolve()}:
                keys |= done_keys(earlier, _followed | {path.resolve()})
    return keys


def backup_of(path: Path | None, _followed: frozenset[Path] = frozenset()) -> Path | None:
    """The backup file an earlier run wrote to, from its report or journal (its ``backup``
    column, or the run that one resumed): a resumed run keeps appending to it."""
    if path is None or not path.is_file() or path.resolve() in _followed:
        return None
    for record in read_records(path):
        if record.get("backup"):
            return Path(record["backup"])
        if "resume" in record and "status" not in record:
            found = backup_of(Path(record["resume"]), _followed | {path.resolve()})
            if found is not None:
                return found
    return None


def check_failed_manifest_path(path: Path) -> Path:
    if path.suffix.lower() not in FAILED_SUFFIXES:
        raise UsageError(f"--failed-manifest {path}: use a .csv or .xlsx file name")
    if not path.parent.is_dir():
        raise UsageError(f"--failed-manifest {path}: no such directory {str(path.parent)!r}")
    return path


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
