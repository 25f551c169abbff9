"""The run's page (``--html PATH``): one self-contained HTML file that sums a run up.

The markup is the template's (``templates/run.html``), with autoescaping on for every value, and
every string it shows is made printable first (control and bidi characters written out): no
config name, message, change or path, whatever a spreadsheet or a server put in it, can add
markup. This module only gathers and bounds the values, and draws the charts as numbers (the
bars' coordinates) for the template to write as inline SVG. The page fetches nothing and runs no
script (its Content-Security-Policy says so), and its size does not grow with the rows: the
timeline is cut into at most :data:`MAX_BARS` bars, and every list has a cap.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
import markupsafe

from . import errors
from .files import atomic_write
from .change import ADD, CHANGE, REMOVE, Change, Totals, field_kind, value_text
from .model import CONFLICT, SKIPPED, STATUSES, SUCCEEDED, Summary
from .text import clip, printable

MAX_BARS = 300            # the timeline's bars (and points), whatever the run's length
MAX_BUCKETS = 40          # the latency histogram's bars
MAX_CODES, MAX_ROWS = 50, 5
MAX_FIELDS, MAX_VALUES, MAX_ROW_CHANGES, MAX_CHANGED_ROWS = 60, 5, 40, 20  # fields that lose values: all
MAX_ITEMS = 50            # notes, inputs, settings
MAX_TEXT, MAX_NAME, MAX_CHANGE = 1000, 200, 400  # characters of a message, a name, a change
SECRET_KEYS = ("token", "sk", "secret", "password", "ak")
NOT_SENT = {errors.REQUIRED, errors.TYPE, errors.RANGE, errors.CONFLICT, errors.FORMAT, errors.DUPLICATE, errors.SPEC,
            errors.ENGINE, errors.CANCELLED, errors.CHANGED_SINCE}  # codes of rows that got no answer: nothing sent
EXIT_MEANINGS = {
    errors.EXIT_OK: "every row succeeded, was skipped, valid or planned",
    errors.EXIT_ROWS_FAILED: "some rows are invalid, failed, cancelled or in conflict: see the rows to fix",
    errors.EXIT_CHANGES_PENDING: "plan --detailed-exitcode: changes are pending",
    errors.EXIT_IO_ERROR: "the journal, the report or a failed-row manifest could not be written",
    errors.EXIT_LOCKED: "another run holds the lock",
    errors.EXIT_INTERRUPTED: "interrupted (Ctrl-C); the report is still written",
    errors.EXIT_TERMINATED: "stopped by SIGTERM; the report is still written",
}
_UNSAFE = re.compile(r"[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")  # bidi; lone surrogates
_REGION = re.compile(r"\.((?:[a-z]{2}-)?[a-z]+-[a-z]+(?:-\d+)?)\.")
W, H, LEFT, RIGHT, TOP, BOTTOM = 960, 300, 56, 14, 26, 46  # a chart's viewBox and its margins


def write_html(path: Path, summary: Summary) -> None:
    """The page of ``summary``, written atomically to ``path``."""
    page = _environment().get_template("run.html").render(_context(path, summary))
    with atomic_write(path, "w", encoding="utf-8") as handle:
        handle.write(page)


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("batchcfg", "templates"), autoescape=True,
                              finalize=_shown, undefined=jinja2.StrictUndefined, trim_blocks=True,
                              lstrip_blocks=True, auto_reload=False)


def _shown(value: Any) -> Any:
    """Every value the template writes: text with its control and bidi characters written out,
    which the autoescaping then escapes. (Markup is the template's own: a macro's output.)"""
    if isinstance(value, str) and not isinstance(value, markupsafe.Markup):
        value = printable(value)
        return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", value) if _UNSAFE.search(value) else value
    return value


def _context(path: Path, summary: Summary) -> dict[str, Any]:
    rows = sum(summary.counts.values())
    fields, more_fields = _fields(summary.changes)
    return {
        "s": summary, "command": clip(summary.command or "run", MAX_NAME), "rows": rows,
        "run": {name: clip(getattr(summary, name), MAX_TEXT) for name in ("started_at", "endpoint", "project_id", "stop_reason")},
        "region": _region(summary.endpoint),
        "duration": _duration(summary.elapsed), "files": _files(path, summary), "settings": _settings(summary),
        "notes": [clip(note, MAX_TEXT) for note in summary.notes[:MAX_ITEMS]],
        "statuses": [(status, count, 100 * count / rows, status if status in STATUSES else "other")
                     for status, count in _statuses(summary)],
        "exit": _exit(summary), "errors": _errors(summary), "more_errors": _more_errors(summary),
        "conflicts": _rows(summary.error_rows.get(errors.CHANGED_SINCE, [])),
        "rollback": [(label, summary.counts[status]) for label, status in
                     (("restored", SUCCEEDED), ("in conflict", CONFLICT), ("skipped", SKIPPED))],
        "headline": _headline(summary), "fields": fields, "more_fields": more_fields,
        "created": _created(summary), "normalised": summary.normalised.most_common(MAX_ITEMS),
        "not_applied": summary.error_codes[errors.NOT_APPLIED],
        "changed_rows": [(row, clip(name, MAX_NAME), [_record(c) for c in changes[:MAX_ROW_CHANGES]])
                         for row, name, changes in summary.changed_rows[:MAX_CHANGED_ROWS]],
        "http": sorted((k, n) for k, n in summary.http_statuses.items() if n)[:MAX_ITEMS], "rate": summary.request_rate,
        "throttled": sum(t for _, _, t, _ in summary.timeline), "timeline": _timeline(summary),
        "latency": _latency(summary), "ms": _ms,
    }


def _region(endpoint: str) -> str:
    match = _REGION.search(endpoint)
    return match.group(1) if match else ""


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, second = divmod(round(seconds), 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min {second:02d} s"


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _href(page_dir: str, target: Path) -> str:
    """A link from the page's directory to ``target``: relative, its characters quoted (so that
    no scheme or markup can come of a file name)."""
    try:
        relative = Path(os.path.relpath(os.path.abspath(target), page_dir)).as_posix()
    except ValueError:  # another drive (Windows)
        return Path(os.path.abspath(target)).as_uri()
    return quote(relative, safe="/")


def _files(path: Path, summary: Summary) -> list[tuple[str, str, str]]:
    """(what, link, name) of the run's inputs and of the files it wrote."""
    page_dir = os.path.dirname(os.path.abspath(path))
    label = "backup read" if summary.command == "rollback" else "manifest"
    files = [(label, target) for target in summary.inputs[:MAX_ITEMS]]
    files += [(what, target) for what, target in (
        ("report", summary.report), ("rows to fix", summary.failed_manifest), ("backup (for rollback)", summary.backup),
        ("exported", summary.output), ("saved plan (for apply)", summary.saved_plan)) if target is not None]
    return [(what, _href(page_dir, target), clip(str(target), MAX_TEXT)) for what, target in files]


