"""Per-row results and the report files that hold them (``.csv``, ``.jsonl``, ``.xlsx``).

CSV and XLSX cells that a spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``,
``@``, tab, carriage return or line feed) get a leading ``'``, as OWASP advises; JSONL keeps
values raw, for programs.

>>> outcome = Outcome(row=2, config_name="resnet", project_id="p", status=SUCCEEDED, attempts=1)
>>> write_report("report.csv", [outcome])  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import UsageError

SUCCEEDED = "succeeded"
FAILED = "failed"
INVALID = "invalid"
CANCELLED = "cancelled"
SKIPPED = "skipped"
VALID = "valid"
STATUSES = (SUCCEEDED, FAILED, INVALID, CANCELLED, SKIPPED, VALID)
REPORT_SUFFIXES = (".csv", ".jsonl", ".xlsx")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")


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


COLUMNS = tuple(f.name for f in fields(Outcome))


def default_report_path(now: datetime | None = None) -> Path:
    """``batchcfg-report-{UTC time}.csv`` in the current directory."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    return Path(f"batchcfg-report-{stamp}.csv")


def check_report_path(path: Path) -> Path:
    """Refuse a report path whose type we cannot write, before any work is done."""
    if path.suffix.lower() not in REPORT_SUFFIXES:
        raise UsageError(f"--report {path}: use a .csv, .jsonl or .xlsx file name")
    if not path.parent.is_dir():
        raise UsageError(f"--report {path}: no such directory {str(path.parent)!r}")
    return path


def write_report(path: str | Path, outcomes: Iterable[Outcome]) -> Path:
    """Write the outcomes, in the order given, to ``path`` (type by extension)."""
    path = Path(path)
    suffix = path.suffix.lower()
    records = (asdict(outcome) for outcome in outcomes)
    if suffix == ".jsonl":
        with path.open("w", encoding="utf-8", newline="\n") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    elif suffix == ".xlsx":
        _write_xlsx(path, records)
    else:
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(COLUMNS)
            for record in records:
                writer.writerow(spreadsheet_safe(record[name]) for name in COLUMNS)
    return path


def _write_xlsx(path: Path, records: Iterable[dict[str, Any]]) -> None:
    import xlsxwriter

    workbook = xlsxwriter.Workbook(str(path), {"constant_memory": True,
                                               "strings_to_formulas": False,
                                               "strings_to_urls": False,
                                               "strings_to_numbers": False})
    try:
        sheet = workbook.add_worksheet("report")
        sheet.write_row(0, 0, COLUMNS)
        for number, record in enumerate(records, start=1):
            sheet.write_row(number, 0, [spreadsheet_safe(record[name]) for name in COLUMNS])
    finally:
        workbook.close()


def spreadsheet_safe(value: Any) -> Any:
    """A value fit for a spreadsheet cell: text that would start a formula gets a leading ``'``;
    None becomes an empty cell."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value
