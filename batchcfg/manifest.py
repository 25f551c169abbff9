"""Reading a manifest: a CSV or Excel file -> a stream of rows of text cells.

Every cell is read as text, exactly as typed: ``NA``, ``None``, ``null`` and leading zeros stay,
surrounding white space is dropped, and an empty cell means "not set". Row numbers are the
spreadsheet's: the header is row 1, the first config row 2. Rows whose cells are all empty are
skipped (their numbers are not reused). A row also says which cells were numbers (in a workbook
or a JSON-lines file), for a failed-row manifest that writes them back. Workbooks are checked, and
their sheet found, by :mod:`batchcfg.workbook`.

Files as Excel leaves them: a CSV file separated by ``;`` (Excel's "CSV" where the decimal mark
is a comma) or by tabs is recognised by its header, and read so, with a note saying so; a file
that does not decode gets the encodings it does decode in; a workbook still open in Excel (its
``~$`` owner file beside it) gets a warning that edits not saved are not in the file. What a
person should know about the file is in :attr:`Manifest.notes` and :attr:`Manifest.warnings`.

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
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ManifestError
from .schema import COLUMNS, PARAM_PREFIX
from .workbook import cannot_read, check_workbook, one_line, read_sheet

CSV_SUFFIXES = (".csv",)
EXCEL_SUFFIXES = (".xlsx", ".xlsm")
JSONL_SUFFIXES = (".jsonl",)  # one JSON object a row, the first one's keys the header (batchcfg export writes it)
DEFAULT_ENCODING = "utf-8-sig"  # UTF-8, with or without a byte order mark
DEFAULT_DELIMITER = ","
# The separators a CSV manifest may use, as --delimiter names them: what Excel and other spreadsheets
# save ("," ; ";" where the decimal mark is a comma; a tab for "text" files).
DELIMITERS = {",": ",", "comma": ",", ";": ";", "semicolon": ";", "tab": "\t", "\\t": "\t", "\t": "\t"}
SEPARATOR_ORIGINS = {";": "as Excel saves CSV where the decimal mark is a comma",
                     "\t": "as spreadsheets save tab-separated text"}
# Encodings a CSV file that is not UTF-8 is tried in, for the error's suggestion, with who writes them.
LIKELY_ENCODINGS = (("utf-8", "Excel's CSV UTF-8"), ("gbk", "Chinese Windows"), ("cp1252", "Western European Windows"),
                    ("latin-1", "ISO 8859-1: any bytes read as it"))
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
    delimiter: str = DEFAULT_DELIMITER  # a CSV file's separator: given, or found in its header
    notes: tuple[str, ...] = field(default=(), compare=False)     # what a person should know (a ';' file)
    warnings: tuple[str, ...] = field(default=(), compare=False)  # what may be wrong (open in Excel)

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

    def blocks(self) -> Iterator[tuple[int, list[Sequence[Any]]]]:
        """Yield (row number of the block's first row, its raw values column by column), header
        excluded: what :meth:`rows` reads, for checks that go column by column
        (:mod:`batchcfg.columns`). Values are as read (not stripped, not unquoted), empty rows
        included; a block has a column for each header cell at least (a short row's missing
        cells are ``None``) and at most :data:`CHUNK_ROWS` rows."""
        if self.path.suffix.lower() not in EXCEL_SUFFIXES + JSONL_SUFFIXES:
            for number, chunk in self._csv_chunks():  # without making a list of each row
                yield number, [chunk.iloc[:, i].to_numpy(dtype=object) for i in range(chunk.shape[1])]
            return
        for first, rows in self._blocks():
            for start in range(0, len(rows), CHUNK_ROWS):
                part = rows[start:start + CHUNK_ROWS]
                width = max(len(self.columns), *map(len, part)) if part else len(self.columns)
                yield first + start, [list(column) for column in zip(*(list(row) + [None] * (width - len(row))
                                                                        for row in part))]

    def _blocks(self) -> Iterator[tuple[int, list[list[Any]]]]:
        """Yield (row number of the block's first row, its rows as lists of values), header excluded."""
        if self.path.suffix.lower() in EXCEL_SUFFIXES:
            yield 2, read_sheet(self.path, self.sheet)[1][1:]
            return
        if self.path.suffix.lower() in JSONL_SUFFIXES:
            yield from _jsonl_blocks(self.path, self.header)
            return
        for number, chunk in self._csv_chunks():
            yield number, chunk.values.tolist()

    def _csv_chunks(self) -> Iterator[tuple[int, Any]]:
        """A CSV file's rows in frames of :data:`CHUNK_ROWS`, with the row number of each frame's
        first row; header excluded."""
        number = 1
        for chunk in _read_csv(self.path, self.encoding, self.delimiter, chunksize=CHUNK_ROWS):
            if number == 1:
                chunk, number = chunk.iloc[1:], 2
            yield number, chunk
            number += len(chunk)


def open_manifest(path: str | Path, *, sheet: str | None = None, encoding: str | None = None,
                  delimiter: str | None = None) -> Manifest:
    """Open a ``.csv``, ``.xlsx``, ``.xlsm`` or ``.jsonl`` manifest and check its header row.
    ``sheet`` names a workbook's sheet (any case) or gives its position, counted from 1.
    ``delimiter`` is a CSV file's separator (a key of :data:`DELIMITERS`); without it, the header
    says: ``;`` or a tab when the header splits into more known columns by it than by ``,``.

    Raises :class:`ManifestError` for a missing, empty, unreadable or unsupported file, a missing
    sheet (listing the sheets), and for every unknown, repeated or label-less column at once
    (naming each, with the nearest known name).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    _check_file(path, suffix)
    warnings = _open_elsewhere(path)
    notes: list[str] = []
    found: str | int = 0
    bom = False
    chosen = DEFAULT_DELIMITER
    hint = ""
    if suffix in JSONL_SUFFIXES:
        if sheet is not None or encoding or delimiter:
            raise ManifestError("--sheet applies to workbooks, --encoding and --delimiter to .csv files: "
                                "none of them to .jsonl")
        header = list(next(_jsonl_records(path), ({}, 1))[0])
    elif suffix in EXCEL_SUFFIXES:
        if encoding or delimiter:
            raise ManifestError("--encoding and --delimiter apply to .csv files only")
        check_workbook(path)
        found, head = read_sheet(path, sheet, nrows=1)
        header = head[0] if head else []
    else:
        if sheet is not None:
            raise ManifestError("--sheet applies to .xlsx and .xlsm files only")
        bom = _starts_with_bom(path)
        encoding = _with_bom(encoding or DEFAULT_ENCODING, bom)
        first = _first_line(path)
        line = re.split("[\r\n]", first.decode(encoding, "replace"), maxsplit=1)[0]  # pandas ends a line at CR too
        if delimiter:
            chosen = parse_delimiter(delimiter)
        else:
            chosen = detect_delimiter(line)
            if chosen != DEFAULT_DELIMITER:
                notes.append(f"{path.name}: its cells are separated by {_separator_name(chosen)}, not commas "
                             f"({SEPARATOR_ORIGINS[chosen]}): read so; --delimiter sets it")
            else:
                hint = _separator_hint(line)
        _check_header_width(path, first, line, chosen)
        frame = next(iter(_read_csv(path, encoding, chosen, chunksize=1)), None)
        header = frame.values.tolist()[0] if frame is not None and len(frame) else []
    texts = tuple(_text(value) for value in header)
    try:
        columns = _map_header(path, list(texts))
    except ManifestError as exc:
        raise ManifestError(f"{exc}{hint}") from None
    return Manifest(path, texts, columns, found, encoding or DEFAULT_ENCODING, bom, chosen, tuple(notes), warnings)


def parse_delimiter(text: str) -> str:
    """``--delimiter``: ``,``, ``;`` or a tab (``tab``, ``\\t``), as one character. Raises
    :class:`ManifestError` for anything else."""
    chosen = DELIMITERS.get(text) or DELIMITERS.get(text.strip().lower())
    if chosen is None:
        raise ManifestError(f"--delimiter {text!r}: use ',', ';' or tab")
    return chosen


def detect_delimiter(header: str) -> str:
    r"""The separator of a CSV header line: ``;`` or a tab when the line splits by it into more
    known column names than by ``,``; else ``,``. Only the header counts, so cells of later rows
    that hold ``;`` (parameter JSON, descriptions) never sway it.

    >>> detect_delimiter("config_name;spec_id;config_desc"), detect_delimiter("config_name,config_desc")
    (';', ',')
    >>> detect_delimiter("config_name,param.a;b"), detect_delimiter("config_name\tparam.lr")
    (',', '\t')
    """
    known = {separator: _known_columns(header, separator) for separator in dict.fromkeys(DELIMITERS.values())}
    best = max(known, key=lambda separator: known[separator])  # the first of equals: the comma
    return best if known[best] > known[DEFAULT_DELIMITER] else DEFAULT_DELIMITER


def _known_columns(header: str, separator: str) -> int:
    """How many cells of the header line, split by ``separator``, name a column or a note."""
    return sum(1 for cell in _header_cells(header, separator)
               if (name := cell.strip().lower()) in COLUMNS or name.startswith(IGNORED_PREFIX)
               or (name.startswith(PARAM_PREFIX) and len(name) > len(PARAM_PREFIX)))


def _separator_hint(header: str) -> str:
    """For a header that stays one cell by commas but holds ``;`` or a tab: what to pass."""
    cells = _header_cells(header, DEFAULT_DELIMITER)
    for separator in (";", "\t"):
        if len(cells) == 1 and separator in cells[0]:
            flag = "';'" if separator == ";" else "tab"
            return f". Is the file separated by {_separator_name(separator)}? Pass --delimiter {flag}"
    return ""


def _header_cells(line: str, separator: str) -> list[str]:
    """The cells of a header line (one line: no CR or LF) split by ``separator``, quoted as CSV
    quotes; the line as one cell when the csv module refuses it (a cell over its field limit)."""
    try:
        return next(csv.reader([line], delimiter=separator), [])
    except csv.Error:
        return [line]


def _separator_name(separator: str) -> str:
    return {"\t": "tabs", ";": "';'"}.get(separator, repr(separator))


def _check_file(path: Path, suffix: str) -> None:
    """A manifest is a regular file, of a type batchcfg reads, and not empty."""
    try:
        status = path.stat()
    except FileNotFoundError:
        status = None
    except OSError as exc:
        raise cannot_read(path, exc) from None
    if status is not None and stat.S_ISDIR(status.st_mode):
        raise ManifestError(f"{path} is a directory: give the manifest file (.csv, .xlsx, .xlsm or .jsonl)")
    if status is not None and not stat.S_ISREG(status.st_mode):
        raise ManifestError(f"{path} is not a regular file (a pipe or a device?): give the manifest file")
    if suffix not in CSV_SUFFIXES + EXCEL_SUFFIXES + JSONL_SUFFIXES:
        raise ManifestError(f"{path}: unsupported file type {suffix or '(none)'!r}; "
                            "use .csv, .xlsx, .xlsm or .jsonl")
    if status is None:
        raise ManifestError(f"{path}: no such file")
    if status.st_size == 0:
        raise ManifestError(f"{path}: the file is empty")


def _open_elsewhere(path: Path) -> tuple[str, ...]:
    """A warning when a spreadsheet program has the file open: Excel's owner file ``~$<name>``
    (LibreOffice's ``.~lock.<name>#``) lies beside it while it does, and edits not yet saved are
    not in the file."""
    for owner, program in ((path.with_name("~$" + path.name), "Excel"),
                           (path.with_name(f".~lock.{path.name}#"), "LibreOffice")):
        if owner.exists():
            return (f"{path.name} is open in {program} ({owner.name} is beside it): edits not saved there "
                    "are not in the file this run reads",)
    return ()


def _starts_with_bom(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(len(codecs.BOM_UTF8)) == codecs.BOM_UTF8
    except OSError as exc:
        raise cannot_read(path, exc) from None


def _with_bom(encoding: str, bom: bool) -> str:
    """``--encoding utf-8`` reads a file with a byte order mark as ``utf-8-sig``: the mark is not
    part of the first header."""
    try:
        name = codecs.lookup(encoding).name
        b"x".decode(encoding, "replace")  # a codec that is no text encoding (base64) fails here
    except LookupError:
        raise ManifestError(f"unknown encoding {encoding!r}") from None
    return "utf-8-sig" if bom and name == "utf-8" else encoding


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


def _first_line(path: Path) -> bytes:
    """The header line of a CSV file, refused when too long before pandas builds a frame of it."""
    try:
        with path.open("rb") as handle:
            first = handle.readline(MAX_HEADER_BYTES + 1)
    except OSError as exc:
        raise cannot_read(path, exc) from None
    if len(first) > MAX_HEADER_BYTES and not first.endswith(b"\n"):
        raise ManifestError(f"{path}: the header (row 1) is longer than {MAX_HEADER_BYTES // 1024} KiB: "
                            "is it a manifest?")
    return first


def _check_header_width(path: Path, first: bytes, line: str, delimiter: str) -> None:
    """Refuse a CSV whose header is too wide before pandas builds a frame of it (a million empty
    columns took 80 s and 2 GB): its separators are counted (quoted ones only make the count high,
    never too low)."""
    if first.count(delimiter.encode()) + 1 > MAX_COLUMNS and len(_header_cells(line, delimiter)) > MAX_COLUMNS:
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
        raise cannot_read(path, exc) from None


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


def _read_csv(path: Path, encoding: str, delimiter: str, chunksize: int) -> Iterator[Any]:
    import pandas as pd

    try:
        reader = pd.read_csv(path, header=None, dtype=str, keep_default_na=False, na_filter=False,
                             skip_blank_lines=False, encoding=encoding, sep=delimiter, chunksize=chunksize)
        with reader:
            yield from reader
    except LookupError:
        raise ManifestError(f"unknown encoding {encoding!r}") from None
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: cannot be read as {_encoding_name(encoding)} ({exc.reason}); "
                            f"{_encoding_advice(path, encoding)}") from None
    except pd.errors.EmptyDataError:
        raise ManifestError(f"{path}: the file is empty") from None
    except pd.errors.ParserError as exc:
        raise ManifestError(f"{path}: malformed CSV: {one_line(exc)}") from None


def _encoding_name(encoding: str) -> str:
    return "UTF-8" if codecs.lookup(encoding).name in ("utf-8", "utf-8-sig") else encoding


def _encoding_advice(path: Path, tried: str) -> str:
    """What to pass: the likely encodings (:data:`LIKELY_ENCODINGS`) that decode the whole file."""
    fits = decodes_in(path, tried)
    if not fits:
        return "pass --encoding with the encoding it was saved in, for example --encoding gbk or --encoding cp1252"
    who = dict(LIKELY_ENCODINGS)
    named = " or ".join(f"{name} ({who[name]})" for name in fits)
    flags = " or ".join(f"--encoding {name}" for name in fits)
    return f"it reads as {named}: pass {flags}"


def decodes_in(path: Path, tried: str = DEFAULT_ENCODING) -> list[str]:
    """The encodings of :data:`LIKELY_ENCODINGS` but ``tried`` that decode the whole file. latin-1
    reads any bytes, so it is named only when cp1252, which differs from it only in the bytes
    0x80-0x9f, does not fit."""
    tried_name = codecs.lookup(tried).name.removesuffix("-sig")
    fits: list[str] = []
    for name, _ in LIKELY_ENCODINGS:
        if codecs.lookup(name).name == tried_name or (name == "latin-1" and "cp1252" in fits):
            continue
        decoder = codecs.getincrementaldecoder(name)()
        try:
            with path.open("rb") as handle:
                while block := handle.read(1 << 20):
                    decoder.decode(block)
                decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            continue
        except OSError:
            break
        fits.append(name)
    return fits


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
