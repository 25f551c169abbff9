"""Files a run writes and reads back: atomic writes, durable appends, CSV/JSONL/XLSX tables.

- :func:`atomic_write` writes to a temporary file, ``fsync``-s it, then renames it over the
  target: a reader never sees half a report, metrics file or failed-row manifest.
- :func:`open_lines` and :func:`write_all` append JSON lines durably (the journal, backups).
- :func:`write_table` writes rows as CSV, JSONL or XLSX by the file's extension. CSV and XLSX
  cells that a spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``, ``@``, tab,
  carriage return or line feed) get a leading ``'``, as OWASP advises; JSONL keeps values raw.
  With ``exact`` (exports) control characters are kept: a CSV file holds them as they are, and an
  XLSX file as the ``_xHHHH_`` escapes of its XML, which readers (calamine, Excel) turn back.
- The standard streams: a reader that stops reading (``batchcfg regions | head -2``) ends the
  output quietly (:func:`reader_may_leave`); a stdout or stderr closed from the start goes to
  /dev/null (:func:`ensure_std_streams`).
"""

from __future__ import annotations

import csv
import glob
import errno
import io
import json
import os
import re
import sys
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import IO, Any

from .errors import UsageError

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")
_DEFUSED_STARTS = frozenset((*FORMULA_STARTS, "'"))  # what spreadsheet_safe puts a quote before
XLSX_SAMPLE_ROWS = 200  # rows read ahead to size the columns of an .xlsx file
XLSX_MAX_WIDTH = 60
XLSX_MAX_CELL_CHARS = 32_767  # what an Excel cell holds
XLSX_UNWRITABLE = re.compile("[\ufffe\uffff\ud800-\udfff]")  # not even the _xHHHH_ escapes carry these back
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@contextmanager
def atomic_write(path: Path, mode: str = "w", **open_args: Any) -> Iterator[IO[Any]]:
    """A handle on a temporary file beside ``path``; when the block ends without an error, the
    file is flushed, ``fsync``-ed and renamed over ``path``. On an error ``path`` is untouched."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with temporary.open(mode, **open_args) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file: through a link, ``..`` or another spelling too."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet
        return a.resolve() == b.resolve()


def check_distinct(outputs: dict[str, Path], inputs: dict[str, Path], allowed: set[frozenset[str]] = set()) -> None:
    """Refuse a run that would write one of its ``outputs`` over one of its ``inputs`` or over
    another output (``--report m.csv``), before anything is read or sent. ``allowed`` names
    pairs that may be one file (a resumed run continues its journal)."""
    for name, path in outputs.items():
        for other, other_path in [*inputs.items(), *outputs.items()]:
            if other != name and frozenset((name, other)) not in allowed and same_file(path, other_path):
                what = "is the same file as" if other in outputs else "would write over"
                raise UsageError(f"{name} {path} {what} {other} {other_path}: choose another file")
            if other == name:
                break  # each pair of outputs once


def expand_patterns(paths: Sequence[Path]) -> list[Path]:
    """Backup paths, with a pattern the shell did not expand (a quoted glob, a cron line)
    expanded here; a pattern that matches nothing is kept, to be reported as missing."""
    found: list[Path] = []
    for path in paths:
        matches = sorted(glob.glob(str(path))) if glob.has_magic(str(path)) and not path.exists() else []
        if matches:
            found.extend(Path(match) for match in matches)
        else:
            found.append(path)
    return found


def check_output_path(path: Path, option: str, suffixes: Sequence[str]) -> Path:
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


def write_table(path: Path, columns: Sequence[str], rows: Iterable[Sequence[Any]], *,
                raw: bool = False, bom: bool = False, sheet: str = "report", exact: bool = False,
                created: datetime | None = None) -> None:
    """Rows of values under ``columns`` as CSV (``bom``: with a byte order mark, which Excel needs
    to read UTF-8), JSONL (``raw``: values as they are) or XLSX (a frozen header, a filter, widths
    that fit, the sheet named ``sheet``), by the extension of ``path``, atomically. ``exact``
    keeps control characters (see :func:`spreadsheet_safe`); ``created`` is an XLSX file's
    creation time (default: now): a fixed one makes the same rows the same bytes."""
    suffix = path.suffix.lower()
    safe = partial(spreadsheet_safe, exact=exact)
    if suffix == ".xlsx":
        with atomic_write(path, "wb") as handle:
            _write_xlsx(handle, columns, ([safe(v) for v in row] for row in rows), sheet, created)
        return
    encoding = "utf-8-sig" if bom and suffix == ".csv" else "utf-8"
    with atomic_write(path, "w", encoding=encoding, newline="" if suffix == ".csv" else "\n") as handle:
        if suffix == ".jsonl":
            for row in rows:
                values = row if raw else [safe(v) for v in row]
                handle.write(json.dumps(dict(zip(columns, values)), ensure_ascii=False) + "\n")
        else:
            writer = csv.writer(handle)
            writer.writerow(columns)
            # safe() on the few cells it may change: it takes a microsecond a row more on all of
            # them (csv writes None as "" too)
            writer.writerows([v if v.__class__ is not str or not v or (v[0] not in _DEFUSED_STARTS and not v[0].isspace()
                                                                       and v.isprintable())
                              else safe(v) for v in row] for row in rows)


def _write_xlsx(handle: IO[bytes], columns: Sequence[str], rows: Iterable[Sequence[Any]], name: str,
                created: datetime | None) -> None:
    """Cells already made safe, written row by row (constant memory)."""
    import itertools

    import xlsxwriter
    import xlsxwriter.exceptions

    workbook = xlsxwriter.Workbook(handle, {"constant_memory": True, "strings_to_formulas": False,
                                            "strings_to_urls": False, "strings_to_numbers": False})
    if created is not None:
        workbook.set_properties({"created": created})
    try:
        sheet = workbook.add_worksheet(name)
        iterator = iter(rows)
        first = list(itertools.islice(iterator, XLSX_SAMPLE_ROWS))
        for column, header in enumerate(columns):  # widths that fit the header and the first rows
            width = max([_width(header), *(_width(row[column]) for row in first if column < len(row))])
            sheet.set_column(column, column, min(XLSX_MAX_WIDTH, width + 2))
        sheet.freeze_panes(1, 0)
        sheet.write_row(0, 0, columns)
        number = 0
        for number, row in enumerate(itertools.chain(first, iterator), start=1):
            sheet.write_row(number, 0, row)
        sheet.autofilter(0, 0, number, max(0, len(columns) - 1))
    finally:
        try:
            workbook.close()
        except xlsxwriter.exceptions.XlsxFileError as exc:  # it wraps the OSError of a full disk
            raise exc.args[0] if exc.args and isinstance(exc.args[0], OSError) else OSError(str(exc)) from None


def _width(value: Any) -> int:
    """How many character widths a cell needs: its longest line, a Chinese character (East Asian
    wide or full-width) counting two."""
    text = str(value)
    lines = text.splitlines() or [""]
    if text.isascii():
        return max(map(len, lines))
    return max(sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in line) for line in lines)


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


def spreadsheet_safe(value: Any, *, exact: bool = False) -> Any:
    """A value fit for a spreadsheet cell: text that would start a formula gets a leading ``'``;
    control characters that some readers of reports refuse become U+FFFD, unless ``exact`` (then
    they stay: CSV holds them, and XLSX writes them as ``_xHHHH_`` escapes); None becomes empty.
    Text that starts with ``'``, after any white space, gets one more, so that the loader, which
    drops surrounding white space and then one ``'``, gives every value back."""
    if value is None:
        return ""
    if value.__class__ is str and value:
        if not exact:
            value = _CONTROL_RE.sub("\ufffd", value)
        if value.startswith(FORMULA_STARTS) or value.lstrip().startswith("'"):
            return "'" + value
    return value


def ensure_std_streams() -> None:
    """A process started with stdout or stderr closed (``>&-``, ``2>&-``, a bare daemon) has
    ``sys.stdout`` or ``sys.stderr`` None: they go to /dev/null instead, which also keeps their
    file descriptor from going to the next file opened (a report that would get the logs)."""
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # open for the process's life


@contextmanager
def reader_may_leave() -> Iterator[None]:
    """Output that its reader may stop reading (``batchcfg regions | head -2``): the
    ``BrokenPipeError`` ends it quietly, with no traceback, and what is left to print goes nowhere."""
    try:
        yield
    except BrokenPipeError:
        if not reader_gone():
            _to_devnull(sys.stdout)  # it was this output's, whatever poll says on this system


def reader_gone() -> bool:
    """After a ``BrokenPipeError``: stdout and stderr, when the reader of their pipe left, go to
    /dev/null from now on (so that Python's own flush at exit finds nothing to complain of).
    False when neither pipe was closed: the error came from elsewhere."""
    import select

    gone = False
    for stream in (sys.stdout, sys.stderr):
        try:
            poller = select.poll()
            poller.register(stream.fileno(), 0)  # POLLERR alone: the pipe's reader has left
            if poller.poll(0):
                _to_devnull(stream)
                gone = True
        except (AttributeError, ValueError, OSError):  # no file descriptor (a test's capture)
            continue
    return gone


def _to_devnull(stream: Any) -> None:
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, stream.fileno())
        os.close(null)
    except (AttributeError, ValueError, OSError):
        pass
