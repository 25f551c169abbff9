"""Picking up after an interrupted run: ``apply --resume PATH``.

``PATH`` is an earlier report or journal; a resuming run's journal begins with ``{"resume": PATH}``,
so the runs form a chain, followed from the newest to the first. A :class:`Chain` is checked
before it is trusted:

- **It is this manifest's.** Its records must name the same configs at the same row numbers as
  the manifest (or saved plan) being run: a report of another manifest is refused (exit 2), so
  that no run adds its rows to another chain's backup. Editing a row's other cells to fix it
  stays allowed.
- **It is resumed once at a time.** The chain's files are locked for the run's life: a second
  resume of the same chain, started while one runs, is refused, naming the process that holds it.
- **It has one backup.** A resumed run appends to the chain's own backup (from its records'
  ``backup`` column) and to no other.

A row is then not sent again when the chain shows it ``succeeded``, ``created`` or ``skipped`` for
the same project, config name and request body hash: a row edited since is sent again.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from .errors import UsageError
from .files import read_records
from .journal import in_use, lock_holder
from .model import DONE_STATUSES
from .text import printable

Key = tuple[str, str, str]  # project id, config name, body hash
MISMATCHES_SHOWN = 3


class Chain:
    """An earlier run and the runs it resumed, locked for this run. Use as a context manager.
    ``own_journal`` is this run's journal when it continues the one it resumes (it is locked as
    a journal already)."""

    def __init__(self, path: Path, own_journal: Path | None = None) -> None:
        if not path.is_file():
            raise UsageError(f"--resume {path}: no such file")
        self.path = path
        self.done: set[Key] = set()
        self.rows: dict[int, str] = {}  # row -> config name, as the chain's records name them
        self.backup: Path | None = None
        self._locks: list[IO[bytes]] = []
        try:
            followed: set[Path] = set()
            link: Path | None = path
            while link is not None and link.is_file() and link.resolve() not in followed:
                followed.add(link.resolve())
                if own_journal is None or link.resolve() != own_journal.resolve():
                    self._lock(link)
                link = self._read(link)
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"Chain({str(self.path)!r}, done={len(self.done)}, backup={str(self.backup)!r})"

    def __enter__(self) -> Chain:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        for handle in self._locks:
            handle.close()  # and with it the lock
        self._locks.clear()

    def _lock(self, link: Path) -> None:
        handle = link.open("rb")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise UsageError(in_use(link, lock_holder(link))) from None
        self._locks.append(handle)

    def _read(self, link: Path) -> Path | None:
        """Take in one file's records; returns the file of the run it resumed, if it says so."""
        resumed = None
        for record in read_records(link):
            if "status" not in record:  # a journal's first line
                resumed = Path(record["resume"]) if record.get("resume") else resumed
                continue
            project, name, row = record.get("project_id", ""), record.get("config_name", ""), record.get("row", "")
            if name and row.isdigit():
                self.rows.setdefault(int(row), name)
            if record.get("status") in DONE_STATUSES and record.get("body_sha256"):
                self.done.add((project, name, record["body_sha256"]))
            if self.backup is None and record.get("backup"):
                self.backup = Path(record["backup"])
        return resumed

    def check_rows(self, rows: Iterable[tuple[int, str]], what: str) -> None:
        """Refuse to resume when the chain's records name other configs than ``rows`` (row
        number, config name) of ``what`` (the manifest or saved plan) do."""
        left = dict(self.rows)
        wrong: list[str] = []
        for row, name in rows:
            known = left.pop(row, None)
            if known is not None and printable(known) != printable(name):  # a report writes names printable
                wrong.append(f"row {row} is {known!r} there and {name!r} here")
        wrong.extend(f"row {row} ({name!r}) is not in {what}" for row, name in sorted(left.items()))
        if wrong:
            shown = "; ".join(wrong[:MISMATCHES_SHOWN]) + (f"; and {len(wrong) - MISMATCHES_SHOWN} more"
                                                           if len(wrong) > MISMATCHES_SHOWN else "")
            raise UsageError(f"--resume {self.path}: it is the report of another manifest ({shown}); resume only "
                             f"with the {what} it came from (fix a row's other cells, never its name or place); "
                             "without --resume, rows already done are unchanged and not sent again")

