"""The report, one record per row, and the failed-row manifest, the rows left to fix.

The report (``.csv``, ``.jsonl``, ``.xlsx`` by extension) is written once the run ends, sorted by
row, atomically. The failed-row manifest (``--failed-manifest``) holds the invalid, failed and
cancelled rows in the input's own columns, plus ``#status`` and ``#error``, ready to fix and
feed back: the loader ignores ``#`` columns. Both open well in Excel: a CSV file has a byte order
mark when the manifest had one (``bom``), and in an ``.xlsx`` file the header is frozen, filtered
and sized, and the cells that were numbers in the manifest are numbers again.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .change import render
from .files import write_table
from .journal import journal_path
from .manifest import ERROR_MARKER, FAILED_MARKER, Manifest
from .model import OUTCOME_FIELDS, Outcome
from .text import printable

COLUMNS = OUTCOME_FIELDS  # the report's columns: docs/contract.md's ten, then batchcfg's
REPORT_SUFFIXES = (".csv", ".jsonl", ".xlsx")
FAILED_SUFFIXES = (".csv", ".xlsx")  # what --failed-manifest writes
REPORT_SHEET = "report"  # the sheet of an .xlsx report
FAILED_SHEET = "failed rows"  # the sheet of an .xlsx failed-row manifest, unless the manifest's sheet name fits
_EXCEL_FORBIDDEN = frozenset("[]:*?/\\")  # characters Excel refuses in a sheet name
_values = operator.attrgetter(*COLUMNS)  # an Outcome's values in column order (asdict is slow)
_CHANGES = COLUMNS.index("changes")
_NAME = COLUMNS.index("config_name")


def _record(outcome: Outcome) -> list[Any]:
    """An outcome's cells: its values in column order, the changes in their text form
    (:mod:`batchcfg.change`), an invalid row's name with its control and bidi characters written
    out (a valid name has none)."""
    values = list(_values(outcome))
    values[_CHANGES] = render(outcome.changes)
    values[_NAME] = printable(outcome.config_name)
    return values


def default_report_path(directory: Path = Path(), now: datetime | None = None) -> Path:
    """``batchcfg-report-{UTC time}.csv`` in ``directory``; ``-2``, ``-3``, ... after the time when
    another run of the same second has that name (or its journal)."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    return _free(lambda suffix: directory / f"batchcfg-report-{stamp}{suffix}.csv",
                 lambda path: path.exists() or journal_path(path).exists())


def reserve_default_report(directory: Path = Path()) -> Path:
    """A default report name no other run has, taken now: the file is created, empty, exclusively
    (runs started in the same second each get their own); the report replaces it at the end."""
    while True:
        path = default_report_path(directory)
        try:
            path.open("x").close()
        except FileExistsError:
            continue  # another run took it between the look and the take
        return path


def default_backup_path(report: Path) -> Path:
    """``batchcfg-backup-{UTC time}.jsonl`` beside the report (its time, for a default report),
    with ``-2``, ``-3``, ... when that name is taken: a new run never adds to another's backup."""
    if report.stem.startswith("batchcfg-report-"):
        stamp = report.stem.removeprefix("batchcfg-report-")
    else:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return _free(lambda suffix: report.with_name(f"batchcfg-backup-{stamp}{suffix}.jsonl"), Path.exists)


def _free(name: Callable[[str], Path], taken: Callable[[Path], bool]) -> Path:
    path, number = name(""), 1
    while taken(path):
        number += 1
        path = name(f"-{number}")
    return path


def write_report(path: str | Path, outcomes: Iterable[Outcome], *, bom: bool = False,
                 sheet: str = REPORT_SHEET) -> Path:
    """Write the outcomes, in the order given, to ``path`` (type by extension), atomically. A
    ``.csv`` report starts with a byte order mark when ``bom`` (pass the manifest's
    :attr:`~batchcfg.manifest.Manifest.bom`); an ``.xlsx`` report's sheet is named ``sheet``."""
    path = Path(path)
    write_table(path, COLUMNS, (_record(outcome) for outcome in outcomes), raw=path.suffix.lower() == ".jsonl",
                bom=bom, sheet=sheet)
    return path


def write_failed_manifest(manifest: Manifest, to_fix: Mapping[int, tuple[str, str]], path: Path) -> int:
    """Write the rows in ``to_fix`` (row -> status, error) in the input's own columns plus
    ``#status`` and ``#error``; returns how many were written. The manifest is read again rather
    than every row's cells kept in memory. A ``.csv`` file starts with a byte order mark when the
    manifest did; in an ``.xlsx`` file, the cells that were numbers in the manifest are numbers,
    on a sheet named as the manifest's (when Excel allows the name) or ``failed rows``."""
    keep = [i for i, name in enumerate(manifest.columns) if name not in (FAILED_MARKER, ERROR_MARKER)]
    header = [manifest.header[i] for i in keep] + [FAILED_MARKER, ERROR_MARKER]
    numbers = path.suffix.lower() == ".xlsx"

    def rows() -> Iterator[list[Any]]:
        for row in manifest.rows():
            if row.number in to_fix:
                values: list[Any] = list(row.values)
                if numbers:
                    for i in row.numeric:
                        values[i] = _number(values[i])
                yield [values[i] for i in keep] + list(to_fix[row.number])

    write_table(path, header, rows(), bom=manifest.bom, sheet=_failed_sheet(manifest))
    return len(to_fix)


def _number(text: str) -> Any:
    """The number a cell's text was made from (``str`` of an ``int`` or a ``float``); other text as it is."""
    try:
        return int(text) if text.lstrip("-").isdigit() else float(text)
    except ValueError:
        return text


def _failed_sheet(manifest: Manifest) -> str:
    """The manifest's sheet name, so that ``--sheet NAME`` finds the failed rows too, when Excel
    allows it as a name; else ``failed rows``."""
    name = manifest.sheet
    if (isinstance(name, str) and name and len(name) <= 31 and not _EXCEL_FORBIDDEN.intersection(name)
            and not name.startswith("'") and not name.endswith("'") and name.lower() != "history"):
        return name
    return FAILED_SHEET
