"""Per-row results and the files that hold them: the report (``.csv``, ``.jsonl``, ``.xlsx``)
and the journal.

The journal (``{report stem}.journal.jsonl`` beside the report) gets each row's record the moment
the row ends, flushed, so that after a ``kill -9`` every finished row is on disk. The report is
written once the run ends, sorted by row, atomically (a temporary file, then a rename), and the
journal is removed. Either file can be given to ``apply --resume``.

CSV and XLSX cells that a spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``,
``@``, tab, carriage return or line feed) get a leading ``'``, as OWASP advises; JSONL keeps
values raw, for programs.

>>> outcome = Outcome(row=2, config_name="resnet", project_id="p", status=SUCCEEDED, attempts=1)
>>> write_report("report.csv", [outcome])  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import csv
import errno
import io
import json
import operator
import os
import re
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from .errors import UsageError

SUCCEEDED = "succeeded"
FAILED = "failed"
INVALID = "invalid"
CANCELLED = "cancelled"
SKIPPED = "skipped"
VALID = "valid"
UNCHANGED = "unchanged"  # plan: the row would change nothing
CHANGED = "changed"      # plan: the row would change the fields in ``changes``
MISSING = "missing"      # plan: there is no such config
STATUSES = (SUCCEEDED, FAILED, INVALID, CANCELLED, SKIPPED, VALID, UNCHANGED, CHANGED, MISSING)
REPORT_SUFFIXES = (".csv", ".jsonl", ".xlsx")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(slots=True)
class Outcome:
    """The final result of one manifest row: one report record. Field order is the column order."""

    row: int
    config_name: str
    project_id: str
    status: str
    http_status: int | None = None
    error_code: str = ""
    error_message: str = ""
    attempts: int = 0
    duration_ms: int | None = None
    request_id: str = ""
    body_sha256: str = ""  # of the body sent (or that would be): what --resume matches on
    changes: str = ""      # what the row changes, when the config was read first (plan, backups)
    backup: str = ""       # the backup file that holds the config as it was before this row


COLUMNS = tuple(f.name for f in fields(Outcome))
_values = operator.attrgetter(*COLUMNS)  # an Outcome's values in column order (asdict is slow)


def default_report_path(now: datetime | None = None) -> Path:
    """``batchcfg-report-{UTC time}.csv`` in the current directory."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    return Path(f"batchcfg-report-{stamp}.csv")


def default_backup_path(report: Path) -> Path:
    """``batchcfg-backup-{UTC time}.jsonl`` beside the report (its time, for the default report)."""
    if report.stem.startswith("batchcfg-report-"):
        stamp = report.stem.removeprefix("batchcfg-report-")
    else:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return report.with_name(f"batchcfg-backup-{stamp}.jsonl")


def check_output_path(path: Path, option: str, suffixes: Sequence[str] = REPORT_SUFFIXES) -> Path:
    """Refuse an output path of a type we cannot write, or in no directory, before any work."""
    if path.suffix.lower() not in suffixes:
        raise UsageError(f"{option} {path}: use a {', '.join(suffixes[:-1])} or {suffixes[-1]} file name")
    if not path.parent.is_dir():
        raise UsageError(f"{option} {path}: no such directory {str(path.parent)!r}")
    return path


def open_lines(path: Path) -> io.FileIO:
    """``path`` opened to append JSON lines, unbuffered. A last line cut off by a kill is ended
    first, so that it cannot swallow the next record."""
    handle = path.open("ab", buffering=0)
    try:
        if handle.tell():
            with path.open("rb") as reader:
                reader.seek(-1, os.SEEK_END)
                if reader.read(1) != b"\n":
                    write_all(handle, b"\n")
    except BaseException:
        handle.close()
        raise
    return handle


def write_all(handle: io.FileIO, data: bytes) -> None:
    """Write every byte: one write() call may write only some (a full disk, a quota), and then
    the next one raises OSError."""
    view = memoryview(data)
    while view:
        written = handle.write(view)
        if not written:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]


def journal_path(report: Path) -> Path:
    """Where the journal of a run with this report goes."""
    return report.with_name(report.stem + ".journal.jsonl")


