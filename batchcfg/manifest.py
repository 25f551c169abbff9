"""Reading a manifest: a CSV or Excel file -> a stream of rows of text cells.

Every cell is read as text, exactly as typed: ``NA``, ``None``, ``null`` and leading zeros stay,
surrounding white space is dropped, and an empty cell means "not set". Row numbers are the
spreadsheet's: the header is row 1, the first config row 2. Rows whose cells are all empty are
skipped (their numbers are not reused).

>>> manifest = open_manifest("samples/training_job_configs.csv")
>>> first = next(iter(manifest.rows()))
>>> first.number, first.cells["config_name"]
(2, 'resnet50-imagenet')
"""

from __future__ import annotations

import difflib
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ManifestError
from .schema import COLUMNS, PARAM_PREFIX

CSV_SUFFIXES = (".csv",)
EXCEL_SUFFIXES = (".xlsx", ".xlsm")
JSONL_SUFFIXES = (".jsonl",)  # one JSON object a row, the first one's keys the header (batchcfg export writes it)
DEFAULT_ENCODING = "utf-8-sig"  # UTF-8, with or without a byte order mark
CHUNK_ROWS = 10_000
MAX_WORKBOOK_BYTES = 2 * 2**30  # what a workbook may unpack to
MAX_WORKBOOK_ENTRIES = 10_000
MAX_PACKING_RATIO = 200  # real sheets pack 5-50 times; zip bombs a thousand and more
IGNORED_PREFIX = "#"  # columns such as "#status" are notes for people, not fields
FAILED_MARKER = "#status"  # the columns batchcfg adds to a failed-row manifest
ERROR_MARKER = "#error"
EXPORT_MARKER = "#exported"  # the column batchcfg export adds: when the row was read


@dataclass(frozen=True, slots=True)
class Row:
    """One non-empty manifest row: its spreadsheet row number, its cells by column name, and the
    text of every cell in file order (for writing the row back out)."""

    number: int
    cells: dict[str, str]
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class Manifest:
    """An opened manifest whose header has been read and checked. :meth:`rows` streams the rest."""

    path: Path
    header: tuple[str, ...]   # row 1 as typed
    columns: tuple[str, ...]  # the name of each column: "" without a header, "#..." for notes
    sheet: str | int = 0
    encoding: str = DEFAULT_ENCODING

    def rows(self) -> Iterator[Row]:
        """Yield the non-empty rows in file order. Raises :class:`ManifestError` on a malformed file."""
        for first_number, block in self._blocks():
            for offset, values in enumerate(block):
                number = first_number + offset
                texts = [v.strip() if v.__class__ is str else _text(v) for v in values]
                if not any(texts):
                    continue
                if self.unquote:
                    texts = [_unquote(text) for text in texts]
                cells = {}
                for position, (name, text) in enumerate(zip(self.columns, texts)):
                    if not name and text:
                        raise ManifestError(f"{self.path}: row {number} has a value in column "
                                            f"{_column_letter(position)}, which has no header")
                    if name and not name.startswith(IGNORED_PREFIX):
                        cells[name] = text
                yield Row(number, cells, tuple(texts))

    @property
    def unquote(self) -> bool:
        """A failed-row manifest or an export written by batchcfg: its cells were defused for
        spreadsheets."""
        marked = FAILED_MARKER in self.columns or EXPORT_MARKER in self.columns
        return marked and self.path.suffix.lower() not in JSONL_SUFFIXES  # JSON lines are never defused

    def _blocks(self) -> Iterator[tuple[int, list[list[Any]]]]:
        """Yield (row number of the block's first row, its rows as lists of values), header excluded."""
        if self.path.suffix.lower() in EXCEL_SUFFIXES:
            frame = _read_excel(self.path, self.sheet)
            yield 2, frame.values.tolist()[1:]
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
    """Open a ``.csv``, ``.xlsx`` or ``.xlsm`` manifest and check its header row.

    Raises :class:`ManifestError` for a missing, empty, unreadable or unsupported file, and for an
    unknown or repeated column (naming it, and the nearest known name).
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
    if suffix in JSONL_SUFFIXES:
        if sheet is not None or encoding:
            raise ManifestError("--sheet and --encoding apply to .xlsx and .csv files only")
        header = next(_jsonl_records(path), ({}, 1))[0]
    elif suffix in EXCEL_SUFFIXES:
        if encoding:
            raise ManifestError("--encoding applies to .csv files only")
        check_workbook(path)
        frame = _read_excel(path, sheet if sheet is not None else 0)
        header = frame.values.tolist()[0] if len(frame) else []
    else:
        if sheet is not None:
            raise ManifestError("--sheet applies to .xlsx and .xlsm files only")
        encoding = encoding or DEFAULT_ENCODING
        frame = next(iter(_read_csv(path, encoding, chunksize=1)), None)
        header = frame.values.tolist()[0] if frame is not None and len(frame) else []
    texts = tuple(_text(value) for value in header)
    return Manifest(path, texts, _map_header(path, list(texts)), sheet if sheet is not None else 0,
                    encoding or DEFAULT_ENCODING)


def _map_header(path: Path, header: list[str]) -> tuple[str, ...]:
    """Header cells -> column names. Case and surrounding spaces of field names are ignored;
    ``param.<label>`` keeps the label as typed. Columns headed ``#...`` are ignored."""
    if not any(header):
        raise ManifestError(f"{path}: row 1 (the header) is empty")
    columns: list[str] = []
    seen: dict[str, int] = {}
    for position, raw in enumerate(header):
        text = raw.strip()
        if not text or text.startswith(IGNORED_PREFIX):
            columns.append(text.lower())
            continue
        if text.lower().startswith(PARAM_PREFIX):
            label = text[len(PARAM_PREFIX):].strip()
            if not label:
                raise ManifestError(f"{path}: column {_column_letter(position)} {text!r} has no "
                                    "parameter label after 'param.'")
            name = PARAM_PREFIX + label
        else:
            name = text.lower()
            if name not in COLUMNS:
                hint = difflib.get_close_matches(name, COLUMNS, n=1, cutoff=0.6)
                nearest = f" (did you mean {hint[0]!r}?)" if hint else ""
                raise ManifestError(f"{path}: unknown column {text!r} in column "
                                    f"{_column_letter(position)}{nearest}")
        if name in seen:
            raise ManifestError(f"{path}: column {name!r} appears twice (columns "
                                f"{_column_letter(seen[name])} and {_column_letter(position)})")
        seen[name] = position
        columns.append(name)
    if "config_name" not in seen:
        raise ManifestError(f"{path}: no config_name column")
    return tuple(columns)


