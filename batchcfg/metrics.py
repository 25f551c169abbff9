"""The end of a run, for monitoring: a Prometheus textfile-collector file (``--metrics-file``).

Written atomically (a temporary file, ``fsync``, then a rename), so that node_exporter never reads half a
file. ``batchcfg_last_success_timestamp_seconds`` is carried over from the previous file unless
this run succeeded entirely, so an alert can fire when no sweep has succeeded for a day.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from .errors import EXIT_OK
from .files import atomic_write
from .model import Summary

_LAST_SUCCESS = "batchcfg_last_success_timestamp_seconds"
_LAST_SUCCESS_RE = re.compile(rf"^{_LAST_SUCCESS}\s+([0-9.eE+-]+)\s*$", re.MULTILINE)


def write_metrics(path: Path, command: str, summary: Summary, now: float | None = None) -> None:
    now = time.time() if now is None else now
    last_success = now if summary.exit_code == EXIT_OK else _previous_success(path)
    label = f'command="{command}"'
    lines = [
        "# HELP batchcfg_rows Rows of the last run, by final status.",
        "# TYPE batchcfg_rows gauge",
        *(f'batchcfg_rows{{{label},status="{status}"}} {count}' for status, count in sorted(summary.counts.items())),
        "# HELP batchcfg_requests Requests (attempts) of the last run, by HTTP status; 0: no answer.",
        "# TYPE batchcfg_requests gauge",
        *(f'batchcfg_requests{{{label},http_status="{status}"}} {count}'
          for status, count in sorted(summary.http_statuses.items())),
        "# HELP batchcfg_retries Retried attempts of the last run.",
        "# TYPE batchcfg_retries gauge",
        f"batchcfg_retries{{{label}}} {summary.retries}",
        "# HELP batchcfg_run_duration_seconds Sending time of the last run.",
        "# TYPE batchcfg_run_duration_seconds gauge",
        f"batchcfg_run_duration_seconds{{{label}}} {summary.elapsed:.3f}",
        "# HELP batchcfg_exit_code Exit code of the last run.",
        "# TYPE batchcfg_exit_code gauge",
        f"batchcfg_exit_code{{{label}}} {summary.exit_code}",
        "# HELP batchcfg_last_run_timestamp_seconds When the last run ended.",
        "# TYPE batchcfg_last_run_timestamp_seconds gauge",
        f"batchcfg_last_run_timestamp_seconds {now:.3f}",
        "# HELP batchcfg_last_success_timestamp_seconds When a run last succeeded entirely.",
        "# TYPE batchcfg_last_success_timestamp_seconds gauge",
    ]
    if last_success is not None:
        lines.append(f"{_LAST_SUCCESS} {last_success:.3f}")
    with atomic_write(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")


def _previous_success(path: Path) -> float | None:
    try:
        match = _LAST_SUCCESS_RE.search(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return None
    return float(match.group(1)) if match else None
