"""Migrations you can preview and undo: plan, backups before each PUT, and rollback.

Each is a row action for the :class:`~batchcfg.runner.Runner`, so it gets the same rate limit,
retries, journal and report as ``apply``. Reads count against the rate limit; the report's
``attempts`` count the PUT's attempts only.

- :func:`plan` reads each row's config and says what the row would change.
- :class:`Modify` reads first, appends the config as it was to a :class:`Backup` (never change
  what could not be saved first), may skip an unchanged row, then PUTs.
- :class:`Rollback` puts backed-up bodies back, unless the config changed since the run.

"Unchanged" means every field the row sets already has that value: fields a row leaves empty are
not compared, because the API page does not say whether the Modify PUT clears them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio
import orjson

from .errors import UsageError
from .report import CHANGED, FAILED, MISSING, SKIPPED, UNCHANGED, Outcome, json_lines, open_lines, write_all
from .runner import Runner, settle
from .schema import changes, check_config_name, check_project_id, writable_body
from .spool import Job

BACKUP = "BATCHCFG.BACKUP"  # a local code of batchcfg's own: the config could not be backed up


def canonical(body: dict[str, Any]) -> bytes:
    """A body as sent: compact JSON, fields in the API's order (how a row's body is serialised)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


async def _read(runner: Runner, job: Job, outcome: Outcome) -> dict[str, Any] | None:
    """The row's config as it is now (writable fields), the read's HTTP status and request id
    noted in ``outcome``, which stays ``cancelled`` until a PUT settles it; or None, with
    ``outcome`` failed (or still cancelled: the run stopped first)."""
    answer = await runner.call(job, "GET")
    if answer is None:
        return None
    if not answer.ok or answer.body is None:
        settle(outcome, answer)
        return None
    outcome.http_status, outcome.request_id = answer.status, answer.request_id
    return writable_body(answer.body)


async def plan(runner: Runner, job: Job) -> Outcome:
    """``unchanged``, ``changed`` (with ``changes``), ``missing``, or ``failed`` to read."""
    outcome = runner.new_outcome(job)
    answer = await runner.call(job, "GET")
    if answer is None:
        return outcome
    settle(outcome, answer)
    if answer.status == 404:
        outcome.status = MISSING
    elif answer.ok and answer.body is not None:
        found = changes(writable_body(answer.body), json.loads(job.body))
        outcome.status, outcome.changes = (CHANGED, "; ".join(found)) if found else (UNCHANGED, "")
        outcome.error_code = outcome.error_message = ""
    return outcome


class Backup:
    """The backup file: one JSON line per config, written and ``fsync``ed before its PUT is sent.

    A record holds ``project_id``, ``config_name``, ``before`` (the writable body as it was),
    ``sent`` and ``sent_sha256`` (the body the row sends), ``row`` and ``time``. A config already
    in the file (a resumed run) is never backed up again: the first record is the state before
    any change.

    Saving is a group commit: one ``fsync`` runs at a time (in a thread, so answers keep coming
    in), and the records that arrive meanwhile share the next one, so a run pays an ``fsync``
    per group of rows, not per row.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
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

    async def save(self, job: Job, before: dict[str, Any], sent: dict[str, Any]) -> None:
        """Returns once the config's record is on disk (at once if it is there already); raises
        OSError when the file cannot be written."""
        key = (job.project_id, job.config_name)
        if key in self._saved:
            return
        record = {"project_id": job.project_id, "config_name": job.config_name, "before": before,
                  "sent": sent, "sent_sha256": job.body_sha256 or hashlib.sha256(job.body).hexdigest(),
                  "row": job.row, "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}
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


class Modify:
    """``apply`` reading first: back the config up (unless ``backup`` is None), skip it when
    ``skip_unchanged`` and the row changes nothing, else PUT."""

    def __init__(self, backup: Backup | None, skip_unchanged: bool) -> None:
        self.backup = backup
        self.skip_unchanged = skip_unchanged

    async def __call__(self, runner: Runner, job: Job) -> Outcome:
        outcome = runner.new_outcome(job)
        before = await _read(runner, job, outcome)
        if before is None:
            if outcome.status == FAILED:
                outcome.error_message = ("could not read the config first, so nothing was changed: "
                                         f"{outcome.error_message}")
            return outcome
        wanted = json.loads(job.body)
        outcome.changes = "; ".join(changes(before, wanted))
        if self.skip_unchanged and not outcome.changes:
            outcome.status, outcome.error_code, outcome.error_message = SKIPPED, "", "unchanged"
            return outcome
        if self.backup is not None:
            try:
                await self.backup.save(job, before, wanted)
            except OSError as exc:
                runner.stop(f"not sent: the backup {self.backup.path} cannot be written")
                outcome.status, outcome.error_code = FAILED, BACKUP
                outcome.error_message = ("could not back the config up, so nothing was changed: "
                                         f"{exc.strerror or exc}")
                return outcome
            outcome.backup = str(self.backup.path)
        return settle(outcome, await runner.call(job, "PUT", outcome=outcome))


class Rollback:
    """Put a backed-up body back (the job's body), unless the config changed since the run sent
    ``expected`` (then ``skipped`` with ``conflict``), or is already as it was."""

    def __init__(self, sent: dict[tuple[str, str], dict[str, Any]], force: bool) -> None:
        self.sent = sent
        self.force = force

    async def __call__(self, runner: Runner, job: Job) -> Outcome:
        outcome = runner.new_outcome(job)
        now = await _read(runner, job, outcome)
        if now is None:
            return outcome
        before = json.loads(job.body)
        if not changes(now, before, every_field=True):
            outcome.status, outcome.error_code, outcome.error_message = SKIPPED, "", "unchanged: already as backed up"
            return outcome
        drift = changes(self.sent[(job.project_id, job.config_name)], now)
        outcome.changes = "; ".join(changes(now, before, every_field=True))
        if drift and not self.force:
            outcome.status, outcome.error_code = SKIPPED, ""
            outcome.error_message = f"conflict: changed since the run ({'; '.join(drift)}); --force to restore"
            return outcome
        return settle(outcome, await runner.call(job, "PUT", outcome=outcome))


def read_backup(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a backup file; a line cut off by a kill is skipped."""
    try:
        for record in json_lines(path):
            if {"project_id", "config_name", "before", "sent"} <= set(record):
                yield record
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the backup ({type(exc).__name__})") from None


def restore_jobs(path: Path) -> tuple[list[Job], dict[tuple[str, str], dict[str, Any]]]:
    """The jobs that put each backed-up config back (the first record of a config wins), and
    what the run had sent to each. Records whose names are not valid are refused."""
    if not path.is_file():
        raise UsageError(f"{path}: no such backup file")
    jobs: list[Job] = []
    sent: dict[tuple[str, str], dict[str, Any]] = {}
    for number, record in enumerate(read_backup(path), start=1):
        key = (str(record["project_id"]), str(record["config_name"]))
        if key in sent:
            continue
        if check_config_name(key[1]) is not None or check_project_id(key[0]) is not None:
            raise UsageError(f"{path}: record {number} names an invalid project or config")
        sent[key] = record["sent"]
        body = canonical(writable_body(record["before"]))
        jobs.append(Job(number, key[0], key[1], body, hashlib.sha256(body).hexdigest()))
    return jobs, sent
