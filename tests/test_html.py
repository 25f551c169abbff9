"""The run's page (--html): what it says equals the Summary, no hostile text adds markup, its size
does not grow with the rows, and a real browser renders it without a console error.

``python -m tests.test_html`` writes docs/run-page.png again (a sample apply's page, 1280 px wide).
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
import time
import zlib
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from batchcfg.change import Change, Totals, parse
from batchcfg.html import MAX_BARS, write_html
from batchcfg.model import Summary

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
HOSTILE = ("<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "</svg><svg onload=alert(1)>",
           "evil\x1b]0;owned\x07\x9b2J\u202e", "javascript:alert(1)", "https://evil.example/x.js")
# Every element the template writes: content can add none.
TAGS = {"html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "p", "span", "section", "dl", "dt",
        "dd", "code", "a", "div", "table", "caption", "thead", "tbody", "tr", "th", "td", "ul", "li", "del", "ins",
        "b", "i", "small", "footer", "svg", "g", "rect", "circle", "polyline", "path", "line", "text"}
VOID = {"meta", "br", "img", "input", "link", "hr", "wbr", "source", "embed"}
from .conftest import read_report


class Page(HTMLParser):
    """The page's elements, and the text of each element that has a ``data-`` attribute (for a
    table row: its cells' texts)."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.ends: Counter[str] = Counter()
        self.records: list[dict[str, Any]] = []
        self.text: list[str] = []
        self._open: list[tuple[str, dict[str, Any] | None]] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        self.tags.append((tag, values))
        if tag in ("td", "th"):
            for _, record in reversed(self._open):
                if record is not None and record["tag"] == "tr":
                    record["cells"].append("")
                    break
        if tag in VOID:
            return
        record = None
        if any(name.startswith("data-") for name in values):
            record = {"tag": tag, "attrs": values, "text": "", "cells": []}
            self.records.append(record)
        self._open.append((tag, record))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {name: value or "" for name, value in attrs}))
        self.ends[tag] += 1

    def handle_endtag(self, tag: str) -> None:
        self.ends[tag] += 1
        while self._open:
            if self._open.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        for _, record in self._open:
            if record is not None:
                record["text"] += data
                if record["cells"]:
                    record["cells"][-1] += data

    def find(self, attribute: str) -> dict[str, dict[str, Any]]:
        """The elements with ``attribute``, by its value."""
        return {r["attrs"][attribute]: r for r in self.records if attribute in r["attrs"]}

    def all_text(self) -> str:
        return "".join(self.text)


def number(text: str) -> int:
    return int(re.sub(r"[^\d]", "", text))


def totals(*rows: list[Change], created: list[list[Change]] = ()) -> Totals:  # type: ignore[assignment]
    """The totals of these rows' changes (and of configs created)."""
    found = Totals()
    for changes in rows:
        found.add(changes)
    for changes in created:
        found.add(changes, creating=True)
    return found


def summary(command: str = "apply", **values: Any) -> Summary:
    """A Summary as a command leaves it, every field the page reads set (the new ones too)."""
    fields: dict[str, Any] = dict(
        counts=Counter(), report=Path("r.csv"), command=command, started_at="2026-12-01T10:15:00+00:00",
        endpoint="https://modelarts.cn-north-4.myhuaweicloud.com", project_id="0123456789abcdef0123456789abcdef",
        inputs=[Path("m.csv")], settings={"rate": "10", "concurrency": "auto", "max_retries": "5", "timeout": "30"},
        latency_p99=None, latency_buckets=[], timeline=[], rate_changes=[], error_statuses={}, changed_rows=[])
    fields.update(values)
    return Summary(**fields)


