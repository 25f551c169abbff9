"""The benchmark: ``python -m tests.perf`` (about 15 minutes; ``--quick`` for a smaller run).

Measures batchcfg in one run against baselines on the same machine, and prints a Markdown table.
Every ratio is taken pair by pair: batchcfg and its baseline run in turn, round after round
(interleaved), each against a fresh copy of the same fast loopback server; the table gives the
median of the rounds and the spread (lowest-highest), so that a drift of this shared machine
shows instead of skewing a ratio.

1. Whole process, 20,000 rows, 64 in flight, ``--rate 0``, as rows per second:
   - the default ``apply`` (a GET, a backup line and a PUT a row, with every check, the journal,
     the canary's read-backs and the report) against a bare aiohttp loop that GETs, parses and
     PUTs each config;
   - the PUT alone (``--replace --no-backup --send-unchanged``) against a bare aiohttp PUT loop,
     and the same runs counted at the server (the sending phase alone);
   - ``export`` of 20,000 configs (List pages, a Details read each, the manifest written)
     against a bare aiohttp loop doing the same and writing the same rows.
2. ``validate`` of 1,000,000 rows against ``pandas.read_csv(dtype=str, keep_default_na=False)``
   of the same file: time and peak memory.
3. The read-to-write window (a row's read answered -> its PUT started) at ``--rate 10`` and
   ``--rate 0``, from the run's summary.
4. Rate precision, latency hiding, memory at 10,000 to 1,000,000 rows, start-up, the run's page.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from batchcfg.sandbox import SandboxConfig, max_starts_in_window

from .measure import Measured, measured

PROJECT = SandboxConfig.project_id
ENV = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/nonexistent"),
       "PYTHONPATH": os.getcwd(), "HUAWEICLOUD_SDK_AK": "BENCHAK", "HUAWEICLOUD_SDK_SK": "bench-secret",
       "HUAWEICLOUD_SDK_PROJECT_ID": PROJECT, "BATCHCFG_METADATA_URL": "off"}
TOKEN_ENV = {**{k: v for k, v in ENV.items() if not k.endswith(("_AK", "_SK"))}, "BATCHCFG_IAM_TOKEN": "bench-token"}
BATCHCFG = [sys.executable, "-m", "batchcfg"]
BASELINES = [sys.executable, "-m", "tests.perf.baselines"]
COLUMNS = ["config_name", "config_desc", "worker_server_num", "spec_id", "engine_id", "app_url",
           "boot_file_url", "data_url", "param.learning_rate", "param.batch_size", "train_url", "log_url"]
PUT_ONLY = ("--replace", "--no-backup", "--send-unchanged")  # the row as the body, no read first


def make_manifest(path: Path, rows: int) -> Path:
    """A manifest of ``rows`` valid, realistic rows (names job-0000000 ...)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for i in range(rows):
            writer.writerow([f"job-{i:07d}", f"nightly sweep config {i}", 1 + i % 4, 1 + i % 3, 1,
                             f"/ml-code/app{i % 50}/", f"/ml-code/app{i % 50}/train.py",
                             f"/ml-data/set{i % 100}/", "0.01", "64", f"/ml-out/job{i}/", f"/ml-logs/job{i}/"])
    return path


@contextmanager
def fast_server(work: Path, latency_ms: float = 0, configs: int = 0) -> Iterator[tuple[str, list[float]]]:
    """The minimal server in its own process (``configs`` names to List); the list fills with
    arrival times when it stops."""
    log = work / f"arrivals-{time.monotonic_ns()}.txt"
    process = subprocess.Popen([sys.executable, "-m", "tests.perf.server", str(log), str(latency_ms), str(configs)],
                               stdout=subprocess.PIPE, text=True, env=ENV)
    assert process.stdout is not None
    port = process.stdout.readline().strip()
    arrivals: list[float] = []
    try:
        yield f"http://127.0.0.1:{port}", arrivals
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        process.stdout.close()
        lines = log.read_text().splitlines()
        arrivals.extend(float(line) for line in lines if not line.startswith("#"))


