"""Column-wise checks: a block of manifest rows checked column by column, with the results of
:func:`batchcfg.cells.check_row` row by row, at a fraction of its cost.

Each column of a block is checked once, for all its rows: lengths, integers, names, project
ids, OBS paths, images, characters JSON would have to escape, ``boot_file_url`` inside
``app_url``. A row that any of these checks flags, or that has a cell they do not read (a JSON
cell, a number written ``3.0``, a quote to escape), is checked by ``check_row`` itself, which
writes its messages. The other rows are grouped by which cells they fill (and by their ``unset``
cell): one row of each group goes through ``check_row``, which decides the rules between fields
(the code and data alternatives, required fields, ``unset``, the checks deferred to the current
config). When it passes, so does every row of its group, and its body, encoded, is the
template into which the group's bodies are written, byte for byte as
:meth:`batchcfg.merge.Patch.encode` writes them.

>>> from batchcfg.manifest import open_manifest
>>> manifest = open_manifest("samples/training_job_configs.csv")
>>> checked = [check_block(block, default_project="") for block in blocks(manifest)]
>>> sum(len(part) for part in checked), sum(body is not None for part in checked for body in part.bodies)
(15, 12)
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from itertools import repeat
from typing import Any

import numpy as np

from .cells import CheckedRow, check_row
from .errors import ManifestError
from .files import FORMULA_STARTS
from .manifest import CSV_SUFFIXES, IGNORED_PREFIX, JSONL_SUFFIXES, Manifest, _column_letter, _text, _unquote
from .merge import Patch
from .schema import (_IMAGE_RE, CONFIG_NAME_RE, INT32_MAX, INTEGER_FIELDS, JSON_FIELDS, MAX_CELL_CHARS,
                     MAX_DESC_CHARS, OBS_FIELDS, PARAM_PREFIX, PROJECT_ID_RE, STRING_FIELDS, UNSET_COLUMN,
                     describe)

Problems = tuple[tuple[str, str, str], ...]  # (column, code, message) of each problem of a row
DEFERRED_NOTE = "checked against the current config by plan and apply: "

# What a passing cell looks like. Each is stricter than the rules, never looser: a cell that is
# valid but odd (``03``, ``3.0``, a ``/./`` in a path, a quote) is checked row by row. None of
# them matches a new line, so that a column's cells joined by new lines are checked at once.
_INTEGER = {field: re.compile(r"[1-9][0-9]{0,%d}(?:\.0*)?" % (8 if maximum == INT32_MAX else 17))
            for field, maximum in INTEGER_FIELDS.items()}  # 9 digits < 2**31-1; 18 < 2**63-1
_OBS = re.compile(r"/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](?:/[^\n]*)?")  # and no // (_bad_paths)
_DOT_SEGMENT = re.compile(r"/\.\.?(?:/|$)")
_PLAIN = bytes(byte for byte in range(0x20, 0x100) if byte not in b'"\\\x7f')  # what JSON keeps as it is


@dataclass(frozen=True, slots=True)
class Block:
    """Non-empty manifest rows, column by column: their row numbers, and the text of each named
    column (``#`` columns left out), as :meth:`Manifest.rows` gives their cells."""

    numbers: list[int]
    cells: dict[str, np.ndarray]  # column name -> an object array of str, in file order

    def __len__(self) -> int:
        return len(self.numbers)

    def row(self, index: int) -> dict[str, str]:
        """One row's cells, as :meth:`Manifest.rows` gives them."""
        return {name: column[index] for name, column in self.cells.items()}


class Checked:
    """The checked rows of a block, column by column: what the spool keeps of each row (its
    config name, project id, encoded body and the body's SHA-256 when valid, problems, and the
    note on the checks deferred to the current config)."""

    __slots__ = ("numbers", "names", "projects", "bodies", "hashes", "problems", "notes")

    def __init__(self) -> None:
        self.numbers: list[int] = []
        self.names: list[str] = []
        self.projects: list[str] = []
        self.bodies: list[bytes | None] = []
        self.hashes: list[str] = []
        self.problems: list[Problems] = []
        self.notes: list[str] = []

    def __len__(self) -> int:
        return len(self.numbers)

    def __repr__(self) -> str:
        return f"Checked(rows={len(self)}, valid={sum(body is not None for body in self.bodies)})"

    def add(self, number: int, result: CheckedRow) -> None:
        """Append one row checked by :func:`~batchcfg.cells.check_row`."""
        self.numbers.append(number)
        for values, value in zip((self.names, self.projects, self.bodies, self.hashes, self.problems, self.notes),
                                 _record(result)):
            values.append(value)  # type: ignore[attr-defined]

    def put(self, index: int, result: CheckedRow) -> None:
        """Set row ``index`` to one row checked by :func:`~batchcfg.cells.check_row`."""
        (self.names[index], self.projects[index], self.bodies[index], self.hashes[index], self.problems[index],
         self.notes[index]) = _record(result)


def _record(result: CheckedRow) -> tuple[str, str, bytes | None, str, Problems, str]:
    """What the spool keeps of a row checked by :func:`~batchcfg.cells.check_row`: a valid row's
    body is its :class:`~batchcfg.merge.Patch` (with ``replace``, the whole body)."""
    body = Patch(result.body, result.labels, result.unset).encode() if result.ok else None
    return (result.config_name, result.project_id, body, hashlib.sha256(body).hexdigest() if body is not None else "",
            tuple((p.column, p.code, p.message) for p in result.problems), _note(result))


def blocks(manifest: Manifest) -> Iterator[Block]:
    """The manifest's non-empty rows in blocks, as :meth:`Manifest.rows` reads them: cells
    stripped, a batchcfg file's defusing quotes taken off (:attr:`Manifest.unquote`). A value in a
    column without a header is a :class:`ManifestError`, raised after the rows before it."""
    typed = manifest.path.suffix.lower() not in CSV_SUFFIXES
    names = manifest.columns
    for first, raw in manifest.blocks():
        columns = [_texts(values, typed) for values in raw]
        filled = np.zeros(len(columns[0]) if columns else 0, dtype=bool)
        for column in columns:
            filled |= column != ""
        rows = np.flatnonzero(filled)
        stray: tuple[int, int, int] | None = None  # the first value without a header: (its row's index, column, number)
        for position, (name, column) in enumerate(zip(names, columns)):
            found = np.flatnonzero(column[rows] != "") if not name else np.empty(0, dtype=np.int64)
            if len(found) and (stray is None or found[0] < stray[0]):
                stray = int(found[0]), position, first + int(rows[found[0]])
        if stray is not None:
            rows = rows[:stray[0]]
        cells = {}
        for name, column in zip(names, columns):
            if name and not name.startswith(IGNORED_PREFIX):
                texts = column[rows]
                if manifest.unquote and _any_startswith(texts, "'"):
                    texts = _array([_unquote(text) for text in texts])
                cells[name] = texts
        if len(rows):
            yield Block((rows + first).tolist(), cells)
        if stray is not None:
            raise ManifestError(f"{manifest.path}: row {stray[2]} has a value in column {_column_letter(stray[1])}, "
                                "which has no header")


def check_block(block: Block, *, default_project: str, project_required: bool = False,
                replace: bool = False) -> Checked:
    """Check every row of ``block``, column by column; the results are those of
    :func:`~batchcfg.cells.check_row` on each row (the same problems, bodies and notes)."""
    def by_row(index: int) -> CheckedRow:
        return check_row(block.row(index), default_project_id=default_project, project_required=project_required,
                         replace=replace)

    cells = block.cells
    present = {name: column != "" for name, column in cells.items()}
    flagged = np.zeros(len(block), dtype=bool)  # the rows to check row by row
    for name, column in cells.items():
        flagged |= _longer(column, MAX_DESC_CHARS if name == "config_desc" else MAX_CELL_CHARS)
    flagged |= ~_fullmatch(CONFIG_NAME_RE, cells["config_name"])
    projects = _projects(cells.get("project_id"), default_project, len(block))
    has_project = projects != ""
    flagged |= _failing(PROJECT_ID_RE, projects, has_project) | (~has_project & project_required)
    for name, column in cells.items():
        filled = present[name]
        if name in JSON_FIELDS:
            flagged |= filled
        elif name in INTEGER_FIELDS:
            flagged |= _failing(_INTEGER[name], column, filled)
        elif name in STRING_FIELDS or name.startswith(PARAM_PREFIX):
            flagged |= _escaped(column, filled)
            if name in OBS_FIELDS:
                flagged |= _bad_paths(column, filled)
            if name == "boot_file_url":
                flagged |= filled & _endswith(column, "/")
            if name == "user_image_url":
                flagged |= _failing(_IMAGE_RE, column, filled)
    if "app_url" in cells and "boot_file_url" in cells:
        both = np.flatnonzero(present["app_url"] & present["boot_file_url"] & ~flagged)
        flagged[both[~_inside(cells["boot_file_url"][both], cells["app_url"][both])]] = True

    names, bodies, hashes, notes = (np.full(len(block), "", dtype=object) for _ in range(4))
    digits = {name: _digits(cells[name]) for name in INTEGER_FIELDS if name in cells}
    for rows in _groups(cells, present, np.flatnonzero(~flagged), replace):
        first = by_row(int(rows[0]))  # the rules between fields decide alike for the whole group
        template = _template(first, cells, digits)
        if not first.ok or template.fill(rows[:1]) != [Patch(first.body, first.labels, first.unset).encode()]:
            flagged[rows] = True  # each row then says why
            continue
        names[rows] = cells["config_name"][rows]
        encoded = template.fill(rows)
        bodies[rows] = encoded
        hashes[rows] = [hashlib.sha256(body).hexdigest() for body in encoded]
        notes[rows] = _note(first)
    checked = Checked()
    checked.numbers = block.numbers
    checked.names, checked.projects, checked.bodies = names.tolist(), projects.tolist(), bodies.tolist()
    checked.hashes, checked.notes = hashes.tolist(), notes.tolist()
    checked.problems = [()] * len(block)
    for index in np.flatnonzero(flagged).tolist():
        checked.put(index, by_row(index))
    return checked


def defused(text: str) -> bool:
    """Whether a cell starts as :func:`batchcfg.files.spreadsheet_safe` defuses a formula: a
    ``'`` before ``=``, ``+``, ``-``, ``@``, a tab or a line break."""
    return text[:1] == "'" and text[1:2] != "" and text[1:2] in FORMULA_STARTS


def defused_cells(block: Block) -> Counter[str]:
    """How many cells of each column start with a defusing quote (:func:`defused`)."""
    found: Counter[str] = Counter()
    for name, column in block.cells.items():
        if _any_startswith(column, "'"):
            count = sum(map(defused, column))
            if count:
                found[name] += count
    return found


def defused_notes(manifest: Manifest, counts: Mapping[str, int]) -> list[str]:
    """A note for each column (in the file's order) with cells that start with a defusing quote,
    in a manifest whose quotes are not taken off (:attr:`Manifest.unquote`): its marker column
    (``#exported``, ``#status``) was deleted, or it was never batchcfg's. JSON lines are never
    defused."""
    if manifest.unquote or manifest.path.suffix.lower() in JSONL_SUFFIXES:
        return []
    return [f"{name}: {counts[name]} {'cell starts' if counts[name] == 1 else 'cells start'} with a quote before "
            "a formula character ('=, '+, '-, '@, a tab or a line break), sent as typed: from a batchcfg export "
            "or failed-row manifest? Put back its #exported or #status column to take the quotes off"
            for name in dict.fromkeys(manifest.columns) if counts.get(name)]


class _Template:
    """The encoded bodies of a group of rows: constant text around the cells of some columns."""

    def __init__(self) -> None:
        self.parts: list[str] = ["{"]  # text, a column's cell, text, ...
        self.columns: list[np.ndarray] = []

    def text(self, text: str) -> None:
        self.parts[-1] += text

    def cell(self, column: np.ndarray) -> None:
        self.columns.append(column)
        self.parts.append("")

    def fill(self, rows: np.ndarray) -> list[bytes]:
        """The bodies of ``rows``."""
        if not self.columns:  # rows that set no field: they clear some, or name none
            return [(self.parts[0] + "}").encode()] * len(rows)
        pieces: list[Iterable[str]] = []
        for text, column in zip(self.parts, self.columns):
            pieces += [repeat(text), column[rows]]
        pieces.append(repeat(self.parts[-1] + "}"))
        return [body.encode() for body in map("".join, zip(*pieces))]


def _template(first: CheckedRow, cells: Mapping[str, np.ndarray], digits: Mapping[str, np.ndarray]) -> _Template:
    """What :meth:`Patch.encode` writes for the rows that fill the cells ``first`` fills: field
    names and punctuation, and where each cell goes."""
    template = _Template()

    def key(name: str) -> None:
        template.text(("," if template.parts != ["{"] else "") + _json(name) + ":")

    def string(column: str) -> None:
        template.text('"')
        template.cell(cells[column])
        template.text('"')

    for name, value in first.body.items():
        key(name)
        if name == "parameter":  # the whole list, from param.<label> cells (a JSON cell is checked row by row)
            template.text("[")
            for position, entry in enumerate(value):
                template.text(("," if position else "") + '{"label":' + _json(entry["label"]) + ',"value":')
                string(PARAM_PREFIX + entry["label"])
                template.text("}")
            template.text("]")
        elif name in INTEGER_FIELDS:
            template.cell(digits[name])
        else:
            string(name)
    for label in first.labels:
        key(PARAM_PREFIX + label)
        string(PARAM_PREFIX + label)
    if first.unset:
        key(UNSET_COLUMN)
        template.text(_json(list(first.unset)))
    return template


def _groups(cells: Mapping[str, np.ndarray], present: Mapping[str, np.ndarray], rows: np.ndarray,
            replace: bool) -> list[np.ndarray]:
    """``rows`` grouped by the cells they fill (config name and project id aside) and, unless
    ``replace``, by their ``unset`` cell: rows whose fields the rules treat alike."""
    if not len(rows):
        return []
    filled = [column[rows] for name, column in present.items() if name not in ("config_name", "project_id", UNSET_COLUMN)]
    keys = np.packbits(np.stack(filled, axis=1), axis=1) if filled else np.zeros((len(rows), 1), dtype=np.uint8)
    if keys.shape[1] <= 8:  # up to 64 columns: one integer a row, much faster to sort than rows of bytes
        group: np.ndarray = np.pad(keys, ((0, 0), (0, 8 - keys.shape[1]))).view(np.int64).reshape(-1)
    else:
        group = np.unique(keys, axis=0, return_inverse=True)[1].reshape(-1)
    if UNSET_COLUMN in cells and not replace:
        group = np.unique(group, return_inverse=True)[1].reshape(-1)
        unset = np.unique(cells[UNSET_COLUMN][rows], return_inverse=True)[1].reshape(-1)
        group = group * (int(unset.max()) + 1) + unset
    if (group == group[0]).all():
        return [rows]
    order = np.argsort(group, kind="stable")
    return [rows[part] for part in np.split(order, np.flatnonzero(np.diff(group[order])) + 1)]


def _note(result: CheckedRow) -> str:
    return DEFERRED_NOTE + describe(list(result.deferred)) if result.ok and result.deferred else ""


def _projects(column: np.ndarray | None, default: str, size: int) -> np.ndarray:
    """Each row's project id: its cell, else ``default`` (which may be empty)."""
    if column is None:
        return np.full(size, default, dtype=object)
    return np.where(column != "", column, default) if default else column


def _texts(values: Sequence[Any], typed: bool) -> np.ndarray:
    """A column's cells as stripped text, as :meth:`Manifest.rows` reads them."""
    if not typed:
        try:
            return _array(list(map(str.strip, values)))
        except TypeError:  # not all str: read as a typed file's
            pass
    return _array([value.strip() if value.__class__ is str else _text(value) for value in values])


def _array(texts: list[str]) -> np.ndarray:
    """An object array of the strings (``np.array`` would make a fixed-width string array)."""
    array = np.empty(len(texts), dtype=object)
    array[:] = texts
    return array


def _lengths(column: np.ndarray) -> np.ndarray:
    return np.fromiter(map(len, column), dtype=np.int64, count=len(column))


def _longer(column: np.ndarray, limit: int) -> np.ndarray:
    """The cells longer than ``limit`` characters."""
    if not len(column) or max(map(len, column)) <= limit:
        return np.zeros(len(column), dtype=bool)
    return _lengths(column) > limit


def _fullmatch(regex: re.Pattern[str], column: np.ndarray) -> np.ndarray:
    """Whether each cell matches ``regex`` whole. The column's distinct cells are first matched
    at once, joined by new lines (``regex`` matches none): when that passes, so does every cell."""
    distinct = set(column)
    joined = "\n".join(distinct)
    if joined.count("\n") == len(distinct) - 1 and _joined(regex).fullmatch(joined):
        return np.ones(len(column), dtype=bool)
    match = regex.fullmatch
    return np.fromiter((match(text) is not None for text in column), dtype=bool, count=len(column))


@cache
def _joined(regex: re.Pattern[str]) -> re.Pattern[str]:
    return re.compile(f"(?:{regex.pattern})(?:\n(?:{regex.pattern}))*+")


def _failing(regex: re.Pattern[str], column: np.ndarray, filled: np.ndarray) -> np.ndarray:
    """The filled cells that ``regex`` does not match whole."""
    rows = np.flatnonzero(filled)
    failing = np.zeros(len(column), dtype=bool)
    failing[rows] = ~_fullmatch(regex, column[rows])
    return failing


def _bad_paths(column: np.ndarray, filled: np.ndarray) -> np.ndarray:
    """The filled cells that are not OBS paths ``/bucket/key`` without ``//``, ``.`` or ``..``
    segments (stricter than ``schema._check_obs_path``: no scheme, no ``/./``, no ``/../``)."""
    failing = _failing(_OBS, column, filled)
    joined = "\n".join(column)
    if "//" in joined or "/." in joined:
        search = _DOT_SEGMENT.search
        failing |= filled & np.fromiter(("//" in text or search(text) is not None for text in column), dtype=bool,
                                        count=len(column))
    return failing


def _escaped(column: np.ndarray, filled: np.ndarray) -> np.ndarray:
    """The filled cells with a character JSON escapes (``"``, ``\\``, control characters)."""
    if not _unplain("".join(column)):
        return np.zeros(len(column), dtype=bool)
    escaped: np.ndarray = filled & np.fromiter(map(_unplain, column), dtype=bool, count=len(column))
    return escaped


def _unplain(text: str) -> bool:
    """Whether ``text`` has a character JSON escapes (``bytes.translate`` is ten times faster
    than a regular expression at this)."""
    return bool(text.encode("utf-8", "surrogatepass").translate(None, _PLAIN))


def _endswith(column: np.ndarray, suffix: str) -> np.ndarray:
    if not ("\n".join(column) + "\n").count(suffix + "\n"):
        return np.zeros(len(column), dtype=bool)
    return np.fromiter((text.endswith(suffix) for text in column), dtype=bool, count=len(column))


def _any_startswith(column: np.ndarray, prefix: str) -> bool:
    """Whether any cell starts with ``prefix`` (or, rarely, has it after an inner new line)."""
    return ("\n" + "\n".join(column)).find("\n" + prefix) >= 0


def _inside(boot: np.ndarray, app: np.ndarray) -> np.ndarray:
    """Whether each boot file lies inside its code directory, as ``schema._check_code`` sees it."""
    if all(b.startswith(a if a.endswith("/") else a + "/") for b, a in set(zip(boot, app))):
        return np.ones(len(boot), dtype=bool)
    return np.fromiter((b.startswith(a if a.endswith("/") else a + "/") for b, a in zip(boot, app)),
                       dtype=bool, count=len(boot))


def _digits(column: np.ndarray) -> np.ndarray:
    """An integer column's cells as JSON writes their values (``3.0`` -> ``3``), for the cells
    the checks pass (no sign, no leading zero)."""
    if "." not in "".join(column):
        return column
    return _array([text.partition(".")[0] for text in column])


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
