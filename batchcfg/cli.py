"""The command line: flags -> :class:`Options` -> one library call -> summary, exit code.

Library errors become the one-line ``batchcfg: error: ...`` (exit 2) here, and only here.
Heavy imports (aiohttp, pandas) happen after the flags are parsed, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import anyio

from . import __version__
from .defaults import (AUTO, AUTO_MAX_CONCURRENCY, DEFAULT_MAX_ROWS, DEFAULT_RATE, SANDBOX_HOST,
                       SANDBOX_PORT)
from .errors import EXIT_CANNOT_START, EXIT_INTERRUPTED, EXIT_LOCKED, EXIT_TERMINATED, BatchcfgError

if TYPE_CHECKING:
    from .batch import Options, Summary
    from .report import Outcome

PLAN_DIFF_ROWS = 20  # a plan of at most this many changed rows is shown as a diff on stderr
DEFAULT_PROGRESS_INTERVAL = 30.0
SETTING_FLAGS = ("endpoint", "region", "project_id", "rate", "concurrency", "max_retries", "timeout",
                 "report_dir")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        _fail(f"{message} (see 'batchcfg {self.prog.split()[-1]} --help')"
              if " " in self.prog else message)


def _fail(message: str, code: int = EXIT_CANNOT_START) -> NoReturn:
    print(f"batchcfg: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def _number(minimum: float, *, integer: bool = False, above: bool = False):  # type: ignore[no-untyped-def]
    def parse(text: str) -> float:
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a{'n integer' if integer else ' number'}")
        if not math.isfinite(value) or value < minimum or (above and value == minimum):
            raise argparse.ArgumentTypeError(f"{text!r} must be {'above' if above else 'at least'} {minimum:g}")
        return value
    return parse


def _concurrency(text: str) -> int:
    """``auto`` or a whole number of requests in flight (at least 1)."""
    return AUTO if text.strip().lower() == "auto" else int(_number(1, integer=True)(text))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="batchcfg", description="Change many ModelArts training job configurations "
                                                  "from one CSV or Excel manifest.")
    parser.add_argument("--version", action="version", version=f"batchcfg {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    common = _Parser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=0, help="log every attempt")
    common.add_argument("-q", "--quiet", action="store_true", help="log errors only")
    common.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="log lines as text (default) or one JSON object a line")
    common.add_argument("--log-file", type=Path, metavar="PATH", help="also append the log to this file")
    common.add_argument("--lock", type=Path, metavar="PATH",
                        help=f"hold this lock file for the run; if another run holds it, exit {EXIT_LOCKED} at once")

    profile = _Parser(add_help=False)
    profile.add_argument("--config", type=Path, metavar="PATH",
                         help="config file with profiles (default: ./batchcfg.toml, then "
                              "~/.config/batchcfg/config.toml)")
    profile.add_argument("--profile", metavar="NAME", help="the profile to use (default: BATCHCFG_PROFILE, "
                                                           "else 'default' if the file has one)")

    def manifest_options(command: argparse.ArgumentParser) -> None:
        command.add_argument("manifest", type=Path, help="the .csv, .xlsx or .xlsm manifest")
        command.add_argument("--sheet", help="the Excel sheet to read (default: the first)")
        command.add_argument("--encoding", help="the CSV file's encoding (default: UTF-8, BOM or not)")
        command.add_argument("--max-rows", type=_number(1, integer=True), metavar="N",
                             help=f"refuse a manifest of more rows (default {DEFAULT_MAX_ROWS})")
        command.add_argument("--failed-manifest", type=Path, metavar="PATH",
                             help="write the invalid, failed and cancelled rows here (.csv or .xlsx), "
                                  "in the input's columns plus #status and #error, to fix and re-run")

    def output_options(command: argparse.ArgumentParser) -> None:
        command.add_argument("--report", type=Path,
                             help="report file: .csv, .jsonl or .xlsx (default: "
                                  "batchcfg-report-{UTC time}.csv in --report-dir)")
        command.add_argument("--report-dir", type=Path, metavar="DIR",
                             help="where the default report goes (default: here)")
        command.add_argument("--metrics-file", type=Path, metavar="PATH",
                             help="write Prometheus textfile metrics here at the end of the run")

    def connection_options(command: argparse.ArgumentParser) -> None:
        where = command.add_mutually_exclusive_group()
        where.add_argument("--endpoint", help="API endpoint, e.g. https://modelarts.cn-north-4.myhuaweicloud.com")
        where.add_argument("--region", help="region, e.g. cn-north-4 (see 'batchcfg regions')")
        where.add_argument("--sandbox", action="store_true",
                           help="use an embedded sandbox on loopback (no credentials needed)")
        command.add_argument("--project-id", help="default project id (else HUAWEICLOUD_SDK_PROJECT_ID, "
                                                  "the profile, the credentials file)")
        command.add_argument("--token-file", type=Path, help="file holding an IAM token, sent as X-Auth-Token")
        command.add_argument("--ca-bundle", type=Path, metavar="PATH",
                             help="PEM file of extra CA certificates, for a private CA (TLS is always verified)")
        command.add_argument("--allow-http", action="store_true",
                             help="allow a plain http:// endpoint that is not on this machine")
        command.add_argument("--max-retries", type=_number(0, integer=True),
                             help="retries per request (default 5)")
        command.add_argument("--timeout", type=_number(0, above=True), help="seconds per attempt (default 30)")

    def sending_options(command: argparse.ArgumentParser) -> None:
        command.add_argument("--rate", type=_number(0),
                             help=f"requests started per second, 0 = no limit (default {DEFAULT_RATE:g})")
        command.add_argument("--concurrency", type=_concurrency, metavar="N|auto",
                             help="requests in flight; auto (the default): enough to sustain --rate at "
                                  f"the latency seen, up to {AUTO_MAX_CONCURRENCY}")
        command.add_argument("--max-failures", type=_number(1, integer=True), metavar="N",
                             help="stop after N failed rows; the rest end cancelled (default: no limit)")
        command.add_argument("--no-progress", action="store_true", help="no progress bar")
        command.add_argument("--progress-interval", type=_number(0), default=DEFAULT_PROGRESS_INTERVAL,
                             metavar="SECONDS", help="without a terminal, log progress this often "
                                                     f"(default {DEFAULT_PROGRESS_INTERVAL:g}; 0 = never)")

    validate = commands.add_parser("validate", parents=[common, profile],
                                   help="check the manifest; send nothing")
    manifest_options(validate)
    output_options(validate)
    connection_options(validate)
    validate.add_argument("--online", action="store_true",
                          help="also check spec_id, worker_server_num and engine_id against each "
                               "project's resource specs and engines (reads only)")

    apply = commands.add_parser("apply", parents=[common, profile], help="validate, then send every valid row")
    manifest_options(apply)
    output_options(apply)
    connection_options(apply)
    sending_options(apply)
    apply.add_argument("--resume", type=Path, metavar="PATH",
                       help="an earlier report or journal: skip the rows it shows succeeded "
                            "(same project, config name and request body)")
    apply.add_argument("--dry-run", action="store_true", help="do everything but send")
    apply.add_argument("--preflight", action="store_true",
                       help="first check spec_id, worker_server_num and engine_id against each "
                            "project's resource specs and engines")
    apply.add_argument("--skip-unchanged", action="store_true",
                       help="read each config first; send nothing for rows that would change nothing")
    keep = apply.add_mutually_exclusive_group()
    keep.add_argument("--backup", type=Path, metavar="PATH",
                      help="where to save each config before it is changed (default: "
                           "batchcfg-backup-{UTC time}.jsonl beside the report)")
    keep.add_argument("--no-backup", action="store_true", help="change configs without saving them first")

    plan = commands.add_parser("plan", parents=[common, profile],
                               help="read each row's config and show what apply would change")
    manifest_options(plan)
    output_options(plan)
    connection_options(plan)
    sending_options(plan)

    rollback = commands.add_parser("rollback", parents=[common, profile], help="put the configs of a backup back")
    rollback.add_argument("backup_file", type=Path, metavar="BACKUP", help="a backup file written by apply")
    rollback.add_argument("--force", action="store_true", help="also restore configs that changed since the run")
    output_options(rollback)
    connection_options(rollback)
    sending_options(rollback)

    config = commands.add_parser("config", help="the settings a run would use")
    config_commands = config.add_subparsers(dest="config_command", required=True, parser_class=_Parser)
    show = config_commands.add_parser("show", parents=[profile],
                                      help="print each setting, where it comes from, and the credentials found")
    connection_options(show)
    sending_options(show)
    show.add_argument("--report-dir", type=Path, metavar="DIR", help="where the default report goes")

    commands.add_parser("regions", help="list the ModelArts regions --region knows")

    sandbox = commands.add_parser("sandbox", parents=[common], help="run the embedded stand-in for the API")
    sandbox.add_argument("--host", default=SANDBOX_HOST, help=f"address to bind (default {SANDBOX_HOST})")
    sandbox.add_argument("--port", type=_number(0, integer=True), default=SANDBOX_PORT,
                         help=f"port (default {SANDBOX_PORT}; 0 = any free port)")
    sandbox.add_argument("--project-id", help="the project it serves (default: a fixed test project)")
    sandbox.add_argument("--token", help="the IAM token it accepts (default: a fixed test token)")
    sandbox.add_argument("--ak", help="the AK it accepts (default: a fixed test AK)")
    sandbox.add_argument("--sk", help="the SK of that AK (default: a fixed test SK)")
    sandbox.add_argument("--fail-rate", type=_number(0), default=0.0, help="share of requests answered 503 (0-1)")
    sandbox.add_argument("--throttle-rps", type=_number(0), default=0.0,
                         help="requests accepted per second; beyond: 429 APIGW.0308 (0 = no limit)")
    sandbox.add_argument("--latency-ms", type=_number(0), default=0.0, help="delay added to every answer")
    sandbox.add_argument("--seed", type=Path, metavar="FILE",
                         help="configs to hold from the start: JSON lines of config_name (and "
                              "project_id) with the writable fields")
    sandbox.add_argument("--create-missing", action="store_true",
                         help="let a PUT create a config it does not hold (the real API answers 404)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (CONTRACT.md)."""
    args = build_parser().parse_args(argv)
    if args.command == "regions":
        from .regions import REGIONS, endpoint

        for region in REGIONS:
            print(f"{region:16} {endpoint(region)}")
        return 0
    try:
        if args.command == "config":
            return _config_show(args)
        from . import logs

        logs.configure(verbose=args.verbose, quiet=args.quiet, log_format=args.log_format, log_file=args.log_file)
        with _locked(args.lock):
            if args.command == "validate":
                from .batch import validate

                return _summarise(args, validate(args.manifest, _options(args)))
            if args.command == "sandbox":
                return anyio.run(_sandbox, args)
            return anyio.run(_send, args)
    except BatchcfgError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:  # before the signal handlers are in place
        return EXIT_INTERRUPTED