def apply_with_faults(base: Path) -> Summary:
    """An apply of 1,000 rows: throttled for a while, some rows failed, invalid or cancelled. Its
    files are in ``base`` (the manifest), ``base/out`` (the report, the backup) and ``base/fix``."""
    timeline = [(t, 10 if t < 30 or t > 70 else 4, 6 if 30 <= t < 34 else 0, 5 if 30 <= t < 36 else 0)
                for t in range(110)]
    return summary(
        "apply", counts=Counter(succeeded=912, failed=41, invalid=3, cancelled=9, skipped=35),
        report=base / "out" / "batchcfg-report-20261201T101500Z.csv", failed_manifest=base / "fix" / "rows to fix.csv",
        backup=base / "out" / "batchcfg-backup-20261201T101500Z.jsonl", inputs=[base / "configs.xlsx"],
        elapsed=112.4, requests=1031, retries=58, max_rate=10.0, lowest_rate=2.5,
        error_codes=Counter({"ModelArts.0104": 30, "APIGW.0308": 11, "BATCHCFG.TYPE": 2, "BATCHCFG.RANGE": 1,
                             "BATCHCFG.CANCELLED": 9}),
        error_statuses={"ModelArts.0104": 400, "APIGW.0308": 429, "BATCHCFG.TYPE": 0, "BATCHCFG.RANGE": 0,
                        "BATCHCFG.CANCELLED": 0},
        error_rows={"ModelArts.0104": [(17, "resnet50-ft", "spec_id 9 is not a training spec of this project"),
                                       (40, "bert-base-zh", "spec_id 9 is not a training spec of this project")],
                    "APIGW.0308": [(233, "yolo-v8", "The request is throttled (request id 5c0e1f)")],
                    "BATCHCFG.TYPE": [(5, "vit-b16", "worker_server_num: '2.5' is not an integer"),
                                      (9, "vit-l16", "worker_server_num: 'x' is not an integer")],
                    "BATCHCFG.RANGE": [(14, "detr", "worker_server_num: 0 is not between 1 and 2147483647")]},
        http_statuses=Counter({200: 953, 429: 47, 400: 30, 0: 1}),
        latency_p50=0.084, latency_p95=0.41, latency_p99=1.3,
        latency_buckets=[(0.001 * 1.6 ** i, max(0, 260 - abs(i - 9) * 40)) for i in range(24)],
        timeline=timeline, rate_changes=[(30.4, 5.0), (31.5, 2.5), (40.0, 3.0), (50.0, 4.0), (60.0, 6.0), (70.0, 10.0)],
        changes=totals(*[[Change("spec_id", 1, 2)]] * 612, *[[Change("worker_server_num", 1, 2)]] * 280,
                       *[[Change("log_url", "/bucket/log/")]] * 96, *[[Change("parameter", None, "0.02", "lr")]] * 20),
        changed_rows=[(2, "resnet50-ft", (Change("spec_id", 1, 2), Change("log_url", "/bucket/log/"))),
                      (3, "bert-base-zh", (Change("worker_server_num", 1, 2), Change("parameter", None, "0.02", "lr")))],
        notes=["3 rows were invalid: fix them in the sheet and apply again"])


def render(tmp_path: Path, run: Summary, name: str = "page.html") -> tuple[str, Page]:
    path = tmp_path / "out" / name
    path.parent.mkdir(exist_ok=True)
    write_html(path, run)
    text = path.read_text(encoding="utf-8")
    return text, Page(text)


