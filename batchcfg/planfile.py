"""Saved plans: ``plan --out FILE`` writes what it planned, ``apply FILE`` sends exactly that.

A saved plan is JSON lines (``FILE`` ends in ``.jsonl``, or ``.json``: the same content): a header,
then one line per row of the plan, in row order.

- The header: ``{"batchcfg_plan": 2, "rows": N, "sha256": ..., "counts": {...}, "headline": {...},
  "manifest": ..., "replace": ..., "time": ...}``; ``sha256`` is of the bytes of the N lines that
  follow it.
- A row: ``row``, ``project_id``, ``config_name``, ``status`` (as ``plan`` reported it), ``changes``
  (the structured changes: ``field``, ``label``, ``kind``, ``before``, ``after``), and for a row
  to send (``changed``, ``create``) ``before`` (the config as planned against, values as they are
  sent; ``null`` for one to create) and ``send`` (the whole body the PUT or POST sends). A row not
  to send (``unchanged``, ``missing``, ``invalid``, ``failed``, ``cancelled``) has its
  ``error_code`` and ``error_message``.

``apply`` checks the whole file before it sends anything, and refuses it (exit 2, naming the
line) when a line does not parse, is not a planned row, has a field of the wrong type, has a body
that breaks the API's rules, or when the count or the checksum does not match: a cut-off or
damaged file is never applied in part. The checksum detects damage, not deliberate edits (whoever
edits a plan can compute it again): a plan is sent exactly as written. Each row is refused
(``conflict``) when its config changed since it was planned; a row the plan holds as missing,
invalid, failed or cancelled is reported so, and the exit code is 1.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import orjson

from .change import KINDS, Change
from .errors import UsageError
from .files import atomic_write
from .merge import check_details, sendable
from .model import (CANCELLED, CHANGED, CREATE, FAILED, INVALID, MISSING, SKIPPED, UNCHANGED, Job, Outcome)
from .schema import BODY_FIELDS, check_body, check_config_name, check_project_id, describe, encode_body

MARKER = "batchcfg_plan"
VERSION = 2
PLAN_SUFFIXES = (".jsonl", ".json")
MAX_PLAN_BYTES = 1024 * 2**20  # a plan of a million rows of a few hundred bytes fits many times
MAX_LINE_BYTES = 4 * 2**20     # a row: two bodies (the gateway takes at most 12 MB a body) and their changes
TO_SEND = (CHANGED, CREATE)
NOT_SENT = (UNCHANGED, MISSING, INVALID, FAILED, CANCELLED)


def is_plan(path: Path) -> bool:
    """Whether ``path`` is a saved plan (a ``.jsonl`` or ``.json`` file whose first line says so)."""
    if path.suffix.lower() not in PLAN_SUFFIXES or not path.is_file():
        return False
    with path.open("rb") as handle:
        try:
            first = orjson.loads(handle.readline(MAX_LINE_BYTES) or b"null")
        except orjson.JSONDecodeError:
            return False
    return isinstance(first, dict) and MARKER in first


class PlanWriter:
    """The saved plan being made: rows kept on disk as they end, written whole (header first,
    rows in row order) by :meth:`finish`. Use as a context manager."""

    def __init__(self, path: Path, *, overwrite: bool = False, **about: Any) -> None:
        if path.suffix.lower() not in PLAN_SUFFIXES:
            raise UsageError(f"--out {path}: a saved plan is a .jsonl (or .json) file")
        if path.exists() and not overwrite:
            raise UsageError(f"{path} exists (an earlier plan?): choose another --out, or --overwrite")
        if not path.parent.is_dir():
            raise UsageError(f"--out {path}: no such directory {str(path.parent)!r}")
        self.path = path
        self.about = about
        self._staged: dict[int, tuple[dict[str, Any] | None, dict[str, Any]]] = {}
        self._lines: IO[bytes] = tempfile.TemporaryFile(prefix="batchcfg-plan-")
        self._rows = array("q")
        self._offsets = array("q")

    def __repr__(self) -> str:
        return f"PlanWriter({str(self.path)!r}, rows={len(self._rows)})"

    def stage(self, row: int, before: dict[str, Any] | None, send: dict[str, Any]) -> None:
        """The config as read and the body to send of a row that would change (until its
        outcome is added)."""
        self._staged[row] = (before, send)

    def add(self, outcome: Outcome) -> None:
        """A row of the plan, with what was staged for it."""
        record: dict[str, Any] = {"row": outcome.row, "project_id": outcome.project_id,
                                  "config_name": outcome.config_name, "status": outcome.status,
                                  "changes": [change.as_json() for change in outcome.changes]}
        staged = self._staged.pop(outcome.row, None)
        if staged is not None and outcome.status in TO_SEND:
            before, send = staged
            record["before"] = sendable(before) if before is not None else None  # as sent: a diff shows changes only
            record["send"] = send
        else:
            record["error_code"], record["error_message"] = outcome.error_code, outcome.error_message
        self._rows.append(outcome.row)
        self._offsets.append(self._lines.tell())
        self._lines.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))

    def finish(self, counts: Mapping[str, int], headline: Mapping[str, int]) -> None:
        """Write the plan (atomically): its header, then its rows in row order."""
        import numpy as np

        order = np.argsort(np.frombuffer(self._rows, dtype=np.int64), kind="stable")
        digest = hashlib.sha256()
        for line in self._lines_in_order(order):  # the checksum first, for the header
            digest.update(line)
        header = {MARKER: VERSION, "rows": len(order), "sha256": digest.hexdigest(), "counts": dict(counts),
                  "headline": dict(headline), **self.about, "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        with atomic_write(self.path, "wb") as out:
            out.write(orjson.dumps(header, option=orjson.OPT_APPEND_NEWLINE))
            out.writelines(self._lines_in_order(order))

    def _lines_in_order(self, order: Any) -> Iterator[bytes]:
        for index in order:
            self._lines.seek(self._offsets[int(index)])
            yield self._lines.readline()

    def close(self) -> None:
        self._lines.close()

    def __enter__(self) -> PlanWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@dataclass(frozen=True)
class PlannedRow:
    """One row of a saved plan, as a job carries it."""

    status: str
    before: dict[str, Any] | None = None
    send: dict[str, Any] | None = None
    error_code: str = ""
    error_message: str = ""

    @classmethod
    def decode(cls, body: bytes) -> PlannedRow:
        record = orjson.loads(body)
        return cls(record["status"], record.get("before"), record.get("send"), record.get("error_code", ""),
                   record.get("error_message", ""))

    def outcome(self, job: Job) -> Outcome:
        """The record of a row the plan does not send: as planned (``unchanged`` is ``skipped``)."""
        if self.status == UNCHANGED:
            return Outcome.of(job, SKIPPED, error_message="unchanged when planned")
        return Outcome.of(job, self.status, error_code=self.error_code,
                          error_message=f"in the saved plan: {self.error_message}".rstrip(": "))


class Plan:
    """A saved plan, checked whole and copied to a private file, so that what is sent is what
    was checked. Use as a context manager; :meth:`jobs` gives its rows in order."""

    def __init__(self, path: Path, *, max_rows: int) -> None:
        self.path = path
        self.header: dict[str, Any] = {}
        self.rows = 0
        self.projects: set[str] = set()
        self._copy: IO[bytes] = tempfile.TemporaryFile(prefix="batchcfg-plan-")
        try:
            self._check(max_rows)
        except BaseException:
            self._copy.close()
            raise

    def __repr__(self) -> str:
        return f"Plan({str(self.path)!r}, rows={self.rows})"

    def __enter__(self) -> Plan:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._copy.close()

    def _check(self, max_rows: int) -> None:
        try:
            size = os.stat(self.path).st_size
            if size > MAX_PLAN_BYTES:
                raise UsageError(f"{self.path}: {size // 2**20} MiB, more than a saved plan may be "
                                 f"({MAX_PLAN_BYTES // 2**20} MiB)")
            with self.path.open("rb") as handle:
                self.header = _header(self.path, _line(self.path, handle, 1))
                digest = hashlib.sha256()
                seen: set[int] = set()
                names: set[tuple[str, str]] = set()
                number = 1
                while line := _line(self.path, handle, number + 1):
                    number += 1
                    digest.update(line)
                    if number - 1 > max_rows:
                        raise UsageError(f"{self.path}: more than {max_rows} rows (--max-rows)")
                    row, key = _check_row(self.path, number, line)
                    if row in seen:
                        raise UsageError(f"{self.path}: line {number}: row {row} is in the plan twice")
                    seen.add(row)
                    if key is not None:
                        if key in names:
                            raise UsageError(f"{self.path}: line {number}: row {row} sends {key[1]!r}, which "
                                             "another row of the plan sends too")
                        names.add(key)
                        self.projects.add(key[0])
                    self._copy.write(line if line.endswith(b"\n") else line + b"\n")
        except OSError as exc:
            raise UsageError(f"{self.path}: cannot read the saved plan ({exc.strerror or exc})") from None
        self.rows = number - 1
        if self.rows != self.header["rows"] or digest.hexdigest() != self.header["sha256"]:
            what = (f"{self.rows} rows, its header says {self.header['rows']}" if self.rows != self.header["rows"]
                    else "its rows do not match the header's checksum")
            raise UsageError(f"{self.path}: damaged or cut off ({what}); nothing was sent: plan again")

    def jobs(self) -> Iterator[Job]:
        """The rows as jobs: the body is the row's line; the hash is of what is sent (what
        ``--resume`` matches on), or of the line for a row not sent."""
        self._copy.seek(0)
        for line in self._copy:
            record = orjson.loads(line)
            send = record.get("send")
            hashed = encode_body(send) if send is not None else line
            yield Job(record["row"], record["project_id"], record["config_name"], line,
                      hashlib.sha256(hashed).hexdigest())


def _line(path: Path, handle: IO[bytes], number: int) -> bytes:
    line = handle.readline(MAX_LINE_BYTES + 1)
    if len(line) > MAX_LINE_BYTES:
        raise UsageError(f"{path}: line {number} is longer than {MAX_LINE_BYTES // 2**20} MiB: not a planned row")
    return line


def _header(path: Path, line: bytes) -> dict[str, Any]:
    try:
        header = orjson.loads(line)
    except orjson.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or MARKER not in header:
        raise UsageError(f"{path}: line 1 is not the header of a saved plan")
    if header[MARKER] != VERSION:
        raise UsageError(f"{path}: a saved plan of version {header[MARKER]!r}; this batchcfg applies version "
                         f"{VERSION}: plan again")
    if not _whole(header.get("rows")) or not isinstance(header.get("sha256"), str):
        raise UsageError(f"{path}: line 1: the header has no row count and checksum")
    return header


def _check_row(path: Path, number: int, line: bytes) -> tuple[int, tuple[str, str] | None]:
    """A planned row's number and, for a row to send, its (project, config name); or a UsageError
    naming the line and field. A row not sent keeps the manifest's cells as they were, which may be
    what made it invalid: they need only be text."""
    def refuse(why: str) -> UsageError:
        return UsageError(f"{path}: line {number}: {why}; nothing was sent")

    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise refuse(f"not JSON ({exc})") from None
    if not isinstance(record, dict):
        raise refuse("not a planned row (a JSON object)")
    row, project, name, status = (record.get(key) for key in ("row", "project_id", "config_name", "status"))
    if not isinstance(row, int) or isinstance(row, bool) or row < 2:
        raise refuse("row: not a row number")
    if status not in TO_SEND + NOT_SENT:
        raise refuse(f"status: {str(status)[:40]!r} is not a planned row's")
    if not isinstance(project, str) or (status in TO_SEND and check_project_id(project) is not None):
        raise refuse("project_id: not a project id")
    if not isinstance(name, str) or (status in TO_SEND and check_config_name(name) is not None):
        raise refuse("config_name: not a config name")
    changes = record.get("changes")
    if not isinstance(changes, list) or not all(_is_change(change) for change in changes):
        raise refuse("changes: not a list of changes")
    if status in NOT_SENT:
        if "send" in record or not all(isinstance(record.get(key, ""), str) for key in ("error_code", "error_message")):
            raise refuse(f"a {status} row has no body to send, and text error_code and error_message")
        return row, None
    before, send = record.get("before", ...), record.get("send")
    if not isinstance(send, dict):
        raise refuse("send: not a body")
    if status == CREATE and before is not None:
        raise refuse("before: a config to create has none")
    if status == CHANGED:
        problem = ("not an object" if not isinstance(before, dict) else
                   f"{sorted(set(before) - set(BODY_FIELDS))[0]!r} is not a writable field"
                   if set(before) - set(BODY_FIELDS) else check_details(name, {**before, "config_name": name}))
        if problem is not None:
            raise refuse(f"before: {problem}")
    problems = check_body(send)
    if problems:
        raise refuse(f"send breaks the API's rules ({describe(problems)})")
    return row, (project, name)


def _is_change(data: Any) -> bool:
    if not isinstance(data, dict) or not isinstance(data.get("field"), str) or data.get("kind") not in KINDS:
        return False
    if data.get("label") is not None and not isinstance(data["label"], str):
        return False
    return bool(Change.of_json(data).kind == data["kind"])


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
