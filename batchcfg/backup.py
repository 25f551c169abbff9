"""The backup file: each config as it was, on disk before its PUT is sent; read back for rollback.

One JSON line per config: ``project_id``, ``config_name``, ``before`` (the writable body as it
was), ``sent`` and ``sent_sha256`` (the body the row sends), ``row`` and ``time``. A config the
run created has ``before: null``, and ``created``: the config as the server showed it right after
the POST succeeded (``null`` when it could not be read back). Its record is written only once the
server said it was created, and a rollback deletes it only while it is exactly that. A config
already in the file (a resumed run) is never backed up again: the first record is the state
before any change. A row read back after its PUT (the canary, ``--verify``) adds a line with
``after``: the config as the server showed it then, so that rollback can tell a change made since
the run from a value the server keeps otherwise than sent. The file is locked while a run writes
it: no two processes ever do.
"""

from __future__ import annotations

import contextlib
import fcntl
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
from .journal import lock_holder
from .merge import sendable, writable_body
from .model import Job
from .schema import check_config_name, check_project_id, encode_body

RECORD_KEYS = frozenset({"project_id", "config_name", "before", "sent"})  # a backup record (not an after line)


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
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # for the run's life: no second writer
        except BlockingIOError:
            self._handle.close()
            holder = lock_holder(path)
            raise UsageError(f"{path} is being written by another batchcfg run that is still going"
                             f"{f' (process {holder})' if holder else ''}: a backup has one writer") from None
        self._flushing: anyio.Event | None = None  # set when the group being written and synced is on disk
        self._pending: list[bytes] = []
        self._queued = 0  # records given to save()
        self._synced = 0  # records of those on disk
        self._broken: OSError | None = None  # why the file could not be written: no save succeeds after

    def __repr__(self) -> str:
        return f"Backup({str(self.path)!r}, earlier={len(self._saved)}, this_run={self._synced})"

    async def save(self, job: Job, before: dict[str, Any] | None, sent: dict[str, Any], *,
                   created: dict[str, Any] | None = None, sent_sha256: str = "") -> None:
        """Returns once the config's record is on disk (at once if it is there already); raises
        OSError when the file cannot be written. ``before`` is None for a config the run created,
        and ``created`` then what the server showed of it right after; ``sent_sha256``, when
        known, is the hash of ``sent`` as encoded."""
        key = (job.project_id, job.config_name)
        if key in self._saved:
            return
        record: dict[str, Any] = {"project_id": job.project_id, "config_name": job.config_name, "before": before}
        if before is None:
            record["created"] = created
        record.update({"sent": sent, "sent_sha256": sent_sha256 or hashlib.sha256(encode_body(sent)).hexdigest(),
                       "row": job.row, "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds")})
        self._pending.append(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
        number = self._queued
        self._queued += 1
        while self._synced <= number:  # not on disk yet: write the next group, or wait for the one being written
            if self._broken is not None:
                raise self._broken  # the group this record was in, or an earlier one, was lost
            if self._flushing is None:
                await self._flush()
            else:
                await self._flushing.wait()
        if self._broken is not None and self._synced <= number:
            raise self._broken

    async def _flush(self) -> None:
        """Write and sync the records waiting (one group): one task at a time does it, the others
        wait for it (a group commit: an fsync per group, in a thread, so that answers keep coming)."""
        done = self._flushing = anyio.Event()
        lines, self._pending = self._pending, []
        start = self._handle.tell()
        try:
            write_all(self._handle, b"".join(lines))
            await anyio.to_thread.run_sync(os.fsync, self._handle.fileno())
        except OSError as exc:  # these lines are lost: so is every later save
            self._broken = exc
            with contextlib.suppress(OSError):
                os.ftruncate(self._handle.fileno(), start)  # no half line for a resume to meet
        else:
            self._synced += len(lines)
        finally:
            self._flushing = None
            done.set()

    def note_after(self, job: Job, after: dict[str, Any]) -> None:
        """What the server showed of a config right after this run changed it. Not waited for:
        without it, a rollback only says less precisely why a config is in conflict."""
        record = {"project_id": job.project_id, "config_name": job.config_name, "after": after,
                  "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds")}
        if self._broken is None:
            with contextlib.suppress(OSError):
                write_all(self._handle, orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))

    def close(self) -> None:
        self._handle.close()
        if self.path.exists() and not self.path.stat().st_size:
            self.path.unlink()  # nothing was changed, so nothing to keep

    def __enter__(self) -> Backup:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_backup(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a backup file (not its ``after`` lines); a line cut off by a kill is skipped."""
    return (record for record in _lines(path) if _is_record(record))


def _is_record(record: dict[str, Any]) -> bool:
    return RECORD_KEYS <= record.keys()


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    try:
        yield from json_lines(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the backup ({type(exc).__name__})") from None


Key = tuple[str, str]  # project id, config name


def restore_jobs(paths: Sequence[Path]) -> tuple[list[Job], dict[Key, dict[str, Any]], dict[Key, dict[str, Any]]]:
    """The jobs that put each backed-up config back, what the runs had sent to each, and what the
    server showed of each right after (where a run read it back).

    Several backups are rolled back newest first (by their records' times): a config in more
    than one goes back to its state before the oldest run that changed it, and is checked against
    what the newest sent. A job's body is ``{"before": ...}``; for a config a run created,
    ``before`` is null and ``created`` is what the server showed after the run created it (a later
    run's changes to it then make it differ: roll that run's backup back first). Within one file
    the first record of a config wins. Records whose names are not valid are refused, and so is a
    file none of whose lines is a record (a report given by mistake); an empty one has nothing."""
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise UsageError(f"{', '.join(missing)}: no such backup file")
    before: dict[tuple[str, str], Any] = {}
    created: dict[tuple[str, str], Any] = {}
    sent: dict[tuple[str, str], dict[str, Any]] = {}
    after: dict[Key, dict[str, Any]] = {}
    for path in sorted(paths, key=_newest_record, reverse=True):
        seen: set[tuple[str, str]] = set()
        afters: dict[Key, dict[str, Any]] = {}
        for number, record in enumerate(_lines(path), start=1):
            if "after" in record and isinstance(record["after"], dict) and "project_id" in record:
                afters[(str(record["project_id"]), str(record.get("config_name")))] = record["after"]  # the last
                continue
            if not _is_record(record):
                continue
            key = (str(record["project_id"]), str(record["config_name"]))
            if check_config_name(key[1]) is not None or check_project_id(key[0]) is not None:
                raise UsageError(f"{path}: record {number} names an invalid project or config")
            if key in seen:
                continue
            seen.add(key)
            sent.setdefault(key, record["sent"])  # the newest run's
            before[key] = record["before"]        # the oldest run's, in the end
            created[key] = record.get("created")
        if not seen and not afters and path.stat().st_size:
            raise UsageError(f"{path}: not a batchcfg backup (none of its lines is a backup record)")
        for key, state in afters.items():
            if key in seen:
                after.setdefault(key, state)  # the newest run's
    jobs = []
    for number, (key, state) in enumerate(before.items(), start=1):
        restore = {"before": None, "created": created[key]} if state is None else \
            {"before": sendable(writable_body(state))}
        body = orjson.dumps(restore)
        jobs.append(Job(number, key[0], key[1], body, hashlib.sha256(body).hexdigest()))
    return jobs, sent, after


def _newest_record(path: Path) -> tuple[str, int]:
    """When a backup was last written to: its newest record's time (ISO text sorts as time), then
    the file's modification time (for records of the same millisecond)."""
    return max((str(record.get("time", "")) for record in read_backup(path)), default=""), path.stat().st_mtime_ns