def test_the_apply_page_says_what_the_summary_says(tmp_path: Path) -> None:
    run = apply_with_faults(tmp_path)
    _, page = render(tmp_path, run)
    statuses = page.find("data-status")
    assert set(statuses) == {s for s, n in run.counts.items() if n}
    for status, count in run.counts.items():
        assert number(statuses[status]["cells"][1]) == count
    codes = page.find("data-code")
    assert set(codes) == set(run.error_codes)
    for code, count in run.error_codes.items():
        assert number(codes[code]["cells"][1]) == count
        for row, name, _ in run.error_rows.get(code, []):
            assert f"row {row} {name}" in codes[code]["cells"][4]
    assert codes["ModelArts.0104"]["cells"][2] == "400" and codes["APIGW.0308"]["cells"][2] == "429"
    assert "… and 28 more" in codes["ModelArts.0104"]["cells"][4]
    fields = page.find("data-field")
    assert list(fields) == ["log_url", "spec_id", "worker_server_num", "parameter.lr"], "what is lost first"
    assert {name: [c for c in r["cells"][1:4]] for name, r in fields.items()} == {
        "log_url": ["96", "", ""], "spec_id": ["", "612", ""], "worker_server_num": ["", "280", ""],
        "parameter.lr": ["", "", "20"]}
    assert fields["log_url"]["attrs"]["class"] == "removed" and "removed ×96" in fields["log_url"]["text"]
    assert fields["parameter.lr"]["attrs"]["class"] == "added" and '"0.02" added ×20' in fields["parameter.lr"]["text"]
    assert set(page.find("data-row")) == {"2", "3"}
    sending = page.find("data-sending")
    assert number(sending["requests"]["text"]) == 1031 and number(sending["retries"]["text"]) == 58
    assert number(sending["throttled"]["text"]) == sum(t for _, _, t, _ in run.timeline)
    assert {int(k): number(r["cells"][1]) for k, r in page.find("data-http").items()} == dict(run.http_statuses)
    assert page.find("data-exit") and page.find("data-exit")[str(run.exit_code)]["text"] == "exit 1"


def test_file_links_are_relative_to_the_page(tmp_path: Path) -> None:
    run = apply_with_faults(tmp_path)
    _, page = render(tmp_path, run)
    links = {r["attrs"]["data-file"]: r["attrs"]["href"] for r in page.find("data-file").values()}
    assert links == {"manifest": "../configs.xlsx", "report": "batchcfg-report-20261201T101500Z.csv",
                     "rows to fix": "../fix/rows%20to%20fix.csv",
                     "backup (for rollback)": "batchcfg-backup-20261201T101500Z.jsonl"}


def test_the_charts_mark_the_rate_throttling_and_percentiles(tmp_path: Path) -> None:
    run = apply_with_faults(tmp_path)
    text, page = render(tmp_path, run)
    classes = Counter(attrs.get("class", "") for _, attrs in page.tags)
    assert classes["bar"] == len(run.timeline) + len(run.latency_buckets)
    assert classes["dot"] == 4 and classes["retry"] == 6 and classes["rateline"] == 1 and classes["limiter"] == 1
    assert classes["mark"] == 6 and classes["pmark"] == 3
    assert "--rate 10/s" in page.all_text()
    assert {"p50 84 ms", "p95 410 ms", "p99 1.30 s"} <= set(page.all_text().splitlines()) | set(
        re.findall(r"p\d\d [\d.]+ m?s", page.all_text()))


def test_settings_that_might_be_secrets_are_masked(tmp_path: Path) -> None:
    run = summary(counts=Counter(valid=3), settings={"rate": "5", "access_token": "tok-123", "SK": "sk-456",
                                                       "proxy_password": "pw-789", "client_secret": "s-0", "ak": "AK1"})
    text, page = render(tmp_path, run)
    assert not any(secret in text for secret in ("tok-123", "sk-456", "pw-789", "s-0", "AK1"))
    assert text.count("••••••") == 5 and ">5<" in text


def test_a_plan_shows_what_would_change_and_the_detailed_exit_code(tmp_path: Path) -> None:
    run = summary("plan", counts=Counter(changed=300, unchanged=20),
                  changes=totals(*[[Change("spec_id", 1, 2)]] * 280, *[[Change("log_url", "/b/l/")]] * 20),
                  changed_rows=[(2, "a", (Change("spec_id", 1, 2),))], error_codes=Counter(), requests=321, elapsed=30.0)
    _, page = render(tmp_path, run)
    assert {k: r["cells"][1:4] for k, r in page.find("data-field").items()} == {
        "log_url": ["20", "", ""], "spec_id": ["", "280", ""]}
    assert number(page.find("data-status")["changed"]["cells"][1]) == 300
    headline = {key: number(r["text"]) for key, r in page.find("data-headline").items()}
    assert headline == {"create": 0, "change": 300, "unchanged": 20, "missing": 0, "invalid": 0, "conflict": 0,
                        "lose_a_value": 20}
    assert "3 with --detailed-exitcode" in page.all_text()
    long = summary("plan", counts=Counter(changed=1), changes=totals([Change("config_desc", "x" * 5000)]))
    _, page = render(tmp_path, long, "long.html")
    (row,) = page.find("data-field").values()
    assert row["attrs"]["class"] == "removed" and len(row["text"]) < 500 and "…" in row["text"]
    assert "that apply would make" in page.all_text()


