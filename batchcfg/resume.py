"""Picking up after an interrupted run: ``apply --resume PATH``.

A row is not sent again when an earlier report or journal shows it ``succeeded`` (or ``skipped``,
so that chains of resumed runs work) for the same project, config name and request body hash.
Matching on the body, not the row number, means that a row edited since is sent again and a row
moved in the file is still recognised. A resuming run's journal begins with ``{"resume": PATH}``,
and the chain is followed from there.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from .errors import UsageError
from .files import read_records
from .model import DONE_STATUSES

Key = tuple[str, str, str]  # project id, config name, body hash


def _chain(path: Path) -> Iterator[dict[str, str]]:
    """The records of an earlier report or journal, then those of the runs it resumed."""
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