def per_second(arrivals: list[float]) -> float:
    return (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) if len(arrivals) > 1 else 0.0


def apply_argv(manifest: Path, url: str, work: Path, *flags: str) -> list[str]:
    return [*BATCHCFG, "apply", str(manifest), "--endpoint", url, "--report", str(work / "report.csv"),
            "--overwrite", "--no-progress", *flags]


def spread(ratios: list[float], digits: str) -> str:
    """`` (rounds 0.45-0.48)``: the rounds' lowest and highest; nothing for one round."""
    return f" (rounds {format(min(ratios), digits)}-{format(max(ratios), digits)})" if len(ratios) > 1 else ""


class Table:
    """The rows of the result table, printed as they come (to stderr) and at the end."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str]] = []

    def add(self, what: str, value: str, target: str = "") -> None:
        self.rows.append((what, value, target))
        print(f"  {what}: {value}", file=sys.stderr, flush=True)

    def print(self) -> None:
        print("\n| measure | result | target |\n|---|---|---|")
        for what, value, target in self.rows:
            print(f"| {what} | {value} | {target} |")
        print(f"\n{os.cpu_count()} cores; Python {sys.version.split()[0]}; {time.strftime('%Y-%m-%d')}")


def paired(rounds: int, contenders: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    """Each contender once a round, in turn; its figure of each round."""
    figures: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            figures[name].append(run())
    return figures


def ratio_row(table: Table, what: str, ours: list[float], base: list[float], unit: str, target: str) -> None:
    """batchcfg's median and the baseline's, and their ratio: the median of the rounds' ratios, and
    their spread."""
    ratios = [a / b for a, b in zip(ours, base)]
    table.add(what, f"{statistics.median(ours):,.0f} vs {statistics.median(base):,.0f} {unit}: "
                    f"**{statistics.median(ratios):.2f}**{spread(ratios, '.2f')}", target)


def throughput(table: Table, work: Path, rows: int, rounds: int) -> None:
    """Section 1: the default apply, the PUT alone, the sending phase, and export, each against its loop."""
    manifest = make_manifest(work / "throughput.csv", rows)
    wide = ("--rate", "0", "--concurrency", "64")
    arrivals: dict[str, list[float]] = {}

    def run(argv: list[str], env: dict[str, str] = TOKEN_ENV, name: str = "") -> Callable[[], float]:
        def once() -> float:
            with fast_server(work, configs=rows) as (url, seen):
                result = measured([arg.replace("{url}", url).replace("{n}", str(time.monotonic_ns())) for arg in argv], env)
                assert result.code == 0, result.stderr[-3000:]
            if name:
                arrivals.setdefault(name, []).append(per_second(seen))
            return rows / result.seconds
        return once

    ours = apply_argv(manifest, "{url}", work, *wide)
    figures = paired(rounds, {
        "default": run([*ours, "--backup", str(work / "backup-{n}.jsonl")]),
        "read-write": run([*BASELINES, "aiohttp-read-write", "{url}", PROJECT, str(rows), "64"]),
        "put": run([*ours, *PUT_ONLY], name="put"),
        "bare-put": run([*BASELINES, "aiohttp", "{url}", PROJECT, str(rows), "64"], name="bare-put"),
        "export": run([*BATCHCFG, "export", str(work / "export.csv"), "--endpoint", "{url}", "--report",
                       str(work / "export-report.csv"), "--overwrite", "--no-progress", *wide]),
        "bare-export": run([*BASELINES, "aiohttp-export", "{url}", PROJECT, str(rows), "64", str(work / "bare.csv")]),
    })
    n = f"{rows:,}"
    ratio_row(table, f"default apply (a GET, a backup line, a PUT a row) vs a bare aiohttp GET-then-PUT loop, {n} rows, "
                     "64 in flight", figures["default"], figures["read-write"], "rows/s", ">= 0.8")
    ratio_row(table, f"the PUT alone (--replace --no-backup --send-unchanged) vs a bare aiohttp PUT loop, {n} rows",
              figures["put"], figures["bare-put"], "rows/s", ">= 0.85")
    ratio_row(table, "the sending phase alone, counted at the server (the same runs)", arrivals["put"],
              arrivals["bare-put"], "requests/s", "keep >= 0.9")
    ratio_row(table, f"export of {n} configs (List pages, a Details read each, the manifest written) vs a bare "
                     "aiohttp loop doing the same", figures["export"], figures["bare-export"], "configs/s", ">= 0.8")


def validation(table: Table, work: Path, rows: int, rounds: int) -> None:
    """Section 2: validate against pandas.read_csv of the same file."""
    manifest = make_manifest(work / f"validate{rows}.csv", rows)
    read_csv = [sys.executable, "-c", "import sys, pandas; pandas.read_csv(sys.argv[1], dtype=str, "
                                      "keep_default_na=False)", str(manifest)]
    results: dict[str, list[Measured]] = {"validate": [], "read_csv": []}
    for _ in range(rounds):
        results["validate"].append(measured([*BATCHCFG, "validate", str(manifest), "--report", str(work / "v.csv"),
                                             "--overwrite"], ENV))
        results["read_csv"].append(measured(read_csv, ENV))
    assert all(r.code == 0 for r in results["validate"]), results["validate"][0].stderr[-2000:]
    ours, base = ([r.seconds for r in results[name]] for name in ("validate", "read_csv"))
    ratios = [a / b for a, b in zip(ours, base)]
    table.add(f"validate {rows:,} rows vs pandas.read_csv(dtype=str, keep_default_na=False) of the same file",
              f"{statistics.median(ours):.1f} s vs {statistics.median(base):.1f} s: **{statistics.median(ratios):.1f}x**"
              f"{spread(ratios, '.1f')}; peak {max(r.rss_mib for r in results['validate']):.0f} MB", "<= 10x, <= 150 MB")
    manifest.unlink()


def windows(table: Table, work: Path, quick: bool) -> None:
    """Section 3: the read-to-write window's p99, from the summary (JSON logs)."""
    for rate, rows in (("10", 40 if quick else 100), ("0", 2000 if quick else 20000)):
        manifest = make_manifest(work / f"window{rate}.csv", rows)
        with fast_server(work, configs=rows) as (url, _):
            result = measured(apply_argv(manifest, url, work, "--rate", rate, "--backup",
                                         str(work / f"window-{time.monotonic_ns()}.jsonl"), "--log-format", "json"),
                              TOKEN_ENV)  # the default apply: the backup's fsync lies in the window
            assert result.code == 0, result.stderr[-2000:]
        summary = next(json.loads(line) for line in result.stderr.splitlines() if '"event": "summary"' in line)
        table.add(f"read-to-write window at --rate {rate} ({rows:,} rows): p50, p99",
                  f"{summary['window_p50_ms']} ms, {summary['window_p99_ms']} ms")