@contextmanager
def _locked(path: Path | None) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` for the run; exit 75 at once if another run has it."""
    if path is None:
        yield
        return
    import fcntl

    try:
        handle = path.open("a")
    except OSError as exc:
        _fail(f"--lock {path}: {exc.strerror or exc}")
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _fail(f"another batchcfg run holds the lock {path}", EXIT_LOCKED)
        yield


def _resolved(args: argparse.Namespace) -> dict[str, Any]:
    from .settings import resolve

    flags = {key: getattr(args, key, None) for key in SETTING_FLAGS}
    return resolve(flags, os.environ, getattr(args, "config", None), getattr(args, "profile", None))


def _options(args: argparse.Namespace) -> Options:
    from .batch import Options
    from .report import default_report_path

    settings = {key: item.value for key, item in _resolved(args).items()}
    report_dir = settings.pop("report_dir")
    if getattr(args, "report", None) is None and report_dir is not None:
        args.report = report_dir / default_report_path().name
    names = ("sheet", "encoding", "report", "failed_manifest", "token_file", "max_failures", "resume",
             "max_rows", "ca_bundle", "allow_http", "dry_run", "sandbox", "backup", "no_backup",
             "skip_unchanged", "force", "online", "preflight")
    values = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    return Options(**values, **{key: value for key, value in settings.items() if value is not None})


def _config_show(args: argparse.Namespace) -> int:
    """The settings a run with these flags would use, where each comes from, and the credentials
    (masked): what a cron line will do, before it does it."""
    from .auth import discover_auth, discover_project_id

    resolved = _resolved(args)
    for key, item in resolved.items():
        value = "auto" if key == "concurrency" and item.value == AUTO else item.value
        print(f"{key:12} = {'' if value is None else value}  ({item.source})")
    try:
        credentials = repr(discover_auth(os.environ, getattr(args, "token_file", None)))
    except BatchcfgError as exc:
        credentials = f"none ({exc})"
    print(f"{'credentials':12} = {credentials}")
    if resolved["project_id"].value is None and discover_project_id(None):
        print(f"{'':12}   project_id from the credentials file: {discover_project_id(None)}")
    return 0


async def _send(args: argparse.Namespace) -> int:
    """apply, plan or rollback, with progress, signal handling and metrics."""
    from . import batch
    from .logs import Progress

    run = {"apply": batch.apply, "plan": batch.plan, "rollback": batch.rollback}[args.command]
    source = args.backup_file if args.command == "rollback" else args.manifest
    stop, stop_now = anyio.Event(), anyio.Event()
    received: list[int] = []
    progress = Progress(args.command, interval=args.progress_interval, bar=not args.no_progress)
    changed: list[Outcome] = []  # shown as a diff after a small plan

    def ended(outcome: Outcome) -> None:
        progress.update(outcome)
        if args.command == "plan" and outcome.changes and len(changed) <= PLAN_DIFF_ROWS:
            changed.append(outcome)

    summary: Summary | BatchcfgError
    async with anyio.create_task_group() as group:
        group.start_soon(_watch_signals, stop, stop_now, received)
        group.start_soon(progress.report_every_interval)
        try:
            with progress.routed():
                summary = await run(source, _options(args), on_outcome=ended, on_ready=progress.ready,
                                    stop=stop, stop_now=stop_now)
        except BatchcfgError as exc:
            summary = exc  # raised below, outside the task group, which would wrap it in a group
        finally:
            progress.close()
            group.cancel_scope.cancel()
    if isinstance(summary, BatchcfgError):
        raise summary
    for outcome in sorted(changed, key=lambda o: o.row)[:PLAN_DIFF_ROWS]:
        print(f"row {outcome.row} {outcome.config_name}:", file=sys.stderr)
        for change in outcome.changes.split("; "):
            print(f"    {change}", file=sys.stderr)
    if len(changed) > PLAN_DIFF_ROWS:
        print("... and more: the report's changes column has every one", file=sys.stderr)
    code = _summarise(args, summary)
    return EXIT_TERMINATED if code == EXIT_INTERRUPTED and received and received[0] == signal.SIGTERM else code


async def _watch_signals(stop: anyio.Event, stop_now: anyio.Event, received: list[int]) -> None:
    """First SIGINT/SIGTERM: graceful stop. Second: stop at once."""
    if threading.current_thread() is not threading.main_thread():
        return  # called as a library from a worker thread: signals are the host's business
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            received.append(signum)
            if stop.is_set():
                print("batchcfg: stopping at once", file=sys.stderr)
                stop_now.set()
            else:
                print("batchcfg: stopping: no new requests; waiting for those in flight "
                      "(again to stop at once)", file=sys.stderr)
                stop.set()


def _summarise(args: argparse.Namespace, summary: Summary) -> int:
    """The end-of-run summary on stderr, the report path on stdout, the metrics file."""
    from .logs import log
    from .report import STATUSES

    def say(text: str) -> None:
        if getattr(args, "log_format", "text") == "json":  # one format on stderr: JSON lines
            log.info(text)
        else:
            print(f"batchcfg: {text}", file=sys.stderr)

    counts = ", ".join(f"{summary.counts[s]} {s}" for s in STATUSES if summary.counts[s]) or "no rows"
    say(f"{sum(summary.counts.values())} rows: {counts}")
    if summary.error_codes:
        say("most common errors: " + ", ".join(f"{code} x{count}" for code, count in summary.error_codes.most_common(3)))
    if summary.requests:
        latency = (f"; latency p50 {summary.latency_p50 * 1000:.0f} ms, p95 {summary.latency_p95 * 1000:.0f} ms"
                   if summary.latency_p50 is not None and summary.latency_p95 is not None else "")
        say(f"{summary.requests} requests ({summary.retries} retries) in {summary.elapsed:.1f} s, "
            f"{summary.request_rate:.1f} requests/s{latency}")
    if summary.lowest_rate < summary.max_rate:
        say(f"throttled: the rate went down to {summary.lowest_rate:.2g}/s (asked for {summary.max_rate:g}/s)")
    if summary.stop_reason:
        say(f"stopped early: {summary.stop_reason}")
    if summary.failed_manifest is not None:
        say(f"rows to fix: {summary.failed_manifest}")
    if summary.backup is not None and summary.backup.exists():
        say(f"backup (for rollback): {summary.backup}")
    say(f"report: {summary.report}")
    print(summary.report)
    if getattr(args, "metrics_file", None) is not None:
        from .metrics import write_metrics

        try:
            write_metrics(args.metrics_file, args.command, summary)
        except OSError as exc:  # the run is done: say so, and keep its exit code
            say(f"cannot write --metrics-file {args.metrics_file} ({exc.strerror or exc})")
    return summary.exit_code


async def _sandbox(args: argparse.Namespace) -> int:
    from .auth import ENV_AK, ENV_SK
    from .client import is_loopback
    from .sandbox import SandboxConfig, read_seed, serve

    given = {name: getattr(args, name) for name in ("project_id", "token", "ak", "sk")
             if getattr(args, name) is not None}
    config = SandboxConfig(fail_rate=args.fail_rate, throttle_rps=args.throttle_rps,
                           latency_ms=args.latency_ms, create_missing=args.create_missing, **given)
    seeds = read_seed(args.seed) if args.seed else []
    if not is_loopback(args.host):
        print(f"batchcfg: warning: the sandbox listens on {args.host}, beyond this machine, and "
              "accepts fixed test credentials", file=sys.stderr)
    try:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with serve(config, args.host, args.port) as sandbox:
                for record in seeds:
                    sandbox.seed(record.pop("config_name"), record, record.pop("project_id", ""))
                print(f"batchcfg sandbox: {sandbox.endpoint}  project {config.project_id}\n"
                      f"  AK/SK:     {ENV_AK}={config.ak} {ENV_SK}={config.sk}\n"
                      f"  IAM token: {config.token}\n"
                      f"  try:       {ENV_AK}={config.ak} {ENV_SK}={config.sk} batchcfg apply "
                      f"samples/training_job_configs.csv --endpoint {sandbox.endpoint} "
                      f"--project-id {config.project_id}\n"
                      "Ctrl-C stops it.", flush=True)
                async for _ in signals:
                    break
    except OSError as exc:
        _fail(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
    return 0