def _settings(summary: Summary) -> list[tuple[str, str]]:
    """The run's settings, anything that might be a secret masked."""
    return [(clip(key, MAX_NAME), "••••••" if any(word in key.lower() for word in SECRET_KEYS) else clip(value, MAX_NAME))
            for key, value in sorted(summary.settings.items())[:MAX_ITEMS]]


def _statuses(summary: Summary) -> list[tuple[str, int]]:
    known = [(status, summary.counts[status]) for status in STATUSES if summary.counts[status]]
    return known + sorted((clip(s, MAX_NAME), n) for s, n in summary.counts.items() if s not in STATUSES and n)[:MAX_ITEMS]


def _exit(summary: Summary) -> tuple[int, str, bool]:
    """The exit code, what it means, and whether it is bad (neither 0 nor 3)."""
    code = summary.exit_code
    meaning = EXIT_MEANINGS.get(code, "")
    if code == errors.EXIT_OK and summary.command == "plan" and summary.changes:
        meaning += " (3 with --detailed-exitcode: some rows would change)"
    return code, meaning, code not in (errors.EXIT_OK, errors.EXIT_CHANGES_PENDING)


def _headline(summary: Summary) -> list[tuple[str, str, int, str]]:
    """A plan's headline as cards: (key, label, rows, how it reads: bad, change, quiet)."""
    if summary.command != "plan":
        return []
    from .screen import HEADLINE

    headline = summary.headline
    cards = [(key, label, headline[key], "bad" if key in ("missing", "invalid", "conflict", "failed", "cancelled")
              and headline[key] else "change" if key in ("create", "change") else "quiet")
             for key, label in HEADLINE if key in headline]
    lose = headline["lose_a_value"]
    return [*cards, ("lose_a_value", "to change lose a value", lose, "bad" if lose else "quiet")]