def others(table: Table, work: Path, quick: bool) -> None:
    """Section 4: what the benchmark measured before: rates at the server, latency hiding,
    memory at size, start-up."""
    for rate in (50, 200):
        rows = 250 if quick else 1000
        manifest = make_manifest(work / f"rate{rate}.csv", rows)
        with fast_server(work, configs=rows) as (url, arrivals):
            result = measured(apply_argv(manifest, url, work, "--rate", str(rate), "--no-backup"), ENV)
            assert result.code == 0, result.stderr
        table.add(f"--rate {rate}: most starts in any 1 s window ({len(arrivals)} requests)",
                  str(max_starts_in_window(arrivals)), f"<= {rate}")
        table.add(f"--rate {rate}: achieved average", f"{per_second(arrivals):.1f}/s ({per_second(arrivals) / rate:.1%})",
                  ">= 97%")
    rows = 150 if quick else 500
    manifest = make_manifest(work / "latency.csv", rows)
    with fast_server(work, latency_ms=200, configs=rows) as (url, arrivals):
        result = measured(apply_argv(manifest, url, work, "--rate", "100", "--no-backup"), ENV)
        assert result.code == 0, result.stderr
    table.add(f"latency 200 ms, --rate 100, auto concurrency ({len(arrivals)} requests)",
              f"{per_second(arrivals[1:]):.1f}/s", ">= 95/s")
    for size in (10_000, 100_000) if quick else (10_000, 100_000, 1_000_000):
        manifest = make_manifest(work / f"rows{size}.csv", size)
        dry = measured([*BATCHCFG, "apply", str(manifest), "--dry-run", "--region", "cn-north-4", "--report",
                        str(work / "d.csv"), "--overwrite"], ENV)
        assert dry.code == 0, dry.stderr
        table.add(f"apply --dry-run {size:,} rows: peak RSS, time", f"{dry.rss_mib:.0f} MB, {dry.seconds:.1f} s",
                  "< 300 MB" if size == 1_000_000 else "")
        manifest.unlink()
    size = 20_000 if quick else 200_000
    manifest = make_manifest(work / "apply.csv", size)
    with fast_server(work, configs=size) as (url, _):
        result = measured(apply_argv(manifest, url, work, "--rate", "0", "--concurrency", "64",
                                     "--backup", str(work / "big-backup.jsonl")), ENV)
        assert result.code == 0, result.stderr[-2000:]
    table.add(f"default apply {size:,} rows at --rate 0: peak RSS, time", f"{result.rss_mib:.0f} MB, {result.seconds:.1f} s",
              "< 300 MB")
    helps = [measured([*BATCHCFG, "--help"], ENV).seconds for _ in range(5)]
    table.add("batchcfg --help (best of 5)", f"{min(helps):.2f} s", "< 0.3 s")


