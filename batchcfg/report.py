"""The report, one record per row, and the failed-row manifest, the rows left to fix.

The report (``.csv``, ``.jsonl``, ``.xlsx`` by extension) is written once the run ends, sorted by
row, atomically. The failed-row manifest (``--failed-manifest``) holds the invalid, failed and
cancelled rows in the input's own columns, plus ``#status`` and ``#error``, ready to fix and
feed back: the loader ignores ``#`` columns.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path

from .files import write_table
from .manifest import ERROR_MARKER, FAILED_MARKER, Manifest
from .model import OUTCOME_FIELDS, Outcome

COLUMNS = OUTCOME_FIELDS  # the report's columns: docs/contract.md's ten, then batchcfg's
REPORT_SUFFIXES = (".csv", ".jsonl", ".xlsx")
FAILED_SUFFIXES = (".csv", ".xlsx")  # what --failed-manifest writes
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


def write_report(path: str | Path, outcomes: Iterable[Outcome]) -> Path:
    """Write the outcomes, in the order given, to ``path`` (type by extension), atomically."""
    path = Path(path)
    write_table(path, COLUMNS, (_values(outcome) for outcome in outcomes), raw=path.suffix.lower() == ".jsonl")
    return path


def write_failed_manifest(manifest: Manifest, to_fix: Mapping[int, tuple[str, str]], path: Path) -> int:
    """Write the rows in ``to_fix`` (row -> status, error) in the input's own columns plus
    ``#status`` and ``#error``; returns how many were written. The manifest is read again rather
    than every row's cells kept in memory."""
    keep = [i for i, name in enumerate(manifest.columns) if name not in (FAILED_MARKER, ERROR_MARKER)]
    header = [manifest.header[i] for i in keep] + [FAILED_MARKER, ERROR_MARKER]

    def rows() -> Iterator[list[str]]:
        for row in manifest.rows():
            if row.number in to_fix:
                yield [row.values[i] for i in keep] + list(to_fix[row.number])

    write_table(path, header, rows())
    return len(to_fix)