class Journal:
    """Appends one JSON line per finished row and flushes it at once.

    It also remembers where each of this run's lines starts (16 bytes a row), so that
    :meth:`outcomes` can give them back sorted by row without holding the run in memory.
    A run that resumes another starts its journal with ``{"resume": PATH}``: a later resume
    from this journal follows it, even when this run died before any row ended.
    """

    def __init__(self, path: Path, resume: Path | None = None,
                 on_error: Callable[[OSError], None] | None = None) -> None:
        self.path = path
        self.created = not path.exists()
        self._handle = open_lines(path)
        if resume is not None:
            try:
                write_all(self._handle, orjson.dumps({"resume": str(resume.resolve())},
                                                     option=orjson.OPT_APPEND_NEWLINE))
            except BaseException:
                self._handle.close()
                raise
        self._size = path.stat().st_size
        self._rows = array("q")
        self._offsets = array("q")
        self._pending: list[bytes] = []
        self.error: OSError | None = None  # why a write failed (a full disk): nothing is written after
        self._on_error = on_error

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r}, records={len(self._rows)})"

    @property
    def records(self) -> int:
        """How many rows this run has journaled."""
        return len(self._rows)

    def write(self, outcome: Outcome) -> None:
        """Append the row's record. Inside an event loop, the rows that end in one turn of the
        loop are written together at the end of that turn (a group commit: one write() call, not
        one per row); outside one, at once."""
        line = orjson.dumps(outcome, option=orjson.OPT_APPEND_NEWLINE)  # a dataclass: its fields in order
        self._rows.append(outcome.row)
        self._offsets.append(self._size)
        self._size += len(line)
        self._pending.append(line)
        if len(self._pending) == 1:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:
                self.flush()

    def flush(self) -> None:
        """Write the pending lines. A failure is kept in ``error`` and given to ``on_error``
        rather than raised: this runs as an event-loop callback, where an exception would only
        be logged."""
        if self._pending and self.error is None:
            try:
                write_all(self._handle, b"".join(self._pending))
            except OSError as exc:
                self.error = exc
                if self._on_error is not None:
                    self._on_error(exc)
        self._pending.clear()

    def outcomes(self) -> Iterator[Outcome]:
        """This run's records, sorted by row."""
        import numpy as np

        self.flush()
        rows = np.frombuffer(self._rows, dtype=np.int64)
        order = np.argsort(rows, kind="stable") if np.any(rows[1:] < rows[:-1]) else range(len(rows))
        offsets = self._offsets
        with self.path.open("rb") as reader:
            for index in order:
                reader.seek(offsets[int(index)])
                yield Outcome(**orjson.loads(reader.readline()))

    def close(self) -> None:
        if not self._handle.closed:
            self.flush()
            self._handle.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def write_report(path: str | Path, outcomes: Iterable[Outcome]) -> Path:
    """Write the outcomes, in the order given, to ``path`` (type by extension), atomically."""
    path = Path(path)
    write_table(path, COLUMNS, (_values(outcome) for outcome in outcomes),
                raw=path.suffix.lower() == ".jsonl")
    return path


def write_table(path: Path, columns: Sequence[str], rows: Iterable[Sequence[Any]], *,
                raw: bool = False) -> None:
    """Rows of values under ``columns`` as CSV, JSONL (``raw``: values as they are) or XLSX, by
    the extension of ``path``; written to a temporary file, then renamed over ``path``."""
    suffix = path.suffix.lower()
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if suffix == ".xlsx":
            _write_xlsx(temporary, columns, rows)
        else:
            with temporary.open("w", encoding="utf-8", newline="" if suffix == ".csv" else "\n") as handle:
                if suffix == ".jsonl":
                    for row in rows:
                        values = row if raw else [spreadsheet_safe(v) for v in row]
                        handle.write(json.dumps(dict(zip(columns, values)), ensure_ascii=False) + "\n")
                else:
                    writer = csv.writer(handle)
                    writer.writerow(columns)
                    writer.writerows([spreadsheet_safe(v) for v in row] for row in rows)
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _write_xlsx(path: Path, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    import xlsxwriter
    import xlsxwriter.exceptions

    with path.open("wb") as handle:  # opened here: a path that cannot be written fails before any work
        workbook = xlsxwriter.Workbook(handle, {"constant_memory": True, "strings_to_formulas": False,
                                                "strings_to_urls": False, "strings_to_numbers": False})
        try:
            sheet = workbook.add_worksheet("report")
            sheet.write_row(0, 0, columns)
            for number, row in enumerate(rows, start=1):
                sheet.write_row(number, 0, [spreadsheet_safe(value) for value in row])
        finally:
            try:
                workbook.close()
            except xlsxwriter.exceptions.XlsxFileError as exc:  # it wraps the OSError of a full disk
                raise exc.args[0] if exc.args and isinstance(exc.args[0], OSError) else OSError(str(exc)) from None
        handle.flush()
        os.fsync(handle.fileno())


def json_lines(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON objects of a JSON-lines file; a line that is not one (cut off by a kill) is skipped."""
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                yield record


def read_records(path: Path) -> Iterator[dict[str, str]]:
    """The records of an earlier report or journal (``.csv``, ``.jsonl``, ``.xlsx``), values as
    text. A journal's last line may be cut off by a kill: an unreadable line is skipped."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            for record in json_lines(path):
                yield {key: "" if value is None else str(value) for key, value in record.items()}
        elif suffix == ".csv":
            with path.open(encoding="utf-8-sig", newline="") as handle:
                yield from csv.DictReader(handle)
        elif suffix == ".xlsx":
            from python_calamine import CalamineWorkbook

            rows = CalamineWorkbook.from_path(str(path)).get_sheet_by_index(0).to_python()
            header = [str(cell) for cell in rows[0]] if rows else []
            for values in rows[1:]:
                yield {name: str(value) for name, value in zip(header, values)}
        else:
            raise UsageError(f"{path}: use an earlier report or journal (.csv, .jsonl or .xlsx)")
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"{path}: cannot read it ({type(exc).__name__})") from None


def spreadsheet_safe(value: Any) -> Any:
    """A value fit for a spreadsheet cell: text that would start a formula gets a leading ``'``,
    control characters that XML and some CSV readers refuse become U+FFFD; None becomes empty."""
    if value is None:
        return ""
    if value.__class__ is str and value:
        value = _CONTROL_RE.sub("\ufffd", value)
        if value.startswith(FORMULA_STARTS):
            return "'" + value
    return value