def test_a_rollback_shows_restored_conflicts_and_skipped(tmp_path: Path) -> None:
    conflicts = [(3, "resnet", "changed since the run: spec_id: 2 -> 5"), (8, "bert", "changed since the run")]
    run = summary("rollback", counts=Counter(succeeded=40, conflict=2, skipped=5), inputs=[tmp_path / "b1.jsonl"],
                  error_codes=Counter({"BATCHCFG.CHANGED_SINCE": 2}), error_rows={"BATCHCFG.CHANGED_SINCE": conflicts},
                  error_statuses={"BATCHCFG.CHANGED_SINCE": 0}, requests=90, elapsed=9.0)
    _, page = render(tmp_path, run)
    cards = {k: number(r["text"]) for k, r in page.find("data-rollback").items()}
    assert cards == {"restored": 40, "in conflict": 2, "skipped": 5}
    rows = page.find("data-conflict")
    assert {int(k): (r["cells"][1], r["cells"][2]) for k, r in rows.items()} == {
        row: (name, message) for row, name, message in conflicts}
    assert page.find("data-file")["backup read"]["attrs"]["href"] == "../b1.jsonl"
    assert page.find("data-exit")["1"]


def test_a_validate_lists_its_invalid_rows_and_sends_nothing(tmp_path: Path) -> None:
    run = summary("validate", counts=Counter(valid=16, invalid=4), error_codes=Counter({"BATCHCFG.TYPE": 3, "BATCHCFG.FORMAT": 1}),
                  error_rows={"BATCHCFG.TYPE": [(5, "c3", "worker_server_num: '2.5' is not an integer"),
                                                (9, "c7", "worker_server_num: 'x' is not an integer"),
                                                (12, "c10", "spec_id: 'y' is not an integer")],
                              "BATCHCFG.FORMAT": [(11, "bad name", "config_name: 'bad name' is not 1-64 letters")]},
                  error_statuses={"BATCHCFG.TYPE": 0, "BATCHCFG.FORMAT": 0})
    _, page = render(tmp_path, run)
    assert {k: number(r["cells"][1]) for k, r in page.find("data-status").items()} == {"valid": 16, "invalid": 4}
    codes = page.find("data-code")
    assert number(codes["BATCHCFG.TYPE"]["cells"][1]) == 3 and codes["BATCHCFG.TYPE"]["cells"][2] == "–"
    assert "row 9 c7: worker_server_num: 'x' is not an integer" in codes["BATCHCFG.TYPE"]["cells"][4]
    assert not page.find("data-sending") and not any(t == "svg" for t, _ in page.tags)


def hostile_run(tmp_path: Path) -> Summary:
    bad = " | ".join(HOSTILE)
    (tmp_path / "x").mkdir()
    return summary(
        "apply", counts=Counter({"succeeded": 5, "failed": 3, bad: 1}), report=tmp_path / "x" / f"{HOSTILE[1]}.csv",
        failed_manifest=tmp_path / "javascript:alert(1).csv", inputs=[tmp_path / f"{HOSTILE[0].replace('/', '')}.csv"],
        endpoint=bad, project_id=bad, started_at=bad, stop_reason=bad, notes=[bad], settings={bad: bad, "rate": bad},
        error_codes=Counter({bad: 2, "APIGW.0308": 1}), error_rows={bad: [(2, bad, bad), (3, HOSTILE[2], HOSTILE[1])],
                                                                    "APIGW.0308": [(4, "n", bad)]},
        error_statuses={bad: 500},
        changes=totals(*[[Change("parameter", bad, bad, bad)]] * 3, *[[Change("parameter", bad, None, HOSTILE[2])]] * 2,
                       [Change("config_desc", None, HOSTILE[2])]),
        changed_rows=[(2, bad, (Change("parameter", 1, bad, bad), Change("config_desc", HOSTILE[0], None)))],
        requests=9, retries=1, elapsed=2.0, max_rate=1,
        timeline=[(0, 5, 1, 1), (1, 4, 0, 0)], rate_changes=[(0.5, 0.5)], latency_p50=0.1, latency_p95=0.2,
        latency_p99=0.3, latency_buckets=[(0.1, 5), (0.2, 3), (float("inf"), 1)], http_statuses=Counter({200: 8, 500: 1}))


