"""What a person sees when a run ends: the summary on stderr, the report's path on stdout, and
the diff of a small plan. With JSON logs, every line on stderr is a JSON object."""

from __future__ import annotations

import sys

from .logs import log
from .model import STATUSES, Outcome, Summary

PLAN_DIFF_ROWS = 20  # a plan of at most this many changed rows is shown as a diff on stderr


def say(text: str, *, json_logs: bool = False) -> None:
    """One summary line on stderr: ``batchcfg: ...``, or a JSON log line."""
    if json_logs:
        log.info(text)
    else:
        print(f"batchcfg: {text}", file=sys.stderr)


def show_summary(summary: Summary, *, json_logs: bool = False) -> None:
    """Counts per status, the most common errors, the sending, the files written."""
    def line(text: str) -> None:
        say(text, json_logs=json_logs)

    counts = ", ".join(f"{summary.counts[s]} {s}" for s in STATUSES if summary.counts[s]) or "no rows"
    rows = sum(summary.counts.values())
    line(f"{rows} row{'' if rows == 1 else 's'}: {counts}")
    if summary.error_codes:
        line("most common errors: " + ", ".join(f"{code} x{count}"
                                                for code, count in summary.error_codes.most_common(3)))
    if summary.requests:
        latency = (f"; latency p50 {summary.latency_p50 * 1000:.0f} ms, p95 {summary.latency_p95 * 1000:.0f} ms"
                   if summary.latency_p50 is not None and summary.latency_p95 is not None else "")
        line(f"{summary.requests} request{'' if summary.requests == 1 else 's'} ({summary.retries} retries) "
             f"in {summary.elapsed:.1f} s, "
             f"{summary.request_rate:.1f} requests/s{latency}")
    if summary.lowest_rate < summary.max_rate:
        line(f"throttled: the rate went down to {summary.lowest_rate:.2g}/s (asked for {summary.max_rate:g}/s)")
    if summary.stop_reason:
        line(f"stopped early: {summary.stop_reason}")
    if summary.failed_manifest is not None:
        line(f"rows to fix: {summary.failed_manifest}")
    if summary.output is not None:
        line(f"exported: {summary.output}")
    if summary.backup is not None and summary.backup.exists():
        line(f"backup (for rollback): {summary.backup}")
    line(f"report: {summary.report}")
    print(summary.report)


class PlanDiff:
    """The changes of a plan's first changed rows, shown on stderr when there are few."""

    def __init__(self, limit: int = PLAN_DIFF_ROWS) -> None:
        self.limit = limit
        self.changed: list[Outcome] = []

    def add(self, outcome: Outcome) -> None:
        if outcome.changes and len(self.changed) <= self.limit:
            self.changed.append(outcome)

    def show(self) -> None:
        for outcome in sorted(self.changed, key=lambda o: o.row)[:self.limit]:
            print(f"row {outcome.row} {outcome.config_name}:", file=sys.stderr)
            for change in outcome.changes.split("; "):
                print(f"    {change}", file=sys.stderr)
        if len(self.changed) > self.limit:
            print("... and more: the report's changes column has every one", file=sys.stderr)
