"""The benchmark: ``python -m tests.perf`` (about 10 minutes; ``--quick`` for a smaller run).

Measures batchcfg in one run against baselines on the same machine, and prints a Markdown table:
throughput against a bare aiohttp loop and a requests + thread-pool loop (same fast loopback
server, same PUTs, same concurrency); rate precision counted at the server; latency hiding; peak
memory of validate, dry run and apply; start-up and validation time.
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any
from contextlib import contextmanager
from pathlib import Path

from batchcfg.sandbox import SandboxConfig, max_starts_in_window

from .measure import measured

PROJECT = SandboxConfig.project_id
ENV = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/nonexistent"),
       "PYTHONPATH": os.getcwd(), "HUAWEICLOUD_SDK_AK": "BENCHAK", "HUAWEICLOUD_SDK_SK": "bench-secret",
       "HUAWEICLOUD_SDK_PROJECT_ID": PROJECT}
BATCHCFG = [sys.executable, "-m", "batchcfg"]
COLUMNS = ["config_name", "config_desc", "worker_server_num", "spec_id", "engine_id", "app_url",
           "boot_file_url", "data_url", "param.learning_rate", "param.batch_size", "train_url", "log_url"]


def make_manifest(path: Path, rows: int) -> Path:
    """A manifest of ``rows`` valid, realistic rows."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for i in range(rows):
            writer.writerow([f"job-{i:07d}", f"nightly sweep config {i}", 1 + i % 4, 1 + i % 3, 1,
                             f"/ml-code/app{i % 50}/", f"/ml-code/app{i % 50}/train.py",
                             f"/ml-data/set{i % 100}/", "0.01", "64", f"/ml-out/job{i}/", f"/ml-logs/job{i}/"])
    return path