def page(table: Table, work: Path) -> None:
    """The run's page at 100,000 rows: the same apply with and without --html (peak RSS, time),
    the page's size, and the time to write it."""
    size = 100_000
    manifest = make_manifest(work / "page.csv", size)
    results = {}
    for name, flags in (("without --html", []), ("with --html", ["--html", str(work / "run.html")])):
        with fast_server(work, configs=size) as (url, _):
            argv = apply_argv(manifest, url, work, "--rate", "0", "--concurrency", "64", *PUT_ONLY, *flags)
            results[name] = measured(argv, ENV)
            assert results[name].code == 0, results[name].stderr
        table.add(f"apply {size:,} rows at --rate 0, {name}: peak RSS, time",
                  f"{results[name].rss_mib:.0f} MB, {results[name].seconds:.1f} s")
    table.add(f"the page of that run ({size:,} rows): size", f"{(work / 'run.html').stat().st_size / 1024:.0f} KB", "< 2 MB")
    table.add("the page: time added to the run",
              f"{results['with --html'].seconds - results['without --html'].seconds:+.1f} s", "< 2 s")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.perf")
    parser.add_argument("--quick", action="store_true", help="smaller sizes and one round: a few minutes")
    parser.add_argument("--only", choices=("throughput", "validate", "window", "others", "page"),
                        help="one section only")
    parser.add_argument("--rounds", type=int, help="rounds of the paired measures (default 3; --quick 1)")
    arguments = parser.parse_args()
    quick = arguments.quick
    rounds = arguments.rounds or (1 if quick else 3)
    work = Path(tempfile.mkdtemp(prefix="batchcfg-bench-"))
    table = Table()
    sections: dict[str, Callable[[], Any]] = {
        "throughput": lambda: throughput(table, work, 2000 if quick else 20_000, rounds),
        "validate": lambda: validation(table, work, 100_000 if quick else 1_000_000, rounds),
        "window": lambda: windows(table, work, quick),
        "others": lambda: others(table, work, quick),
        "page": lambda: page(table, work),
    }
    for name, section in sections.items():
        if arguments.only in (None, name):
            section()
    table.print()


if __name__ == "__main__":
    main()
