"""What a person sees when a run ends: the summary on stderr, the report's path on stdout.

The summary reads at a glance: a plan's headline (``plan: 2 to create, 40 to change, ...``),
counts per status (conflicts on a line of their own), the rows with errors grouped by code (the
first few of each, and exactly how many more), what changes field by field, fields that lose
values first (``log_url: removed x8, changed x3``, then ``"/a/" -> (unset)  x1`` under it), the
configs to create per field, the empty cells that kept their values, the read-backs, the sending,
the files written, and what to run next. Everything is drawn from the run's records
(:class:`~batchcfg.change.Change`, :class:`~batchcfg.change.Totals`), never from text taken
apart. On a terminal it has colour, unless ``NO_COLOR`` is set; piped, in cron or with JSON logs,
none, and with JSON logs every line on stderr is a JSON object.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .change import ADD, REMOVE, field_kind, render, summed
from .errors import CANCELLED as CANCELLED_CODE
from .errors import NOT_APPLIED
from .logs import log
from .model import CONFLICT, STATUSES, Outcome, Summary

PLAN_DIFF_ROWS = 20  # a plan of at most this many changed rows is shown as a diff on stderr
ERROR_CODES_SHOWN, ERROR_ROWS_SHOWN = 5, 3
FIELDS_SHOWN, VALUES_SHOWN, CREATED_FIELDS_SHOWN = 12, 3, 8  # fields that lose values are shown whatever the bound
VALUE_CHARS = 60
HEADLINE = (("create", "to create"), ("change", "to change"), ("unchanged", "unchanged"), ("missing", "missing"),
            ("invalid", "invalid"), ("conflict", "in conflict"), ("failed", "failed to read"),
            ("cancelled", "cancelled"))
_COLOURS = {"red": "31", "green": "32", "yellow": "33", "bold": "1", "dim": "2"}


class Screen:
    """Lines for stderr: ``batchcfg: ...`` text, in colour on a terminal, or JSON log lines."""

    def __init__(self, *, json_logs: bool = False) -> None:
        self.json_logs = json_logs
        self.colour = not json_logs and sys.stderr.isatty() and not os.environ.get("NO_COLOR")

    def paint(self, text: str, colour: str) -> str:
        return f"\x1b[{_COLOURS[colour]}m{text}\x1b[0m" if self.colour else text

    def say(self, text: str, indent: int | None = None, *, level: int = logging.INFO, **fields: Any) -> None:
        """A summary line (``batchcfg: ...``), or with ``indent`` a line of a listing under it;
        with JSON logs, a JSON line of ``level`` with ``fields``."""
        if self.json_logs:
            log.log(level, "%s", text.strip(), extra={"fields": fields})
        else:
            print(("batchcfg: " if indent is None else "    " * indent) + text, file=sys.stderr)


def say(text: str, *, json_logs: bool = False, level: int = logging.INFO, **fields: Any) -> None:
    """One line on stderr: ``batchcfg: ...``, or a JSON log line of ``level`` with ``fields``."""
    Screen(json_logs=json_logs).say(text, level=level, **fields)


def failed(message: str, exit_code: int, *, json_logs: bool = False) -> None:
    """The one line of an error that stops the run (``batchcfg: error: ...``), or its JSON line
    (level ``error``, event ``error``, with the exit code)."""
    if json_logs:
        from .logs import JsonFormatter

        record = logging.LogRecord(log.name, logging.ERROR, __file__, 0, message, None, None)
        record.fields = {"event": "error", "exit_code": exit_code}
        print(JsonFormatter().format(record), file=sys.stderr)
    else:
        print(f"batchcfg: error: {message}", file=sys.stderr)


def headline_text(headline: dict[str, int]) -> str:
    """``plan: 2 to create, 40 to change, 255 unchanged, 3 missing, 0 invalid, 0 in conflict; 8 rows
    to change lose a value``."""
    parts = ", ".join(f"{headline[key]:,} {words}" for key, words in HEADLINE if key in headline)
    lose = headline["lose_a_value"]
    return f"plan: {parts}; {lose:,} {'row' if lose == 1 else 'rows'} to change {'loses' if lose == 1 else 'lose'} a value"


def show_summary(summary: Summary, *, json_logs: bool = False, next_step: str = "") -> None:
    """The end-of-run summary on stderr (with JSON logs, :func:`log_summary`), and the report's
    path on stdout; ``next_step`` is a command to run next (how to resume)."""
    if json_logs:
        log_summary(summary, next_step)
        print(summary.report)
        return
    screen = Screen()
    if summary.command == "plan":
        screen.say(screen.paint(headline_text(summary.headline), "bold"))
    rows = sum(summary.counts.values())
    counts = ", ".join(f"{summary.counts[s]} {s}" for s in STATUSES if summary.counts[s] and s != CONFLICT)
    screen.say(f"{rows} row{'' if rows == 1 else 's'}: {counts or 'none'}")
    if summary.counts[CONFLICT]:
        screen.say(screen.paint(f"{summary.counts[CONFLICT]} conflict{'' if summary.counts[CONFLICT] == 1 else 's'}: "
                                "changed since, not sent (rollback: --force sends anyway, but never deletes; "
                                "a saved plan: plan again)", "red"))
    _show_errors(screen, summary)
    _show_changes(screen, summary)
    if summary.kept_cells:
        screen.say(screen.paint(
            f"{summary.kept_cells:,} empty cell{'' if summary.kept_cells == 1 else 's'} in {summary.kept_rows:,} "
            f"row{'' if summary.kept_rows == 1 else 's'} kept the config's value (a row changes only what it names): "
            "to clear a field, name it in the row's unset column", "yellow"))
    if summary.verified:
        normalised = ", ".join(f"{name} x{count}" for name, count in summary.normalised.most_common(8))
        lost = summary.error_codes[NOT_APPLIED]
        screen.say(f"read back after the change: {summary.verified:,} row{'' if summary.verified == 1 else 's'}"
                   + (f"; {lost:,} not as sent ({NOT_APPLIED})" if lost else "")
                   + (f"; the server keeps {normalised} otherwise than sent (not changed by those rows)"
                      if normalised else "" if lost else ", as sent"))
    if summary.requests:
        screen.say(sending_line(summary))
    if summary.lowest_rate < summary.max_rate:
        screen.say(f"throttled: the rate went down to {summary.lowest_rate:.2g}/s (asked for {summary.max_rate:g}/s)")
    if summary.stop_reason:
        screen.say(screen.paint(f"stopped early: {summary.stop_reason}", "yellow"))
    for note in summary.notes:
        screen.say(screen.paint(note, "yellow"))
    for label, path in files(summary).items():
        if label != "report" or not sys.stdout.isatty():  # at a terminal, stdout shows it below
            screen.say(f"{label}: {path}")
    if next_step:
        screen.say(screen.paint(f"next: {next_step}", "bold"))
    print(summary.report)


def files(summary: Summary) -> dict[str, Path]:
    """The files the run wrote, by what they are."""
    found = {"rows to fix": summary.failed_manifest, "exported": summary.output,
             "saved plan (for apply)": summary.saved_plan, "page": summary.page, "metrics": summary.metrics,
             "backup (for rollback)": summary.backup if summary.backup and summary.backup.exists() else None,
             "report": summary.report}
    return {label: path for label, path in found.items() if path is not None}


def log_summary(summary: Summary, next_step: str = "") -> None:
    """The end of a run as JSON log lines: each error code's rows (``warning``; cancelled rows are
    counted in the summary, and resumed), why the run
    stopped early (``error``), the notes (``warning``), what to run next, and one ``summary``
    event with the counts, the exit code, the files, the requests and the rates (``info``;
    ``warning`` when rows are to fix, ``error`` when the run stopped early or was interrupted)."""
    for code, count in summary.ranked_codes():
        if code in summary.error_rows and code != CANCELLED_CODE:
            first = [{"row": row, "config_name": name, "message": message}
                     for row, name, message in summary.error_rows[code]]
            log.warning("%s x%d", code, count, extra={"fields": {"event": "error_rows", "error_code": code,
                                                                 "rows": count, "first": first}})
    if summary.stop_reason:
        log.error("stopped early: %s", summary.stop_reason, extra={"fields": {"event": "stopped",
                                                                             "reason": summary.stop_reason}})
    for note in summary.notes:
        log.warning("%s", note, extra={"fields": {"event": "note"}})
    if next_step:
        log.info("next: %s", next_step, extra={"fields": {"event": "next", "command": next_step}})
    rows = sum(summary.counts.values())
    counts = ", ".join(f"{summary.counts[s]} {s}" for s in STATUSES if summary.counts[s])
    exit_code = summary.exit_code
    level = (logging.ERROR if summary.stop_reason or summary.interrupted else
             logging.WARNING if exit_code else logging.INFO)
    fields: dict[str, Any] = {
        "event": "summary", "command": summary.command, "exit_code": exit_code, "rows": rows,
        "counts": {status: summary.counts[status] for status in STATUSES if summary.counts[status]},
        "files": {label.split(" (")[0].replace(" ", "_"): str(path) for label, path in files(summary).items()},
        "requests": summary.requests, "retries": summary.retries, "duration_s": round(summary.elapsed, 3),
        "rate": {"asked": summary.max_rate, "lowest": summary.lowest_rate, "achieved": round(summary.request_rate, 2)},
        "verified": summary.verified, "kept_cells": summary.kept_cells,
        "changes": {name: dict(kinds) for name, kinds in summary.changes.ranked()},
        "created": summary.changes.created_rows}
    for name in ("latency_p50", "latency_p95", "window_p50", "window_p99"):
        value = getattr(summary, name)
        fields[f"{name}_ms"] = None if value is None else round(value * 1000, 1)
    if summary.command == "plan":
        fields["headline"] = summary.headline
    log.log(level, "%d row%s: %s", rows, "" if rows == 1 else "s", counts or "none", extra={"fields": fields})


def sending_line(summary: Summary) -> str:
    """``321 requests (4 retries) in 30.1 s, 10.7 requests/s; latency p50 ...; read-to-write window ...``."""
    latency = (f"; latency p50 {summary.latency_p50 * 1000:.0f} ms, p95 {summary.latency_p95 * 1000:.0f} ms"
               if summary.latency_p50 is not None and summary.latency_p95 is not None else "")
    window = (f"; read-to-write window p50 {summary.window_p50 * 1000:.0f} ms, p99 {summary.window_p99 * 1000:.0f} ms"
              if summary.window_p50 is not None and summary.window_p99 is not None else "")
    rate = summary.request_rate
    rate_text = f"{rate:.1f}" if rate >= 0.1 or not rate else f"{rate:.2g}"  # 0.033, not 0.0
    return (f"{summary.requests} request{'' if summary.requests == 1 else 's'} ({summary.retries} "
            f"retr{'y' if summary.retries == 1 else 'ies'}) in {summary.elapsed:.1f} s, {rate_text} requests/s"
            f"{latency}{window}")


def _show_errors(screen: Screen, summary: Summary) -> None:
    """The rows with errors, grouped by code: the first few of each, and exactly how many more.
    Cancelled rows are counted on the status line and resumed, not listed here."""
    codes = [(code, count) for code, count in summary.ranked_codes() if code != CANCELLED_CODE]
    shown = [(code, count) for code, count in codes if code in summary.error_rows][:ERROR_CODES_SHOWN]
    for code, count in shown:
        screen.say(screen.paint(f"{code} x{count}", "red"))
        for row, name, message in summary.error_rows[code][:ERROR_ROWS_SHOWN]:
            screen.say(f"row {row} {name}: {message}", indent=1)
        if count > ERROR_ROWS_SHOWN:
            screen.say(screen.paint(f"... and {count - ERROR_ROWS_SHOWN} more", "dim"), indent=1)
    listed = {code for code, _ in shown}
    rest = [count for code, count in codes if code not in listed]
    if rest:
        screen.say(f"... and {sum(rest):,} more row{'' if sum(rest) == 1 else 's'} with {len(rest):,} other error "
                   f"code{'' if len(rest) == 1 else 's'}: see the report")


def _show_changes(screen: Screen, summary: Summary) -> None:
    """What changes, field by field: fields that lose values first and always, each with its
    rows per kind, then the most common value changes under it; configs to create per field."""
    totals = summary.changes
    shown, others = totals.shown(FIELDS_SHOWN)
    if shown:
        screen.say("changes by field:")
        for name, kinds in shown:
            screen.say(f"{screen.paint(name, _kind_colour(field_kind(kinds)))}: {summed(kinds)}", indent=1)
            values = totals.by_value(name)
            for kind, before, after, rows in values[:VALUES_SHOWN]:
                screen.say(f"{screen.paint(f'{_cut(before)} -> {_cut(after)}', _kind_colour(kind))}  x{rows:,}", indent=2)
            more = sum(kinds.values()) - sum(rows for *_, rows in values[:VALUES_SHOWN])
            if more > 0:
                screen.say(screen.paint(f"... and {more:,} more row{'' if more == 1 else 's'} with other values", "dim"),
                           indent=2)
        if others:
            screen.say(screen.paint(f"... and {len(others)} more field{'' if len(others) == 1 else 's'} "
                                    f"({sum(sum(kinds.values()) for _, kinds in others):,} changes): the report's "
                                    "changes column has every one", "dim"), indent=1)
    if totals.created_rows:
        verb = "to create" if summary.command == "plan" else "created"
        fields = ", ".join(f"{name} set x{count:,}" for name, count in totals.created.most_common(CREATED_FIELDS_SHOWN))
        more = len(totals.created) - CREATED_FIELDS_SHOWN
        screen.say(screen.paint(f"{totals.created_rows:,} {verb}: {fields}"
                                + (f", and {more} more field{'' if more == 1 else 's'}" if more > 0 else ""), "green"))


def _cut(text: str) -> str:
    return text if len(text) <= VALUE_CHARS else text[:VALUE_CHARS - 1] + "…"


def resume_command(command: str, argv: Sequence[str], summary: Summary) -> str:
    """After an apply that was interrupted or left rows failed or cancelled: the command that
    resumes it (the same one, with ``--resume`` the report; a new report of its own, and a page
    of its own when this run wrote one, so that this run's page is kept)."""
    if command != "apply" or not (summary.interrupted or summary.counts["failed"] or summary.counts["cancelled"]):
        return ""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--resume", "--report", "--html"):
            skip = True
        elif not arg.startswith(("--resume=", "--report=", "--html=", "--overwrite")):
            kept.append(arg)
    again = ["--overwrite"] if summary.failed_manifest is not None else []  # its rows to fix, anew
    page = ["--html", str(next_page(summary.page))] if summary.page is not None else []
    return "to resume: " + shlex.join(["batchcfg", *kept, *again, *page, "--resume", str(summary.report)])


def next_page(page: Path) -> Path:
    """A page name for the run that resumes the one whose page is ``page``: ``run.html`` ->
    ``run-2.html``, ``run-2.html`` -> ``run-3.html``, past the names taken."""
    match = re.fullmatch(r"(.*)-([0-9]+)", page.stem)
    stem, number = (match.group(1), int(match.group(2)) + 1) if match else (page.stem, 2)
    while (candidate := page.with_name(f"{stem}-{number}{page.suffix}")).exists():
        number += 1
    return candidate


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
            if json_logs:
                screen.say(f"row {outcome.row} {outcome.config_name}: {render(outcome.changes, VALUE_CHARS)}",
                           event="plan_row", row=outcome.row, config_name=outcome.config_name,
                           changes=[change.as_json() for change in outcome.changes])
                continue
            screen.say(f"row {outcome.row} {outcome.config_name}:", indent=0)
            for change in outcome.changes:
                screen.say(screen.paint(change.text(limit=VALUE_CHARS), _kind_colour(change.kind)), indent=1)


def _kind_colour(kind: str) -> str:
    """Removals red, additions green, changes yellow."""
    return "red" if kind == REMOVE else "green" if kind == ADD else "yellow"