@contextmanager
def fast_server(work: Path, latency_ms: float = 0) -> Iterator[tuple[str, list[float]]]:
    """The minimal server in its own process; the list fills with arrival times when it stops."""
    log = work / f"arrivals-{time.monotonic_ns()}.txt"
    process = subprocess.Popen([sys.executable, "-m", "tests.perf.server", str(log), str(latency_ms)],
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
            "--no-progress", *flags]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.perf")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, about a minute")
    parser.add_argument("--page", action="store_true", help="only the run's page (--html) at 100,000 rows")
    arguments = parser.parse_args()
    quick = arguments.quick
    PUT_ONLY = ("--replace", "--no-backup", "--send-unchanged")  # the row as the body, no read first
    work = Path(tempfile.mkdtemp(prefix="batchcfg-bench-"))
    rows: list[tuple[str, str, str]] = []

    def row(what: str, value: str, target: str = "") -> None:
        rows.append((what, value, target))
        print(f"  {what}: {value}", file=sys.stderr, flush=True)

    if arguments.page:
        page_measures(work, row)
        print_table(rows)
        return

    # 1. Throughput at --rate 0: batchcfg against a bare aiohttp loop and requests + threads, the
    # same PUTs each (so batchcfg runs with --replace --no-backup --send-unchanged: by default it
    # reads each config first, lays the row over it and skips what would not change).
    # Interleaved rounds, the median of each: this machine is shared and noisy.
    count, concurrency, rounds = (3000, 32, 1) if quick else (20000, 32, 5)
    manifest = make_manifest(work / "throughput.csv", count)
    token_env = {**{k: v for k, v in ENV.items() if not k.endswith(("_AK", "_SK"))},
                 "BATCHCFG_IAM_TOKEN": "bench-token"}  # the baselines send X-Auth-Token too
    ours = apply_argv(manifest, "{url}", work, "--rate", "0", "--concurrency", str(concurrency))
    contenders = {
        "batchcfg apply --rate 0, PUT only": ([*ours, *PUT_ONLY], token_env),
        "bare aiohttp loop": ([sys.executable, "-m", "tests.perf.baselines", "aiohttp", "{url}", PROJECT,
                               str(count), str(concurrency)], token_env),
        "requests + thread pool": ([sys.executable, "-m", "tests.perf.baselines", "threads", "{url}", PROJECT,
                                    str(count), str(concurrency)], token_env),
        "batchcfg apply --rate 0, PUT only, AK/SK signed": ([*ours, *PUT_ONLY], ENV),
        "batchcfg apply --rate 0, backups on (default)": (ours, token_env),
    }
    runs: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, (argv, env) in contenders.items():
            with fast_server(work) as (url, arrivals):
                result = measured([arg.replace("{url}", url) for arg in argv], env)
                assert result.code == 0, result.stderr
            runs[name].append(per_second(arrivals))
    rates = {name: statistics.median(values) for name, values in runs.items()}
    spread = {name: f"{min(v):.0f}-{max(v):.0f}" if len(v) > 1 else "" for name, v in runs.items()}
    for name in list(contenders)[:4]:
        row(f"throughput, {name} ({count} PUTs, {concurrency} in flight)",
            f"{rates[name]:.0f} req/s" + (f" (runs {spread[name]})" if spread[name] else ""))
    name = "batchcfg apply --rate 0, backups on (default)"
    row(f"throughput, {name}: a GET, a backup line and a PUT a row",
        f"{rates[name] / 2:.0f} rows/s ({rates[name]:.0f} req/s)")
    ours_rate = rates["batchcfg apply --rate 0, PUT only"]
    row("batchcfg / bare aiohttp (medians)", f"{ours_rate / rates['bare aiohttp loop']:.0%}", ">= 80%")
    row("batchcfg / requests + threads (medians)", f"{ours_rate / rates['requests + thread pool']:.1f}x", ">= 2x")

    # 2. Rate precision, counted at the server.
    for rate in (50, 200):
        count = 500 if quick else 2000
        manifest = make_manifest(work / f"rate{rate}.csv", count)
        with fast_server(work) as (url, arrivals):
            result = measured(apply_argv(manifest, url, work, "--rate", str(rate)), ENV)
            assert result.code == 0, result.stderr
        row(f"--rate {rate}: most starts in any 1 s window ({count} requests)",
            str(max_starts_in_window(arrivals)), f"<= {rate}")
        row(f"--rate {rate}: achieved average", f"{per_second(arrivals):.1f}/s ({per_second(arrivals) / rate:.1%})",
            ">= 97%")

    # 3. Latency hiding: 200 ms per answer, --rate 100, default (auto) concurrency.
    count = 300 if quick else 1000
    manifest = make_manifest(work / "latency.csv", count)
    with fast_server(work, latency_ms=200) as (url, arrivals):
        result = measured(apply_argv(manifest, url, work, "--rate", "100"), ENV)
        assert result.code == 0, result.stderr
    row(f"latency 200 ms, --rate 100, auto concurrency ({count} requests)",
        f"{per_second(arrivals[1:]):.1f}/s", ">= 95/s")

    # 4. Memory and time.
    sizes = (10_000, 100_000) if quick else (10_000, 100_000, 1_000_000)
    for size in sizes:
        manifest = make_manifest(work / f"rows{size}.csv", size)
        check = measured([*BATCHCFG, "validate", str(manifest), "--report", str(work / "v.csv")], ENV)
        assert check.code == 0, check.stderr
        dry = measured([*BATCHCFG, "apply", str(manifest), "--dry-run", "--region", "cn-north-4",
                        "--report", str(work / "d.csv")], ENV)
        assert dry.code == 0, dry.stderr
        row(f"validate {size:,} rows: peak RSS, time", f"{check.rss_mib:.0f} MB, {check.seconds:.1f} s",
            "< 300 MB; < 60 s at 1,000,000" if size == 1_000_000 else "")
        row(f"apply --dry-run {size:,} rows: peak RSS, time", f"{dry.rss_mib:.0f} MB, {dry.seconds:.1f} s",
            "< 300 MB" if size == 1_000_000 else "")
        manifest.unlink()
    size = 20_000 if quick else 200_000
    manifest = make_manifest(work / "apply.csv", size)
    with fast_server(work) as (url, arrivals):
        result = measured(apply_argv(manifest, url, work, "--rate", "0", "--concurrency", "32"), ENV)
        assert result.code == 0, result.stderr
    row(f"apply {size:,} rows at --rate 0: peak RSS, time", f"{result.rss_mib:.0f} MB, {result.seconds:.1f} s",
        "< 300 MB")
    helps = [measured([*BATCHCFG, "--help"], ENV).seconds for _ in range(5)]
    row("batchcfg --help (best of 5)", f"{min(helps):.2f} s", "< 0.3 s")
    page_measures(work, row)
    print_table(rows)


def page_measures(work: Path, row: Any) -> None:
    """The run's page at 100,000 rows: the same apply with and without --html (peak RSS, time),
    the page's size, and the time to write it."""
    size = 100_000
    manifest = make_manifest(work / "page.csv", size)
    results = {}
    for name, flags in (("without --html", []), ("with --html", ["--html", str(work / "run.html")])):
        with fast_server(work) as (url, _):
            argv = apply_argv(manifest, url, work, "--rate", "0", "--concurrency", "32", "--replace", "--no-backup",
                              "--send-unchanged", "--overwrite", *flags)
            results[name] = measured(argv, ENV)
            assert results[name].code == 0, results[name].stderr
        row(f"apply {size:,} rows at --rate 0, {name}: peak RSS, time",
            f"{results[name].rss_mib:.0f} MB, {results[name].seconds:.1f} s")
    page = work / "run.html"
    row(f"the page of that run ({size:,} rows): size", f"{page.stat().st_size / 1024:.0f} KB", "< 2 MB")
    row("the page: time added to the run", f"{results['with --html'].seconds - results['without --html'].seconds:+.1f} s",
        "< 2 s")
    row("the page: peak RSS added", f"{results['with --html'].rss_mib - results['without --html'].rss_mib:+.0f} MB",
        "no per-row memory")


def print_table(rows: list[tuple[str, str, str]]) -> None:
    print("\n| measure | result | target |\n|---|---|---|")
    for what, value, target in rows:
        print(f"| {what} | {value} | {target} |")
    print(f"\n{os.cpu_count()} cores; Python {sys.version.split()[0]}; {time.strftime('%Y-%m-%d')}")


if __name__ == "__main__":
    main()