def check_workbook(path: Path) -> None:
    """Refuse a workbook before parsing it: a zip bomb (it would unpack to more than
    ``MAX_WORKBOOK_BYTES``, or an entry packs implausibly tight) or XML with a DTD (entity
    expansion: "billion laughs"). Reads only the zip directory and the first bytes of each part."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ManifestError(f"{path}: not an Excel workbook ({_one_line(exc)})") from None
    with archive:
        entries = archive.infolist()
        if len(entries) > MAX_WORKBOOK_ENTRIES:
            raise ManifestError(f"{path}: refused: {len(entries)} parts in the workbook")
        unpacked = 0
        for entry in entries:
            unpacked += entry.file_size
            if unpacked > MAX_WORKBOOK_BYTES:
                raise ManifestError(f"{path}: refused: it unpacks to more than "
                                    f"{MAX_WORKBOOK_BYTES // 2**20} MiB")
            if entry.file_size > 2**20 and entry.file_size > MAX_PACKING_RATIO * max(1, entry.compress_size):
                raise ManifestError(f"{path}: refused: {entry.filename} unpacks to "
                                    f"{entry.file_size // max(1, entry.compress_size)} times its size "
                                    "(a decompression bomb?)")
            if entry.filename.endswith((".xml", ".rels")):
                try:
                    with archive.open(entry) as part:
                        head = part.read(4096)
                except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as exc:
                    raise ManifestError(f"{path}: damaged workbook ({_one_line(exc)})") from None
                if b"<!DOCTYPE" in head or b"<!ENTITY" in head:
                    raise ManifestError(f"{path}: refused: {entry.filename} declares a DTD "
                                        "(XML entities are not accepted in a workbook)")


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
    """Rows of a JSON-lines manifest as lists of cell texts, in the header's order (the first
    object's keys). Each line is a row, numbered line + 1 as if the keys were a header row 1."""
    import json

    known = set(header)
    for record, number in _jsonl_records(path):
        unknown = [key for key in record if key not in known]
        if unknown:
            raise ManifestError(f"{path}: line {number} has the key {unknown[0]!r}, which the first line lacks")
        values = [record.get(key) for key in header]
        yield number + 1, [[value if isinstance(value, str) else "" if value is None
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
        raise ManifestError(f"{path}: malformed CSV: {_one_line(exc)}") from None


def _read_excel(path: Path, sheet: str | int) -> Any:
    import pandas as pd

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pd.read_excel(path, sheet_name=sheet, header=None, dtype=str, na_filter=False,
                                 engine="calamine")
    except ValueError as exc:
        if "not found" in str(exc).lower() or "worksheet" in str(exc).lower():
            raise ManifestError(f"{path}: no sheet named {sheet!r}") from None
        raise ManifestError(f"{path}: cannot read the workbook: {_one_line(exc)}") from None
    except Exception as exc:  # calamine reports a damaged or foreign file in several ways
        raise ManifestError(f"{path}: cannot read the workbook: {_one_line(exc)}") from None


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


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
