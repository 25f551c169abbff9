"""The command line: flags -> :class:`Options` -> one library call -> summary, exit code.

Library errors become the one-line ``batchcfg: error: ...`` (exit 2) here, and only here.
"""

from __future__ import annotations

import argparse
import logging
import math
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import anyio

from . import __version__
from .defaults import (AUTO, AUTO_MAX_CONCURRENCY, DEFAULT_CONCURRENCY, DEFAULT_MAX_RETRIES, DEFAULT_MAX_ROWS, DEFAULT_RATE,
                       DEFAULT_TIMEOUT, SANDBOX_HOST, SANDBOX_PORT)
from .errors import BatchcfgError

if TYPE_CHECKING:
    from .batch import Options, Summary
    from .report import Outcome

EXIT_CANNOT_START = 2

EXIT_TERMINATED = 143
PLAN_DIFF_ROWS = 20  # a plan of at most this many changed rows is shown as a diff on stderr


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        _fail(f"{message} (see 'batchcfg {self.prog.split()[-1]} --help')"
              if " " in self.prog else message)


def _fail(message: str) -> NoReturn:
    print(f"batchcfg: error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_CANNOT_START)


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
    logs = _Parser(add_help=False)
    logs.add_argument("-v", "--verbose", action="count", default=0,
                      help="more log lines: -v what happens, -vv every attempt")
    logs.add_argument("-q", "--quiet", action="store_true", help="errors only")

    def manifest_options(command: argparse.ArgumentParser) -> None:
        command.add_argument("manifest", type=Path, help="the .csv, .xlsx or .xlsm manifest")
        command.add_argument("--sheet", help="the Excel sheet to read (default: the first)")
        command.add_argument("--encoding", help="the CSV file's encoding (default: UTF-8, BOM or not)")
        command.add_argument("--report", type=Path,
                             help="report file: .csv, .jsonl or .xlsx (default: "
                                  "batchcfg-report-{UTC time}.csv here)")
        command.add_argument("--max-rows", type=_number(1, integer=True), metavar="N",
                             help=f"refuse a manifest of more rows (default {DEFAULT_MAX_ROWS})")
        command.add_argument("--failed-manifest", type=Path, metavar="PATH",
                             help="write the invalid, failed and cancelled rows here (.csv or .xlsx), "
                                  "in the input's columns plus #status and #error, to fix and re-run")

    def sending_options(command: argparse.ArgumentParser) -> None:
        where = command.add_mutually_exclusive_group()
        where.add_argument("--endpoint", help="API endpoint, e.g. https://modelarts.cn-north-4.myhuaweicloud.com")
        where.add_argument("--region", help="region, e.g. cn-north-4 (sets the endpoint)")
        where.add_argument("--sandbox", action="store_true",
                           help="use an embedded sandbox on loopback (no credentials needed)")
        command.add_argument("--project-id", help="default project id (else HUAWEICLOUD_SDK_PROJECT_ID, "
                                                  "else the credentials file)")
        command.add_argument("--token-file", type=Path, help="file holding an IAM token, sent as X-Auth-Token")
        command.add_argument("--ca-bundle", type=Path, metavar="PATH",
                             help="PEM file of extra CA certificates, for a private CA (TLS is always verified)")
        command.add_argument("--allow-http", action="store_true",
                             help="allow a plain http:// endpoint that is not on this machine")
        command.add_argument("--rate", type=_number(0), default=DEFAULT_RATE,
                             help=f"requests started per second, 0 = no limit (default {DEFAULT_RATE:g})")
        command.add_argument("--concurrency", type=_concurrency, default=DEFAULT_CONCURRENCY, metavar="N|auto",
                             help="requests in flight; auto (the default): enough to sustain --rate at "
                                  f"the latency seen, up to {AUTO_MAX_CONCURRENCY}")
        command.add_argument("--max-retries", type=_number(0, integer=True), default=DEFAULT_MAX_RETRIES,
                             help=f"retries per row (default {DEFAULT_MAX_RETRIES})")
        command.add_argument("--timeout", type=_number(0, above=True), default=DEFAULT_TIMEOUT,
                             help=f"seconds per attempt (default {DEFAULT_TIMEOUT:g})")
        command.add_argument("--max-failures", type=_number(1, integer=True), metavar="N",
                             help="stop after N failed rows; the rest end cancelled (default: no limit)")
        command.add_argument("--no-progress", action="store_true", help="no progress bar")

    validate = commands.add_parser("validate", parents=[logs], help="check the manifest offline; send nothing")
    manifest_options(validate)
    validate.add_argument("--project-id", help="default project id, for duplicate checks")

    apply = commands.add_parser("apply", parents=[logs], help="validate, then send every valid row")
    manifest_options(apply)
    sending_options(apply)
    apply.add_argument("--resume", type=Path, metavar="PATH",
                       help="an earlier report or journal: skip the rows it shows succeeded "
                            "(same project, config name and request body)")
    apply.add_argument("--dry-run", action="store_true", help="do everything but send")
    apply.add_argument("--skip-unchanged", action="store_true",
                       help="read each config first; send nothing for rows that would change nothing")
    keep = apply.add_mutually_exclusive_group()
    keep.add_argument("--backup", type=Path, metavar="PATH",
                      help="where to save each config before it is changed (default: "
                           "batchcfg-backup-{UTC time}.jsonl beside the report)")
    keep.add_argument("--no-backup", action="store_true", help="change configs without saving them first")

    plan = commands.add_parser("plan", parents=[logs],
                               help="read each row's config and show what apply would change")
    manifest_options(plan)
    sending_options(plan)

    rollback = commands.add_parser("rollback", parents=[logs], help="put the configs of a backup back")
    rollback.add_argument("backup_file", type=Path, metavar="BACKUP", help="a backup file written by apply")
    rollback.add_argument("--report", type=Path,
                          help="report file: .csv, .jsonl or .xlsx (default: "
                               "batchcfg-report-{UTC time}.csv here)")
    rollback.add_argument("--force", action="store_true",
                          help="also restore configs that changed since the run")
    sending_options(rollback)

    sandbox = commands.add_parser("sandbox", parents=[logs], help="run the embedded stand-in for the API")
    sandbox.add_argument("--host", default=SANDBOX_HOST, help=f"address to bind (default {SANDBOX_HOST})")
    sandbox.add_argument("--port", type=_number(0, integer=True), default=SANDBOX_PORT,
                         help=f"port (default {SANDBOX_PORT}; 0 = any free port)")
    sandbox.add_argument("--project-id", help="the project it serves (default: a fixed test project)")
    sandbox.add_argument("--token", help="the IAM token it accepts (default: a fixed test token)")
    sandbox.add_argument("--ak", help="the AK it accepts (default: a fixed test AK)")
    sandbox.add_argument("--sk", help="the SK of that AK (default: a fixed test SK)")
    sandbox.add_argument("--fail-rate", type=_number(0), default=0.0,
                         help="share of requests answered 503 (0-1)")
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
    _configure_logging(args.verbose, args.quiet)
    try:
        if args.command == "validate":
            from .batch import validate

            return _summarise(validate(args.manifest, _options(args)))
        if args.command in ("apply", "plan", "rollback"):
            return anyio.run(_send, args)
        return anyio.run(_sandbox, args)
    except BatchcfgError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:  # before the signal handlers are in place
        return 130


def _configure_logging(verbose: int, quiet: bool) -> None:
    logger = logging.getLogger("batchcfg")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("batchcfg: %(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logger.setLevel(level)


def _options(args: argparse.Namespace) -> Options:
    from .batch import Options

    names = ("sheet", "encoding", "report", "failed_manifest", "endpoint", "region", "project_id",
             "token_file", "rate", "concurrency", "max_retries", "max_failures", "timeout", "resume",
             "max_rows", "ca_bundle", "allow_http", "dry_run", "sandbox", "backup", "no_backup",
             "skip_unchanged", "force")
    values = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    return Options(**values)


async def _send(args: argparse.Namespace) -> int:
    """apply, plan or rollback, with a progress bar and signal handling."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from . import batch

    run = {"apply": batch.apply, "plan": batch.plan, "rollback": batch.rollback}[args.command]
    source = args.backup_file if args.command == "rollback" else args.manifest

    stop, stop_now = anyio.Event(), anyio.Event()
    received: list[int] = []
    bar = tqdm(unit="row", desc=args.command, disable=True if args.no_progress else None, file=sys.stderr)

    changed: list[Outcome] = []  # shown as a diff after a small plan

    def show(outcome: Outcome) -> None:
        bar.update(1)
        if args.command == "plan" and outcome.changes and len(changed) <= PLAN_DIFF_ROWS:
            changed.append(outcome)

    summary: Summary | BatchcfgError
    async with anyio.create_task_group() as group:
        group.start_soon(_watch_signals, stop, stop_now, received)
        try:
            with logging_redirect_tqdm(loggers=[logging.getLogger("batchcfg")]):
                summary = await run(source, _options(args), on_outcome=show,
                                    on_ready=lambda total: bar.reset(total=total), stop=stop,
                                    stop_now=stop_now)
        except BatchcfgError as exc:
            summary = exc  # raised below, outside the task group, which would wrap it in a group
        finally:
            bar.close()
            group.cancel_scope.cancel()
    if isinstance(summary, BatchcfgError):
        raise summary
    for outcome in sorted(changed, key=lambda o: o.row)[:PLAN_DIFF_ROWS]:
        print(f"row {outcome.row} {outcome.config_name}:", file=sys.stderr)
        for change in outcome.changes.split("; "):
            print(f"    {change}", file=sys.stderr)
    if len(changed) > PLAN_DIFF_ROWS:
        print("... and more: the report's changes column has every one", file=sys.stderr)
    code = _summarise(summary)
    return EXIT_TERMINATED if code == 130 and received and received[0] == signal.SIGTERM else code


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


def _summarise(summary: Summary) -> int:
    from .report import STATUSES

    counts = ", ".join(f"{summary.counts[s]} {s}" for s in STATUSES if summary.counts[s]) or "no rows"
    print(f"batchcfg: {sum(summary.counts.values())} rows: {counts}", file=sys.stderr)
    if summary.requests:
        print(f"batchcfg: {summary.requests} requests ({summary.retries} retries) in "
              f"{summary.elapsed:.1f} s, {summary.request_rate:.1f} requests/s", file=sys.stderr)
    if summary.lowest_rate < summary.max_rate:
        print(f"batchcfg: throttled: the rate went down to {summary.lowest_rate:.2g}/s "
              f"(asked for {summary.max_rate:g}/s)", file=sys.stderr)
    if summary.stop_reason:
        print(f"batchcfg: stopped early: {summary.stop_reason}", file=sys.stderr)
    if summary.failed_manifest is not None:
        print(f"batchcfg: rows to fix: {summary.failed_manifest}", file=sys.stderr)
    if summary.backup is not None and summary.backup.exists():
        print(f"batchcfg: backup (for rollback): {summary.backup}", file=sys.stderr)
    print(f"batchcfg: report: {summary.report}", file=sys.stderr)
    print(summary.report)
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
