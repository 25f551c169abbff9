"""The backup file: each config as it was, on disk before its PUT is sent; read back for rollback.

One JSON line per config: ``project_id``, ``config_name``, ``before`` (the writable body as it
was; ``null`` for a config the run created: it did not exist), ``sent`` and ``sent_sha256`` (the
body the row sends), ``row`` and ``time``. A config already in the file (a resumed run) is never
backed up again: the first record is the state before any change.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio
import orjson

from .errors import UsageError
from .files import json_lines, open_lines, write_all
from .merge import sendable, writable_body
from .model import Job
from .schema import check_config_name, check_project_id, encode_body


class Backup:
    """The backup file being written: each record written and ``fsync``-ed before its PUT is sent.

    Saving is a group commit: one ``fsync`` runs at a time (in a thread, so answers keep coming
    in), and the records that arrive meanwhile share the next one, so a run pays an ``fsync``
    per group of rows, not per row.
    """

    def __init__(self, path: Path, *, new: bool = False) -> None:
        """The backup at ``path``, continued; with ``new``, created here (exclusively: a file that
        exists, another run's, is a :class:`UsageError`)."""
        self.path = path
        if new:
            try:
                path.open("xb").close()
            except FileExistsError:
                raise UsageError(f"{path} exists: it is another run's backup, and a backup is never written "
                                 "over or added to by another run; choose another --backup") from None
        # The configs an earlier run (that this one resumes) backed up. This run's own need no
        # entry: a run sends each config once (a repeated name is an invalid row).
        self._saved = {(r["project_id"], r["config_name"]) for r in read_backup(path)} if path.exists() else set()
        self._handle = open_lines(path)
        self._lock = anyio.Lock()  # held by the task writing and syncing a group
        self._pending: list[bytes] = []
        self._queued = 0  # records given to save()
        self._synced = 0  # records of those on disk
        self._broken: OSError | None = None  # why the file could not be written: no save succeeds after

    def __repr__(self) -> str:
        return f"Backup({str(self.path)!r}, earlier={len(self._saved)}, this_run={self._synced})"

    async def save(self, job: Job, before: dict[str, Any] | None, sent: dict[str, Any]) -> None:
        """Returns once the config's record is on disk (at once if it is there already); raises
        OSError when the file cannot be written. ``before`` is None for a config to be created."""
        key = (job.project_id, job.config_name)
        if key in self._saved:
            return
        record = {"project_id": job.project_id, "config_name": job.config_name, "before": before,
                  "sent": sent, "sent_sha256": hashlib.sha256(encode_body(sent)).hexdigest(),
                  "row": job.row, "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds")}
        self._pending.append(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
        number = self._queued
        self._queued += 1
        async with self._lock:
            if self._broken is not None:
                raise self._broken  # the group this record was in, or an earlier one, was lost
            if self._synced > number:
                return  # an earlier holder's group took this record
            lines, self._pending = self._pending, []
            start = self._handle.tell()
            try:
                write_all(self._handle, b"".join(lines))
                await anyio.to_thread.run_sync(os.fsync, self._handle.fileno())
            except OSError as exc:  # these lines are lost: so is every later save
                self._broken = exc
                with contextlib.suppress(OSError):
                    os.ftruncate(self._handle.fileno(), start)  # no half line for a resume to meet
                raise
            self._synced += len(lines)

    def close(self) -> None:
        self._handle.close()
        if self.path.exists() and not self.path.stat().st_size:
            self.path.unlink()  # nothing was changed, so nothing to keep

    def __enter__(self) -> Backup:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_backup(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a backup file; a line cut off by a kill is skipped."""
    try:
        for record in json_lines(path):
            if {"project_id", "config_name", "before", "sent"} <= set(record):
                yield record
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the backup ({type(exc).__name__})") from None


def restore_jobs(paths: Sequence[Path]) -> tuple[list[Job], dict[tuple[str, str], dict[str, Any]]]:
    """The jobs that put each backed-up config back, and what the runs had sent to each.

    Several backups are rolled back newest first (by their records' times): a config in more
    than one goes back to its state before the oldest run that changed it (a config a run created
    is deleted: its body is ``null``), and is checked against what the newest sent. Within one
    file the first record of a config wins. Records whose names are not valid are refused."""
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise UsageError(f"{', '.join(missing)}: no such backup file")
    before: dict[tuple[str, str], Any] = {}
    sent: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(paths, key=_newest_record, reverse=True):
        seen: set[tuple[str, str]] = set()
        for number, record in enumerate(read_backup(path), start=1):
            key = (str(record["project_id"]), str(record["config_name"]))
            if check_config_name(key[1]) is not None or check_project_id(key[0]) is not None:
                raise UsageError(f"{path}: record {number} names an invalid project or config")
            if key in seen:
                continue
            seen.add(key)
            sent.setdefault(key, record["sent"])  # the newest run's
            before[key] = record["before"]        # the oldest run's, in the end
    jobs = []
    for number, (key, state) in enumerate(before.items(), start=1):
        body = b"null" if state is None else encode_body(sendable(writable_body(state)))
        jobs.append(Job(number, key[0], key[1], body, hashlib.sha256(body).hexdigest()))
    return jobs, sent


def _newest_record(path: Path) -> tuple[str, int]:
    """When a backup was last written to: its newest record's time (ISO text sorts as time), then
    the file's modification time (for records of the same millisecond)."""
    return max((str(record.get("time", "")) for record in read_backup(path)), default=""), path.stat().st_mtime_ns
