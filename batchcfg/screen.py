"""What a person sees when a run ends: the summary on stderr, the report's path on stdout.

The summary reads at a glance: counts per status (conflicts on a line of their own), the rows
with errors grouped by code (a few of each, and how many more), what changes field by field
(``spec_id: 1 -> 2  x280``), the sending, the files written, and what to run next. On a
terminal it has colour, unless ``NO_COLOR`` is set; piped, in cron or with JSON logs, none, and
with JSON logs every line on stderr is a JSON object.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Sequence
from .logs import log
from .merge import UNSET
from .model import CONFLICT, STATUSES, Outcome, Summary

PLAN_DIFF_ROWS = 20  # a plan of at most this many changed rows is shown as a diff on stderr
ERROR_CODES_SHOWN, ERROR_ROWS_SHOWN = 5, 3
CHANGE_LINES_SHOWN = 12
_COLOURS = {"red": "31", "green": "32", "yellow": "33", "bold": "1", "dim": "2"}


class Screen:
    """Lines for stderr: ``batchcfg: ...`` text, in colour on a terminal, or JSON log lines."""

    def __init__(self, *, json_logs: bool = False) -> None:
        self.json_logs = json_logs
        self.colour = not json_logs and sys.stderr.isatty() and not os.environ.get("NO_COLOR")

    def paint(self, text: str, colour: str) -> str:
        return f"\x1b[{_COLOURS[colour]}m{text}\x1b[0m" if self.colour else text

    def say(self, text: str, indent: int | None = None) -> None:
        """A summary line (``batchcfg: ...``), or with ``indent`` a line of a listing under it."""
        if self.json_logs:
            log.info(text.strip())
        else:
            print(("batchcfg: " if indent is None else "    " * indent) + text, file=sys.stderr)


def say(text: str, *, json_logs: bool = False) -> None:
    """One summary line on stderr: ``batchcfg: ...``, or a JSON log line."""
    Screen(json_logs=json_logs).say(text)


def show_summary(summary: Summary, *, json_logs: bool = False, next_step: str = "") -> None:
    """The end-of-run summary; ``next_step`` is a command to run next (how to resume)."""
    screen = Screen(json_logs=json_logs)
    rows = sum(summary.counts.values())
    counts = ", ".join(f"{summary.counts[s]} {s}" for s in STATUSES if summary.counts[s] and s != CONFLICT)
    screen.say(f"{rows} row{'' if rows == 1 else 's'}: {counts or 'none'}")
    if summary.counts[CONFLICT]:
        screen.say(screen.paint(f"{summary.counts[CONFLICT]} conflict{'' if summary.counts[CONFLICT] == 1 else 's'}: "
                                "changed since, not sent (rollback: --force sends anyway; a saved plan: plan "
                                "again)", "red"))
    _show_errors(screen, summary)
    _show_changes(screen, summary)
    if summary.requests:
        latency = (f"; latency p50 {summary.latency_p50 * 1000:.0f} ms, p95 {summary.latency_p95 * 1000:.0f} ms"
                   if summary.latency_p50 is not None and summary.latency_p95 is not None else "")
        screen.say(f"{summary.requests} request{'' if summary.requests == 1 else 's'} ({summary.retries} retries) "
                   f"in {summary.elapsed:.1f} s, {summary.request_rate:.1f} requests/s{latency}")
    if summary.lowest_rate < summary.max_rate:
        screen.say(f"throttled: the rate went down to {summary.lowest_rate:.2g}/s (asked for {summary.max_rate:g}/s)")
    if summary.stop_reason:
        screen.say(screen.paint(f"stopped early: {summary.stop_reason}", "yellow"))
    for note in summary.notes:
        screen.say(screen.paint(note, "yellow"))
    for label, path in (("rows to fix", summary.failed_manifest), ("exported", summary.output),
                        ("saved plan (for apply)", summary.saved_plan), ("page", summary.page),
                        ("backup (for rollback)", summary.backup if summary.backup and summary.backup.exists() else None),
                        ("report", summary.report)):
        if path is not None:
            screen.say(f"{label}: {path}")
    if next_step:
        screen.say(screen.paint(f"next: {next_step}", "bold"))
    print(summary.report)


def _show_errors(screen: Screen, summary: Summary) -> None:
    """The rows with errors, grouped by code: a few of each, and how many more."""
    codes = [(code, count) for code, count in summary.error_codes.most_common() if code in summary.error_rows]
    for code, count in codes[:ERROR_CODES_SHOWN]:
        screen.say(screen.paint(f"{code} x{count}", "red"))
        for row, name, message in summary.error_rows[code][:ERROR_ROWS_SHOWN]:
            screen.say(f"row {row} {name}: {message}", indent=1)
        if count > ERROR_ROWS_SHOWN:
            screen.say(screen.paint(f"... and {count - ERROR_ROWS_SHOWN} more", "dim"), indent=1)
    rest = codes[ERROR_CODES_SHOWN:]
    if rest:
        screen.say(f"... and {sum(count for _, count in rest)} more rows with {len(rest)} other error codes: "
                   "see the report")


def _show_changes(screen: Screen, summary: Summary) -> None:
    """What changes, field by field, with the number of rows each: ``spec_id: 1 -> 2  x280``."""
    if not summary.change_totals:
        return
    screen.say("changes:")
    lines = summary.change_totals.most_common()
    for change, count in lines[:CHANGE_LINES_SHOWN]:
        screen.say(f"{screen.paint(change, _colour_of(change))}  x{count}", indent=1)
    if len(lines) > CHANGE_LINES_SHOWN:
        more = sum(count for _, count in lines[CHANGE_LINES_SHOWN:])
        screen.say(screen.paint(f"... and {len(lines) - CHANGE_LINES_SHOWN} more kinds of change ({more} in all): "
                                "the report's changes column has every one", "dim"), indent=1)


def resume_command(command: str, argv: Sequence[str], summary: Summary) -> str:
    """After an apply that was interrupted or left rows failed or cancelled: the command that
    resumes it (the same one, with ``--resume`` the report; a new report of its own)."""
    if command != "apply" or not (summary.interrupted or summary.counts["failed"] or summary.counts["cancelled"]):
        return ""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--resume", "--report"):
            skip = True
        elif not arg.startswith(("--resume=", "--report=", "--overwrite")):
            kept.append(arg)
    again = ["--overwrite"] if summary.failed_manifest is not None else []  # its rows to fix, anew
    return "to resume: " + shlex.join(["batchcfg", *kept, *again, "--resume", str(summary.report)])


class PlanDiff:
    """The changes of a plan's changed rows, shown row by row on stderr when there are few (the
    totals say it better when there are many)."""

    def __init__(self, limit: int = PLAN_DIFF_ROWS) -> None:
        self.limit = limit
        self.changed: list[Outcome] = []

    def add(self, outcome: Outcome) -> None:
        if outcome.changes and len(self.changed) <= self.limit:
            self.changed.append(outcome)

    def show(self, *, json_logs: bool = False) -> None:
        if len(self.changed) > self.limit:
            return
        screen = Screen(json_logs=json_logs)
        for outcome in sorted(self.changed, key=lambda o: o.row):
            screen.say(f"row {outcome.row} {outcome.config_name}:", indent=0)
            for change in outcome.changes.split("; "):
                screen.say(screen.paint(change, _colour_of(change)), indent=1)


def _colour_of(change: str) -> str:
    """Removals red, additions green, changes yellow."""
    return "red" if change.endswith(f"-> {UNSET}") else "green" if f": {UNSET} -> " in change else "yellow"