def test_hostile_text_adds_no_markup_script_or_url(tmp_path: Path) -> None:
    text, page = render(tmp_path, hostile_run(tmp_path))
    tags = {tag for tag, _ in page.tags}
    assert tags <= TAGS and "script" not in tags and "img" not in tags
    assert not re.search(r"<\s*(script|img|iframe|object|embed|base|form|link)\b", text, re.I)
    assert not [name for _, attrs in page.tags for name in attrs if name.startswith("on")]
    assert '"><img' not in text and "</svg><svg" not in text and "<script>" not in text
    urls = [attrs[name] for _, attrs in page.tags for name in ("href", "src", "xlink:href") if name in attrs]
    assert urls and not [u for u in urls if re.match(r"\s*(https?|javascript|data):", u, re.I)]
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?|javascript):", text, re.I)
    assert page.tags[2] == ("meta", {"charset": "utf-8"})
    assert page.tags[3] == ("meta", {"http-equiv": "Content-Security-Policy", "content": CSP})
    assert Counter(t for t, _ in page.tags)["svg"] == page.ends["svg"] == 2
    shown = page.all_text()
    assert HOSTILE[0] in shown and HOSTILE[1] in shown and HOSTILE[2] in shown  # shown as text, escaped
    assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]", text)
    assert "evil\\x1b]0;owned\\x07\\x9b2J\\u202e" in shown
    assert "\\u001b]0;owned\\u0007\\u009b2J\\u202e" in shown, "a change's values escaped as their text form has them"


def big_run() -> Summary:
    """A 100,000-row apply: 50 error codes of 5 rows with long messages, 1,000 kinds of change,
    10,000 seconds of timeline."""
    codes = {f"ModelArts.{i:04d}": [(i * 10 + j, f"config-{i}-{j}-" + "n" * 50, "m" * 1000) for j in range(5)]
             for i in range(50)}
    return summary(
        "apply", counts=Counter(succeeded=90_000, failed=5_000, invalid=3_000, cancelled=1_000, skipped=1_000),
        report=Path("big.csv"), error_codes=Counter({code: 160 for code in codes}), error_rows=codes,
        error_statuses={code: 400 for code in codes}, elapsed=10_000.0, requests=101_000, retries=1_000,
        max_rate=10.0, lowest_rate=1.25,
        changes=totals(*[[Change("parameter", "v" * 40 + str(j), "w" * 40, f"p{i}") for i in range(1000)]
                         for j in range(100)]),
        changed_rows=[(i, f"config-{i}", tuple(Change("parameter", "1", "2", f"p{j}") for j in range(50)))
                      for i in range(20)],
        timeline=[(t, 10, t % 7 == 0, t % 11 == 0) for t in range(10_000)],
        rate_changes=[(t + 0.5, 10.0 / (1 + t % 4)) for t in range(0, 10_000, 3)],
        latency_p50=0.08, latency_p95=0.5, latency_p99=2.0, latency_buckets=[(0.001 * 1.5 ** i, i * 100) for i in range(24)],
        http_statuses=Counter({200: 95_000, 429: 1_000, 400: 5_000}), notes=["n" * 2000] * 200,
        settings={f"s{i}": "x" * 500 for i in range(200)}, inputs=[Path(f"m{i}.csv") for i in range(500)])


