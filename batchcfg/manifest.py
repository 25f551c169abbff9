"""Reading a manifest: a CSV or Excel file -> a stream of rows of text cells.

Every cell is read as text, exactly as typed: ``NA``, ``None``, ``null`` and leading zeros stay,
surrounding white space is dropped, and an empty cell means "not set". Row numbers are the
spreadsheet's: the header is row 1, the first config row 2. Rows whose cells are all empty are
skipped (their numbers are not reused). A row also says which cells were numbers (in a workbook
or a JSON-lines file), for a failed-row manifest that writes them back. Workbooks are checked, and
their sheet found, by :mod:`batchcfg.workbook`.

>>> manifest = open_manifest("samples/training_job_configs.csv")
>>> first = next(iter(manifest.rows()))
>>> first.number, first.cells["config_name"]
(2, 'resnet50-imagenet')
"""

from __future__ import annotations

import codecs
import csv
import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ManifestError
from .schema import COLUMNS, PARAM_PREFIX
from .workbook import check_workbook, one_line, read_sheet

CSV_SUFFIXES = (".csv",)
EXCEL_SUFFIXES = (".xlsx", ".xlsm")
JSONL_SUFFIXES = (".jsonl",)  # one JSON object a row, the first one's keys the header (batchcfg export writes it)
DEFAULT_ENCODING = "utf-8-sig"  # UTF-8, with or without a byte order mark
CHUNK_ROWS = 10_000
MAX_COLUMNS = 1000            # the API has 17 fields; a few hundred param.<label> columns at most
MAX_HEADER_BYTES = 256 * 1024
IGNORED_PREFIX = "#"  # columns such as "#status" are notes for people, not fields
FAILED_MARKER = "#status"  # the columns batchcfg adds to a failed-row manifest
ERROR_MARKER = "#error"
EXPORT_MARKER = "#exported"  # the column batchcfg export adds: when the row was read
_GENERIC_WORDS = frozenset({"id", "url", "num"})  # words of field names too common to hint at one field


@dataclass(frozen=True, slots=True)
class Row:
    """One non-empty manifest row: its spreadsheet row number, its cells by column name, the
    text of every cell in file order (for writing the row back out), and the positions in
    ``values`` of the cells that were numbers in the file (an Excel number cell, a JSON number;
    never in a CSV file), so that a row written back to a workbook keeps them numbers."""

    number: int
    cells: dict[str, str]
    values: tuple[str, ...] = ()
    numeric: tuple[int, ...] = ()


@dataclass(frozen=True)
class Manifest:
    """An opened manifest whose header has been read and checked. :meth:`rows` streams the rest."""

    path: Path
    header: tuple[str, ...]   # row 1 as typed
    columns: tuple[str, ...]  # the name of each column: "" without a header, "#..." for notes
    sheet: str | int = 0      # a workbook's sheet: its name (open_manifest finds it), or its index from 0
    encoding: str = DEFAULT_ENCODING
    bom: bool = False         # the CSV file began with a UTF-8 byte order mark (Excel's "CSV UTF-8")

    def rows(self) -> Iterator[Row]:
        """Yield the non-empty rows in file order. Raises :class:`ManifestError` on a malformed file."""
        typed = self.path.suffix.lower() not in CSV_SUFFIXES  # a CSV file's cells are all text
        for first_number, block in self._blocks():
            for offset, values in enumerate(block):
                number = first_number + offset
                texts = [v.strip() if v.__class__ is str else _text(v) for v in values]
                if not any(texts):
                    continue
                numeric = tuple(i for i, v in enumerate(values) if v.__class__ in (int, float)) if typed else ()
                if self.unquote:
                    texts = [_unquote(text) for text in texts]
                cells = {}
                for position, (name, text) in enumerate(zip(self.columns, texts)):
                    if not name and text:
                        raise ManifestError(f"{self.path}: row {number} has a value in column "
                                            f"{_column_letter(position)}, which has no header")
                    if name and not name.startswith(IGNORED_PREFIX):
                        cells[name] = text
                yield Row(number, cells, tuple(texts), numeric)

    @property
    def unquote(self) -> bool:
        """A failed-row manifest or an export written by batchcfg: its cells were defused for
        spreadsheets."""
        marked = FAILED_MARKER in self.columns or EXPORT_MARKER in self.columns
        return marked and self.path.suffix.lower() not in JSONL_SUFFIXES  # JSON lines are never defused

    def _blocks(self) -> Iterator[tuple[int, list[list[Any]]]]:
        """Yield (row number of the block's first row, its rows as lists of values), header excluded."""
        if self.path.suffix.lower() in EXCEL_SUFFIXES:
            yield 2, read_sheet(self.path, self.sheet)[1][1:]
            return
        if self.path.suffix.lower() in JSONL_SUFFIXES:
            yield from _jsonl_blocks(self.path, self.header)
            return
        number = 1
        for chunk in _read_csv(self.path, self.encoding, chunksize=CHUNK_ROWS):
            values = chunk.values.tolist()
            if number == 1:
                values = values[1:]
                number = 2
            yield number, values
            number += len(values)