def _rows(rows: Sequence[tuple[int, str, str]]) -> list[tuple[int, str, str]]:
    return [(row, clip(name, MAX_NAME), clip(message, MAX_TEXT)) for row, name, message in rows[:MAX_ROWS]]


def _errors(summary: Summary) -> list[dict[str, Any]]:
    """The error codes, most rows first: count, an HTTP status seen with each, its first rows."""
    shown = []
    for code, count in summary.ranked_codes()[:MAX_CODES]:
        rows = _rows(summary.error_rows.get(code, []))
        status = summary.error_statuses.get(code)
        shown.append({"code": clip(code, MAX_NAME), "count": count, "rows": rows,
                      "message": rows[0][2] if rows else "",
                      "http": "" if status is None else str(status) if status else
                      "–" if code in NOT_SENT else "no answer"})
    return shown


def _more_errors(summary: Summary) -> tuple[int, int]:
    """(rows, codes) of the codes not shown."""
    rest = summary.ranked_codes()[MAX_CODES:]
    return sum(count for _, count in rest), len(rest)


def _record(change: Change) -> dict[str, str]:
    """A change as the template shows it, from its record: values bounded."""
    part = MAX_CHANGE // 2
    return {"field": clip(change.name, MAX_NAME), "kind": change.kind,
            "old": clip(value_text(change.before, part), part), "new": clip(value_text(change.after, part), part)}


def _fields(totals: Totals) -> tuple[list[dict[str, Any]], tuple[int, int]]:
    """The changes field by field (those that lose values first, and all of them), each with its
    first value changes; and (fields, changes) of those not shown."""
    shown, rest = totals.shown(MAX_FIELDS)
    fields = []
    for name, kinds in shown:
        values = totals.by_value(name)[:MAX_VALUES]
        fields.append({
            "name": clip(name, MAX_NAME), "removed": kinds[REMOVE], "changed": kinds[CHANGE], "added": kinds[ADD],
            "css": {REMOVE: "removed", ADD: "added", CHANGE: "changed"}[field_kind(kinds)],
            "by_value": [{"old": clip(before, MAX_CHANGE // 2), "new": clip(after, MAX_CHANGE // 2), "rows": rows,
                        "kind": kind} for kind, before, after, rows in values],
            "more": sum(kinds.values()) - sum(rows for *_, rows in values)})
    return fields, (len(rest), sum(sum(kinds.values()) for _, kinds in rest))


def _created(totals_of: Summary) -> dict[str, Any] | None:
    """The configs to create (plan) or created, per field they set."""
    totals = totals_of.changes
    if not totals.created_rows:
        return None
    return {"rows": totals.created_rows, "verb": "to create" if totals_of.command == "plan" else "created",
            "fields": [(clip(name, MAX_NAME), count) for name, count in totals.created.most_common(MAX_ITEMS)],
            "more": max(0, len(totals.created) - MAX_ITEMS)}


def _nice(value: float) -> float:
    """A round step (1, 2, 2.5 or 5 times a power of ten) for about five grid lines up to ``value``."""
    raw = max(value, 1e-9) / 5
    power = 10.0 ** math.floor(math.log10(raw))
    return next(step * power for step in (1, 2, 2.5, 5, 10) if step * power >= raw)


def _y_axis(top: float) -> tuple[float, list[dict[str, Any]]]:
    """The y scale's maximum and its grid lines, in the chart's coordinates."""
    step = _nice(top)
    ticks = [step * i for i in range(int(top / step + 1e-9) + 2)]
    top = ticks[-1] if ticks[-1] >= top else top
    bottom = H - BOTTOM
    return top, [{"y": round(bottom - (bottom - TOP) * t / top, 1), "label": f"{t:g}"} for t in ticks if t <= top]


def _x_ticks(span: float) -> list[dict[str, Any]]:
    steps = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 21600, 43200, 86400)
    step = next((s for s in steps if span / s <= 8), math.ceil(span / 8))
    return [{"x": round(LEFT + (W - LEFT - RIGHT) * t / span, 1), "label": _clock(t)}
            for t in range(0, int(span) + 1, step)]


def _clock(seconds: float) -> str:
    minutes, second = divmod(int(seconds), 60)
    return f"{second} s" if not minutes else f"{minutes // 60}:{minutes % 60:02d}:{second:02d}" \
        if minutes >= 60 else f"{minutes}:{second:02d}"


def _bins(timeline: Sequence[tuple[int, int, int, int]]) -> tuple[int, list[list[float]]]:
    """The timeline cut into at most MAX_BARS bins: their width in seconds, and per bin the starts,
    throttled answers and retries, summed, and the seconds it covers."""
    span = max(0, max(second for second, _, _, _ in timeline)) + 1
    width = max(1, math.ceil(span / MAX_BARS))
    bins = [[0.0, 0.0, 0.0, float(min(width, span - i * width))] for i in range(math.ceil(span / width))]
    for second, starts, throttled, retries in timeline:
        totals = bins[max(0, second) // width]
        totals[0] += starts
        totals[1] += throttled
        totals[2] += retries
    return width, bins


def _limiter(summary: Summary, width: int, count: int) -> tuple[list[tuple[int, float, int, int]], float]:
    """The limiter's lowest rate in each bin (from the first bin it is known in), with how many
    times it went down and up there; and its highest rate."""
    rate = summary.max_rate if summary.max_rate > 0 else None
    changes = sorted(summary.rate_changes)
    steps, index, highest = [], 0, max([rate or 0.0, *(r for _, r in changes)])
    for i in range(count):
        lowest, down, up = rate, 0, 0
        while index < len(changes) and changes[index][0] < (i + 1) * width:
            new = changes[index][1]
            down, up = (down + 1, up) if rate is not None and new < rate else (down, up + 1)
            rate, index = new, index + 1
            lowest = new if lowest is None else min(lowest, new)
        if lowest is not None:
            steps.append((i, lowest, down, up))
    return steps, highest


def _timeline(summary: Summary) -> dict[str, Any] | None:
    """The requests started per second against the --rate line: bars (retries in them), throttled
    answers as dots, the limiter's rate as a step line with its changes marked."""
    if not summary.timeline or not summary.requests:
        return None
    width, bins = _bins(summary.timeline)
    steps, highest = _limiter(summary, width, len(bins))
    peak = max(max(b[0] / b[3], b[1] / b[3]) for b in bins)
    top, yticks = _y_axis(max(peak, highest, 1.0) * 1.05)
    plot, bottom = (W - LEFT - RIGHT) / len(bins), H - BOTTOM
    scale = (bottom - TOP) / top

    def y(value: float) -> float:
        return round(bottom - value * scale, 1)

    bars, dots = [], []
    for i, (starts, throttled, retries, seconds) in enumerate(bins):
        x = round(LEFT + i * plot, 1)
        when = f"{_clock(i * width)}–{_clock(i * width + seconds)}"
        bar, high, retry = max(plot * 0.85, 0.6), y(starts / seconds), y(retries / seconds)
        bars.append({"x": x, "w": round(bar, 1), "y": high, "h": round(bottom - high, 1), "rx": round(x + bar / 4, 1),
                     "rw": round(bar / 2, 1), "ry": retry, "rh": round(bottom - retry, 1), "title": f"{when}: {starts / seconds:.3g} "
                     f"requests/s, {retries / seconds:.3g} retries/s, {throttled:.0f} throttled"})
        if throttled:
            dots.append({"x": round(x + plot / 2, 1), "y": y(throttled / seconds),
                         "title": f"{when}: {throttled:.0f} throttled answers"})
    line = " ".join(f"{round(LEFT + i * plot, 1)},{y(r)} {round(LEFT + (i + 1) * plot, 1)},{y(r)}"
                    for i, r, _, _ in steps)
    marks = [{"x": round(LEFT + (i + 0.5) * plot, 1), "down": down >= up,
              "title": f"{_clock(i * width)}: rate {'lowered' if down else 'raised'} to {r:.3g}/s"
              + (f" ({down + up} changes)" if down + up > 1 else "")} for i, r, down, up in steps if down or up]
    span = len(bins) * width
    return {"bars": bars, "dots": dots, "yticks": yticks, "xticks": _x_ticks(span),
            "unit": "h:min:s" if span > 3600 else "min:s" if span > 60 else "s",
            "line": line, "marks": marks, "width": width, "bottom": bottom,
            "rate": {"y": y(summary.max_rate), "label": f"--rate {summary.max_rate:g}/s"} if summary.max_rate > 0
            else None}


def _merged(buckets: Sequence[tuple[float, int]]) -> list[tuple[float, int]]:
    """At most MAX_BUCKETS buckets: neighbours added together."""
    merged = list(buckets)
    while len(merged) > MAX_BUCKETS:
        merged = [(merged[i + 1 if i + 1 < len(merged) else i][0], sum(n for _, n in merged[i:i + 2]))
                  for i in range(0, len(merged), 2)]
    return merged


def _latency(summary: Summary) -> dict[str, Any] | None:
    """The latency histogram: a bar per bucket, and where p50, p95 and p99 fall."""
    buckets = _merged(sorted(summary.latency_buckets))
    if not buckets or not summary.requests:
        return None
    top, yticks = _y_axis(max(max(n for _, n in buckets), 1) * 1.05)
    plot, bottom = (W - LEFT - RIGHT) / len(buckets), H - BOTTOM
    every = math.ceil(len(buckets) / 8)
    heights = [round((bottom - TOP) * n / top, 1) for _, n in buckets]
    bars = [{"x": round(LEFT + i * plot, 1), "w": round(plot * 0.85, 1), "h": heights[i], "y": round(bottom - heights[i], 1),
             "label": ("≤ " + _ms(bound) if math.isfinite(bound) else "more") if i % every == 0 else "",
             "title": f"{'≤ ' + _ms(bound) if math.isfinite(bound) else 'longer'}: {n} attempts"}
            for i, (bound, n) in enumerate(buckets)]
    marks = []
    for row, (name, value) in enumerate((("p50", summary.latency_p50), ("p95", summary.latency_p95),
                                         ("p99", summary.latency_p99))):
        if value is not None and math.isfinite(value):
            i = next((i for i, (bound, _) in enumerate(buckets) if value <= bound), len(buckets) - 1)
            low, high = buckets[i - 1][0] if i else 0.0, buckets[i][0]
            part = (value - low) / (high - low) if math.isfinite(high) and high > low else 0.5
            marks.append({"x": round(LEFT + (i + min(max(part, 0.0), 1.0)) * plot, 1), "y": TOP - 14 + 12 * row,
                          "label": f"{name} {_ms(value)}"})
    return {"bars": bars, "marks": marks, "yticks": yticks, "bottom": bottom}