def test_a_100000_row_page_is_bounded_in_size_and_time(tmp_path: Path) -> None:
    run = big_run()
    start = time.perf_counter()
    write_html(tmp_path / "big.html", run)
    took = time.perf_counter() - start
    size = (tmp_path / "big.html").stat().st_size
    assert size < 2_000_000 and took < 2.0, (size, took)
    page = Page((tmp_path / "big.html").read_text(encoding="utf-8"))
    classes = Counter(attrs.get("class", "") for _, attrs in page.tags)
    assert classes["bar"] <= MAX_BARS + 40 and classes["mark"] <= MAX_BARS
    assert number(page.find("data-status")["succeeded"]["cells"][1]) == 90_000
    assert len(page.find("data-code")) == 50 and len(page.find("data-field")) == 60


# A real browser: the page renders, at 1280 px and at 375 px, with no console message (a CSP
# violation or a script error would be one). Skipped only where chromium is missing outside CI.
def chromium() -> str:
    found = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed, and CI must run the browser test")
        pytest.skip("chromium is not installed (apt-get install chromium); CI runs this test")
    return found


def browse(browser: str, page: Path, profile: Path, *args: str, width: int = 1280, height: int = 2000
           ) -> subprocess.CompletedProcess[str]:
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
               "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--hide-scrollbars", f"--user-data-dir={profile}", f"--window-size={width},{height}",
               "--enable-logging=stderr", "--v=0", *args, page.as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def png_rows(path: Path) -> tuple[int, int, set[bytes]]:
    """A PNG's width, height and its distinct (filtered) pixel rows: a blank page has one or two."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    chunks, offset = [], 8
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        if kind == b"IDAT":
            chunks.append(data[offset + 8:offset + 8 + length])
        offset += 12 + length
    raw = zlib.decompress(b"".join(chunks))
    stride = len(raw) // height
    return width, height, {raw[i:i + stride] for i in range(0, len(raw), stride)}


def console_problems(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines()
            if re.search(r"CONSOLE|Uncaught|Refused to|Content Security Policy|violates", line)]


@pytest.mark.parametrize("width", [1280, 375])
def test_a_browser_renders_the_page_without_console_errors(width: int, tmp_path: Path) -> None:
    browser = chromium()
    run = apply_with_faults(tmp_path)
    run.error_rows["APIGW.0308"].append((999, HOSTILE[0], HOSTILE[1]))
    page = tmp_path / "out" / "page.html"
    page.parent.mkdir()
    write_html(page, run)
    shot = tmp_path / "page.png"
    done = browse(browser, page, tmp_path / "profile", f"--screenshot={shot}", width=width)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not console_problems(done.stderr)
    shot_width, height, rows = png_rows(shot)
    assert (shot_width, height) == (width, 2000) and len(rows) > 100  # not blank: many different rows
    dom = browse(browser, page, tmp_path / "profile2", "--dump-dom", width=width)
    assert "<h1>batchcfg apply</h1>" in dom.stdout and "Requests started per second" in dom.stdout
    assert "<script" not in dom.stdout and not console_problems(dom.stderr)


def test_the_console_check_would_see_a_csp_violation(tmp_path: Path) -> None:
    """The check above is not blind: a page whose script the CSP blocks shows up on stderr."""
    browser = chromium()
    page = tmp_path / "bad.html"
    page.write_text(f'<!DOCTYPE html><meta http-equiv="Content-Security-Policy" content="{CSP}">'
                    "<p>x</p><script>document.title = 'ran'</script>", encoding="utf-8")
    done = browse(browser, page, tmp_path / "profile", "--dump-dom", width=400, height=300)
    assert console_problems(done.stderr) and "<title>ran</title>" not in done.stdout


def write_docs_screenshot(target: Path) -> None:
    """docs/run-page.png: the page of a sample apply, 1280 px wide."""
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        tmp = Path(directory)
        (tmp / "out").mkdir()
        os.chdir(tmp)  # the files as a person names them: relative to where the run was started
        write_html(tmp / "out" / "page.html", apply_with_faults(Path(".")))
        done = browse(shutil.which("chromium") or "chromium", tmp / "out" / "page.html", tmp / "profile",
                      f"--screenshot={target}", "--force-device-scale-factor=1", "--disable-lcd-text",
                      height=int(sys.argv[1]) if len(sys.argv) > 1 else 2200)
        assert done.returncode == 0, done.stderr


if __name__ == "__main__":
    write_docs_screenshot(Path(__file__).resolve().parent.parent / "docs" / "run-page.png")


# --- through the CLI: the page says what the report says -----------------------------------------

def page_agrees_with_report(page_path: Path, report_path: Path) -> Page:
    """The page's totals by status, counts by error code and change totals are the report's."""
    records = read_report(report_path)
    page = Page(page_path.read_text(encoding="utf-8"))
    assert {s: number(r["cells"][1]) for s, r in page.find("data-status").items()} == \
        dict(Counter(r["status"] for r in records))
    codes = Counter(r["error_code"] for r in records if r["error_code"])
    assert {c: number(r["cells"][1]) for c, r in page.find("data-code").items()} == dict(codes)
    kinds: dict[str, Counter[str]] = {}
    for record in records:
        if record["status"] in ("changed", "succeeded"):
            for name, kind, _, _ in parse(record["changes"]):
                kinds.setdefault(name, Counter())[kind] += 1
    shown = {name: [number(cell) if cell else 0 for cell in r["cells"][1:4]] for name, r in page.find("data-field").items()}
    assert shown == {name: [k["remove"], k["change"], k["add"]] for name, k in kinds.items()}
    return page


def test_pages_of_validate_plan_apply_and_rollback_agree_with_their_reports(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from batchcfg.sandbox import SandboxConfig

    from .conftest import VALID_CELLS, SandboxProcess, cli, seed_file, write_csv

    monkeypatch.chdir(tmp_path)
    names = [f"c{i:02d}" for i in range(40)]
    rows = [[name, "4", *list(VALID_CELLS.values())[1:]] for name in names]
    rows[5][1] = "x"  # invalid
    rows[9][0] = "bad name"  # invalid
    manifest = write_csv(tmp_path / "m.csv", ["config_name", *VALID_CELLS], rows)
    sandbox = SandboxProcess("--fail-rate", "0.1", "--seed",
                             str(seed_file(tmp_path / "seed.jsonl", names[:-2])))  # the last two do not exist
    try:
        for name, value in {"HUAWEICLOUD_SDK_AK": SandboxConfig.ak, "HUAWEICLOUD_SDK_SK": SandboxConfig.sk,
                            "HUAWEICLOUD_SDK_PROJECT_ID": SandboxConfig.project_id}.items():
            monkeypatch.setenv(name, value)
        where = ["--endpoint", sandbox.endpoint, "--max-retries", "2", "--rate", "0"]
        assert cli("validate", manifest, "--report", "v.csv", "--html", "v.html") == 1
        page_agrees_with_report(tmp_path / "v.html", tmp_path / "v.csv")
        cli("plan", manifest, *where, "--report", "p.csv", "--html", "p.html")
        page_agrees_with_report(tmp_path / "p.html", tmp_path / "p.csv")
        assert cli("apply", manifest, *where, "--report", "a.csv", "--backup", "b.jsonl",
                   "--html", "a.html", "--yes") == 1
        page = page_agrees_with_report(tmp_path / "a.html", tmp_path / "a.csv")
        assert page.find("data-sending"), "the sending is shown"
        other = write_csv(tmp_path / "other.csv", ["config_name", "worker_server_num"], [["c00", "6"]])
        assert cli("apply", other, *where, "--report", "o.csv", "--no-backup", "--yes") in (0, 1)  # behind b's back
        cli("rollback", "b.jsonl", *where, "--report", "rb.csv", "--html", "rb.html", "--yes")
        page = page_agrees_with_report(tmp_path / "rb.html", tmp_path / "rb.csv")
        if any(r["status"] == "succeeded" for r in read_report(tmp_path / "o.csv")):
            assert "BATCHCFG.CHANGED_SINCE" in page.find("data-code"), "the conflict is listed"
    finally:
        sandbox.close()