def open_manifest(path: str | Path, *, sheet: str | None = None, encoding: str | None = None) -> Manifest:
    """Open a ``.csv``, ``.xlsx``, ``.xlsm`` or ``.jsonl`` manifest and check its header row.
    ``sheet`` names a workbook's sheet (any case) or gives its position, counted from 1.

    Raises :class:`ManifestError` for a missing, empty, unreadable or unsupported file, a missing
    sheet (listing the sheets), and for every unknown, repeated or label-less column at once
    (naming each, with the nearest known name).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in CSV_SUFFIXES + EXCEL_SUFFIXES + JSONL_SUFFIXES:
        raise ManifestError(f"{path}: unsupported file type {suffix or '(none)'!r}; "
                            "use .csv, .xlsx, .xlsm or .jsonl")
    if not path.is_file():
        raise ManifestError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ManifestError(f"{path}: the file is empty")
    found: str | int = 0
    bom = False
    if suffix in JSONL_SUFFIXES:
        if sheet is not None or encoding:
            raise ManifestError("--sheet and --encoding apply to .xlsx and .csv files only")
        header = list(next(_jsonl_records(path), ({}, 1))[0])
    elif suffix in EXCEL_SUFFIXES:
        if encoding:
            raise ManifestError("--encoding applies to .csv files only")
        check_workbook(path)
        found, head = read_sheet(path, sheet, nrows=1)
        header = head[0] if head else []
    else:
        if sheet is not None:
            raise ManifestError("--sheet applies to .xlsx and .xlsm files only")
        bom = _starts_with_bom(path)
        encoding = _with_bom(encoding or DEFAULT_ENCODING, bom)
        _check_header_size(path)
        frame = next(iter(_read_csv(path, encoding, chunksize=1)), None)
        header = frame.values.tolist()[0] if frame is not None and len(frame) else []
    texts = tuple(_text(value) for value in header)
    return Manifest(path, texts, _map_header(path, list(texts)), found, encoding or DEFAULT_ENCODING, bom)


def _starts_with_bom(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(len(codecs.BOM_UTF8)) == codecs.BOM_UTF8
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read it ({exc.strerror or exc})") from None


def _with_bom(encoding: str, bom: bool) -> str:
    """``--encoding utf-8`` reads a file with a byte order mark as ``utf-8-sig``: the mark is not
    part of the first header."""
    try:
        return "utf-8-sig" if bom and codecs.lookup(encoding).name == "utf-8" else encoding
    except LookupError:
        raise ManifestError(f"unknown encoding {encoding!r}") from None


def _map_header(path: Path, header: list[str]) -> tuple[str, ...]:
    """Header cells -> column names. Case and surrounding spaces of field names are ignored;
    ``param.<label>`` keeps the label as typed. Columns headed ``#...`` are ignored. Every bad
    header is named in one :class:`ManifestError`."""
    if not any(header):
        raise ManifestError(f"{path}: row 1 (the header) is empty")
    columns: list[str] = []
    problems: list[tuple[int, str]] = []  # (column, what is wrong with it)
    unmatched = False  # an unknown name with no near field name: the message lists the fields
    where: dict[str, list[int]] = {}
    for position, raw in enumerate(header):
        text = raw.strip()
        name = text.lower()
        if text.lower().startswith(PARAM_PREFIX) and not text.startswith(IGNORED_PREFIX):
            name = PARAM_PREFIX + text[len(PARAM_PREFIX):].strip()
            if name == PARAM_PREFIX:
                problems.append((position, f"{text!r} in column {_column_letter(position)} "
                                           "(no parameter label after 'param.')"))
        elif text and not text.startswith(IGNORED_PREFIX) and name not in COLUMNS:
            hint = _nearest(name)
            unmatched = unmatched or not hint
            problems.append((position, f"{text!r} in column {_column_letter(position)} "
                                       f"({hint or 'no such field'})"))
        if text and not text.startswith(IGNORED_PREFIX):
            where.setdefault(name, []).append(position)
        columns.append(name)
    for name, positions in where.items():
        if len(positions) > 1 and name != PARAM_PREFIX:
            times = "twice" if len(positions) == 2 else f"{len(positions)} times"
            letters = [_column_letter(position) for position in positions]
            problems.append((positions[1], f"{name!r} appears {times} (columns "
                                           f"{', '.join(letters[:-1])} and {letters[-1]})"))
    if problems:
        raise ManifestError(_bad_columns(path, problems, unmatched, "config_name" not in where))
    if "config_name" not in where:
        raise ManifestError(f"{path}: no config_name column")
    return tuple(columns)


def _bad_columns(path: Path, problems: list[tuple[int, str]], unmatched: bool, no_config_name: bool) -> str:
    """One line for every bad header, in column order; the field names when one had no near match."""
    count = f"{len(problems)} bad columns" if len(problems) > 1 else "bad column"
    message = f"{path}: {count}: " + ", ".join(text for _, text in sorted(problems))
    if no_config_name:
        message += "; and no config_name column"
    if unmatched:
        message += (f". Fields: {', '.join(COLUMNS)}, {PARAM_PREFIX}<label> (docs/manifest.md); "
                    f"start a header with {IGNORED_PREFIX!r} for notes")
    return message


def _nearest(name: str) -> str:
    """``did you mean 'spec_id'?`` for a name close to a field's (``specid``) or to one of its
    words (``workers``: worker_server_num; ``description``: config_desc), when one or two fit."""
    close = difflib.get_close_matches(name, COLUMNS, n=1, cutoff=0.6)
    if not close:
        words = [word for word in re.split(r"[\s_.\-]+", name) if len(word) >= 3 and word not in _GENERIC_WORDS]
        close = [field for field in COLUMNS
                 if any(_alike(word, part) for word in words for part in field.split("_") if part not in _GENERIC_WORDS)]
    if not close or len(close) > 2:
        return ""
    return "did you mean " + " or ".join(repr(field) for field in close) + "?"


def _alike(word: str, part: str) -> bool:
    """A word of a header like a word of a field name: ``workers``/``worker``, ``description``/``desc``."""
    if min(len(word), len(part)) >= 4 and (word.startswith(part) or part.startswith(word)):
        return True
    return difflib.SequenceMatcher(None, word, part).ratio() >= 0.8


def _check_header_size(path: Path) -> None:
    """Refuse a CSV whose header is too long or too wide before pandas builds a frame of it (a
    million empty columns took 80 s and 2 GB): the first line is read, up to its bound, and its
    separators counted (quoted commas only make the count high, never too low)."""
    with path.open("rb") as handle:
        first = handle.readline(MAX_HEADER_BYTES + 1)
    if len(first) > MAX_HEADER_BYTES and not first.endswith(b"\n"):
        raise ManifestError(f"{path}: the header (row 1) is longer than {MAX_HEADER_BYTES // 1024} KiB: "
                            "is it a manifest?")
    if first.count(b",") + 1 > MAX_COLUMNS and len(next(csv.reader([first.decode("utf-8", "replace")]), [])) > MAX_COLUMNS:
        raise ManifestError(f"{path}: more than {MAX_COLUMNS} columns in the header (row 1): is it a manifest?")


def _jsonl_records(path: Path) -> Iterator[tuple[dict[str, Any], int]]:
    """The objects of a JSON-lines manifest, with their line numbers; a line that is not a JSON
    object is a :class:`ManifestError` naming it."""
    import orjson

    try:
        with path.open("rb") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:
                    record = None
                if not isinstance(record, dict):
                    raise ManifestError(f"{path}: line {number} is not a JSON object")
                yield record, number
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read it ({exc.strerror or exc})") from None


def _jsonl_blocks(path: Path, header: tuple[str, ...]) -> Iterator[tuple[int, list[list[Any]]]]:
    """Rows of a JSON-lines manifest as lists of cells, in the header's order (the first object's
    keys): text, and numbers as numbers (their text is their JSON text). Each line is a row,
    numbered line + 1 as if the keys were a header row 1."""
    import json

    known = set(header)
    for record, number in _jsonl_records(path):
        unknown = [key for key in record if key not in known]
        if unknown:
            raise ManifestError(f"{path}: line {number} has the key {unknown[0]!r}, which the first line lacks")
        values = [record.get(key) for key in header]
        yield number + 1, [[value if value.__class__ in (str, int, float) else "" if value is None
                            else json.dumps(value, ensure_ascii=False, separators=(",", ":")) for value in values]]


def _read_csv(path: Path, encoding: str, chunksize: int) -> Iterator[Any]:
    import pandas as pd

    try:
        reader = pd.read_csv(path, header=None, dtype=str, keep_default_na=False, na_filter=False,
                             skip_blank_lines=False, encoding=encoding, chunksize=chunksize)
        with reader:
            yield from reader
    except LookupError:
        raise ManifestError(f"unknown encoding {encoding!r}") from None
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: cannot be read as {encoding} ({exc.reason} at byte {exc.start}); "
                            "pass --encoding, for example --encoding gbk") from None
    except pd.errors.EmptyDataError:
        raise ManifestError(f"{path}: the file is empty") from None
    except pd.errors.ParserError as exc:
        raise ManifestError(f"{path}: malformed CSV: {one_line(exc)}") from None


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):  # NaN: a missing cell
        return ""
    return str(value).strip()


def _unquote(text: str) -> str:
    """Undo :func:`batchcfg.files.spreadsheet_safe`: ``'=x`` -> ``=x``, ``''x`` -> ``'x``."""
    return text[1:] if text.startswith("'") else text


def _column_letter(position: int) -> str:
    """0 -> 'A', 25 -> 'Z', 26 -> 'AA': how a spreadsheet names a column."""
    letters = ""
    position += 1
    while position:
        position, rest = divmod(position - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters
