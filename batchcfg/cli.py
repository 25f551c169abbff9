"""The command line: flags -> :class:`~batchcfg.options.Options` -> one command -> the screen.

:func:`main` always returns the exit code. Errors become the one-line ``batchcfg: error: ...``
here, and only here, with the exit code their class carries (:mod:`batchcfg.errors`). Flag types
come from :mod:`batchcfg.settings`, the one place each setting is parsed and bounded, through
the argument table (:mod:`batchcfg.arguments`). Heavy
imports (aiohttp, pandas) happen after the flags are parsed, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import signal
import sys
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractContextManager, asynccontextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from .arguments import build_parser
from .files import expand_patterns
from .errors import EXIT_CHANGES_PENDING, EXIT_INTERRUPTED, EXIT_IO_ERROR, EXIT_OK, BatchcfgError, UsageError
from .settings import AUTO, SETTINGS

if TYPE_CHECKING:
    from .model import Summary
    from .options import Options
    from .sandbox import RunningSandbox


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (docs/contract.md), whatever happens."""
    from .files import ensure_std_streams, reader_may_leave

    ensure_std_streams()  # started with `>&-` or `2>&-`
    code = _main(argv)
    with reader_may_leave():
        sys.stdout.flush()  # buffered output meets a reader that left here, not in Python's exit
    return code


def _main(argv: Sequence[str] | None) -> int:
    json_logs = False  # until the options are parsed: then as --log-format says
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:  # --help and --version
            return exc.code if isinstance(exc.code, int) else 0
        args.argv = list(sys.argv[1:] if argv is None else argv)
        json_logs = getattr(args, "log_format", "text") == "json"
        return _run(args)
    except BatchcfgError as exc:
        return _failed(str(exc), exc.exit_code, json_logs=json_logs)
    except KeyboardInterrupt:  # before the signal handlers are in place
        return EXIT_INTERRUPTED
    except BrokenPipeError as exc:  # stdout's reader left early (`batchcfg regions | head -2`): all it wanted
        from .files import reader_gone

        return EXIT_OK if reader_gone() else _failed(str(exc), EXIT_IO_ERROR)


def _failed(message: str, code: int, *, json_logs: bool = False) -> int:
    """The one line of an error that stops the run (a JSON line with JSON logs); its exit code."""
    from .files import reader_may_leave
    from .screen import failed

    with reader_may_leave():
        failed(message, code, json_logs=json_logs)
    return code


def _run(args: argparse.Namespace) -> int:
    if args.command == "regions":
        from .endpoints import REGIONS, region_endpoint

        for region in REGIONS:
            print(f"{region:16} {region_endpoint(region)}")
        return 0
    if args.command == "config" and args.config_command == "profiles":
        from .settings import profile_names

        for name in profile_names(args.config):
            print(name)
        return 0
    if args.command == "config":
        return _config_show(args)
    if args.command == "completion":
        import shtab

        from .arguments import with_completions

        print(shtab.complete(with_completions(build_parser()), shell=args.shell))
        return 0
    from . import logs

    _check_paths(args)
    logs.configure(verbose=args.verbose, quiet=args.quiet, log_format=args.log_format, log_file=args.log_file)
    with _locked(args):
        if args.command == "validate" and not args.online:
            from .commands import validate

            return _summarise(args, validate(args.manifest, _options(args)))
        return anyio.run(_sandbox if args.command == "sandbox" else _connected, args)


def _locked(args: argparse.Namespace) -> AbstractContextManager[Any]:
    """The run's ``--lock``, waited for up to ``--lock-wait`` seconds (the flag, else
    ``BATCHCFG_LOCK_WAIT``, else the profile's ``lock_wait``); nothing without ``--lock``."""
    if args.lock is None:
        if args.lock_wait is not None:
            raise UsageError("--lock-wait: only with --lock PATH")
        return nullcontext()
    from .lock import Lock

    return Lock(args.lock, wait=_resolved(args)["lock_wait"].value, command=_command_line(args.argv))


def _command_line(argv: Sequence[str]) -> str:
    """The command as a lock file tells it to others, the sandbox's ``--sk`` and ``--token`` masked."""
    shown = []
    for previous, arg in zip(["", *argv], argv):
        flag, equals, _ = arg.partition("=")
        shown.append("***" if previous in ("--sk", "--token") else
                     f"{flag}=***" if equals and flag in ("--sk", "--token") else arg)
    return shlex.join(["batchcfg", *shown])


def _check_paths(args: argparse.Namespace) -> None:
    """No file a run writes may be one it reads, or another it writes."""
    from .files import check_distinct
    from .journal import journal_path

    def given(*names: str) -> dict[str, Path]:
        flags = {"plan_out": "--out"}
        return {flags.get(name, f"--{name.replace('_', '-')}"): getattr(args, name) for name in names
                if isinstance(getattr(args, name, None), Path)}

    inputs = {**{"the manifest": path for path in [getattr(args, "manifest", None)] if path is not None},
              **given("resume"),
              **{f"backup {path}": path for path in getattr(args, "backup_file", None) or []}}
    outputs = given("report", "failed_manifest", "backup", "metrics_file", "plan_out", "log_file", "html")
    if getattr(args, "command", "") == "export":
        outputs["export"] = args.output
    if "--report" in outputs:
        outputs["the journal"] = journal_path(outputs["--report"])
    check_distinct(outputs, inputs, allowed={frozenset(("the journal", "--resume"))})


def _resolved(args: argparse.Namespace) -> dict[str, Any]:
    """The settings from flags, environment and profile: worked out (and the profile read) once a run."""
    resolved: dict[str, Any] | None = getattr(args, "resolved_settings", None)
    if resolved is None:
        from .settings import resolve

        flags = {key: getattr(args, key, None) for key in SETTINGS}
        resolved = args.resolved_settings = resolve(flags, os.environ, getattr(args, "config", None),
                                                    getattr(args, "profile", None))
    return resolved


_CLI_SETTINGS = ("html", "lock_wait")  # settings the command line uses itself, not the library's Options


def _options(args: argparse.Namespace) -> Options:
    """The run's options: the flags, and the settings resolved from flags, environment and profile."""
    from .options import Options

    resolved = _resolved(args)
    settings = {key: item.value for key, item in resolved.items()}
    names = ("sheet", "encoding", "delimiter", "report", "failed_manifest", "token_file", "max_failures",
             "resume", "max_rows", "ca_bundle", "allow_http", "dry_run", "backup", "no_backup", "replace",
             "send_unchanged", "create_missing", "force", "online", "preflight", "no_preflight", "name_pattern",
             "config_type", "project_column", "overwrite", "plan_out", "max_unavailable", "deadline")
    values = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    values.update({key: value for key, value in settings.items() if value is not None and key not in _CLI_SETTINGS})
    if settings["project_id"] is not None:
        source = resolved["project_id"].source
        values["project_from"] = "--project-id" if source == "command line" else source
    return Options.of(**values)


def _config_show(args: argparse.Namespace) -> int:
    """The settings a run with these flags would use, where each comes from, and the credentials
    (masked): what a cron line will do, before it does it."""
    from .credentials import discover_auth, discover_project_id

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


async def _connected(args: argparse.Namespace) -> int:
    """apply, plan, rollback and validate --online: against the endpoint, or the sandbox."""
    options = _options(args)  # a bad setting is an error before a sandbox starts
    async with _endpoint(args) as connection:
        if connection:
            options = dataclasses.replace(options, connection=dataclasses.replace(options.connection, **connection))
        if args.command == "validate":
            from .commands import validate_online

            return _summarise(args, await validate_online(args.manifest, options))
        return await _send(args, options)


@asynccontextmanager
async def _endpoint(args: argparse.Namespace) -> AsyncIterator[dict[str, Any]]:
    """Nothing to add for a real endpoint; with ``--sandbox``, a sandbox on a free loopback port
    (seeded with an earlier state of each config the manifest names) and its credentials."""
    if not getattr(args, "sandbox", False):
        yield {}
        return
    from .session import check_default_project
    from .sandbox import SandboxConfig, seed_earlier_states, serve

    project_id = args.project_id or SandboxConfig.project_id
    check_default_project(project_id)
    async with serve(SandboxConfig(project_id=project_id)) as sandbox:
        if args.command in ("apply", "plan"):
            args.sandbox_seeded = seed_earlier_states(sandbox, args.manifest, sheet=args.sheet, encoding=args.encoding)
        yield {"endpoint": sandbox.endpoint, "credentials": sandbox.signer(), "project_id": project_id,
               "region": None}


async def _send(args: argparse.Namespace, options: Options) -> int:
    """apply, plan or rollback, with progress, signal handling and metrics."""
    from . import commands
    from .files import reader_may_leave
    from .logs import Progress
    from .screen import PlanDiff

    run = {"apply": commands.apply, "plan": commands.plan, "rollback": commands.rollback,
           "export": commands.export}[args.command]
    source = getattr(args, {"rollback": "backup_file", "export": "output"}.get(args.command, "manifest"))
    if args.command == "rollback":
        source = expand_patterns(source)
    if args.command == "apply" and args.project_id is not None and not args.sandbox:
        from .planfile import is_plan

        if is_plan(source):
            raise UsageError("--project-id: not for a saved plan, whose rows name their projects")
    stop, stop_now = anyio.Event(), anyio.Event()
    received: list[int] = []
    progress = Progress(args.command, interval=args.progress_interval, bar=not args.no_progress)
    diff = PlanDiff() if args.command == "plan" else None

    def ended(outcome: Any) -> None:
        progress.update(outcome)
        if diff is not None:
            diff.add(outcome)

    summary: Summary | BatchcfgError
    async with anyio.create_task_group() as group:
        group.start_soon(_watch_signals, stop, stop_now, received, args.log_format == "json")
        group.start_soon(progress.report_every_interval)
        try:
            with progress.routed():
                summary = await run(source, options, on_outcome=ended, on_ready=_confirmed(args, options, progress.ready),
                                    stop=stop, stop_now=stop_now)
        except BatchcfgError as exc:
            summary = exc  # raised below, outside the task group, which would wrap it in a group
        finally:
            progress.close()
            group.cancel_scope.cancel()
    if isinstance(summary, BatchcfgError):
        raise summary
    if diff is not None:
        with reader_may_leave():
            diff.show(json_logs=args.log_format == "json")
    summary.signal = received[0] if received else None
    code = _summarise(args, summary)
    if getattr(args, "detailed_exitcode", False) and code == 0 and (summary.counts["changed"] or summary.counts["create"]):
        return EXIT_CHANGES_PENDING
    return code


def _confirmed(args: argparse.Namespace, options: Options, ready: Callable[[int], None]) -> Callable[[int], None]:
    """``ready``, after a person at a terminal said yes to changing configs at a real endpoint
    (not on the sandbox, not in a dry run, not with ``--yes``, and never without a terminal)."""
    asks = (args.command in ("apply", "rollback") and not getattr(args, "yes", False) and not args.dry_run
            and not getattr(args, "sandbox", False) and sys.stdin.isatty() and sys.stderr.isatty())
    if not asks:
        return ready

    def ask(rows: int) -> None:
        connection = options.connection
        where = connection.endpoint or connection.region or "the endpoint"
        project = connection.project_id or os.environ.get("HUAWEICLOUD_SDK_PROJECT_ID", "")
        verb = "put back" if args.command == "rollback" else "change"
        try:
            answer = _answer(f"batchcfg: {args.command}: {rows} row{'' if rows == 1 else 's'}, to {verb} configs at "
                             f"{where}{f' in project {project}' if project else ''}. Go ahead? [y/N] ")
        except KeyboardInterrupt:
            sys.stderr.write("\n")
            error = UsageError("not confirmed (interrupted): nothing was sent")
            error.exit_code = EXIT_INTERRUPTED  # Ctrl-C's own code, as anywhere else
            raise error from None
        if answer not in ("y", "yes"):
            raise UsageError("not confirmed: nothing was sent")
        ready(rows)
    return ask


def _answer(question: str) -> str:
    """The answer to ``question`` at the terminal, where Ctrl-C interrupts (KeyboardInterrupt): the
    run's own SIGINT handling would wait for the line, as its event loop is the one reading it."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.default_int_handler) if main else None
    try:
        sys.stderr.write(question)
        sys.stderr.flush()
        return sys.stdin.readline().strip().lower()
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


async def _watch_signals(stop: anyio.Event, stop_now: anyio.Event, received: list[int], json_logs: bool) -> None:
    """First SIGINT/SIGTERM: graceful stop. Second: stop at once."""
    import logging

    from .screen import say

    if threading.current_thread() is not threading.main_thread():
        return  # called as a library from a worker thread: signals are the host's business
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            received.append(signum)
            if stop.is_set():
                say("stopping at once", json_logs=json_logs, level=logging.ERROR, event="signal", signal=signum)
                stop_now.set()
            else:
                say("stopping: no new requests; waiting for those in flight (again to stop at once)",
                    json_logs=json_logs, level=logging.ERROR, event="signal", signal=signum)
                stop.set()


def _summarise(args: argparse.Namespace, summary: Summary) -> int:
    """The page and the metrics file, then the summary on stderr (naming them) and the report path
    on stdout; the exit code."""
    from .files import reader_may_leave
    from .screen import resume_command, say, show_summary

    json_logs = getattr(args, "log_format", "text") == "json"
    page = _resolved(args)["html"].value
    if page is not None:
        from .html import write_html

        try:
            write_html(page, summary)
            summary.page = page
        except OSError as exc:  # the run is done: say so, and keep its exit code
            summary.notes.append(f"cannot write --html {page} ({exc.strerror or exc})")
    if getattr(args, "metrics_file", None) is not None:
        from .metrics import write_metrics

        try:
            write_metrics(args.metrics_file, args.command, summary)
            summary.metrics = args.metrics_file
        except OSError as exc:  # the run is done: say so, and keep its exit code
            summary.notes.append(f"cannot write --metrics-file {args.metrics_file} ({exc.strerror or exc})")
    with reader_may_leave():  # a closed stdout (`| head -0`) loses the report path, not the code
        if getattr(args, "sandbox_seeded", 0):
            say(f"sandbox: its {args.sandbox_seeded} configs held invented earlier states (every third already as "
                "the manifest has it), so that there was something to change", json_logs=json_logs)
        show_summary(summary, json_logs=json_logs, next_step=resume_command(args.command, args.argv, summary))
    return summary.exit_code


async def _sandbox(args: argparse.Namespace) -> int:
    """``batchcfg sandbox``: serve in the foreground until Ctrl-C."""
    from .auth import ENV_AK, ENV_SK
    from .endpoints import is_loopback
    from .sandbox import SandboxConfig, read_seed, serve

    given = {name: getattr(args, name) for name in ("project_id", "token", "ak", "sk")
             if getattr(args, name) is not None}
    config = SandboxConfig(fail_rate=args.fail_rate, throttle_rps=args.throttle_rps, latency_ms=args.latency_ms,
                           create_missing=args.create_missing, put_semantics=args.put_semantics, **given)
    seeds = read_seed(args.seed) if args.seed else []
    if not is_loopback(args.host):
        print(f"batchcfg: warning: the sandbox listens on {args.host}, beyond this machine, and "
              "accepts fixed test credentials", file=sys.stderr)
    try:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with serve(config, args.host, args.port) as sandbox:
                _seed(sandbox, seeds)
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
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    return 0


def _seed(sandbox: RunningSandbox, seeds: list[dict[str, Any]]) -> None:
    for record in seeds:
        sandbox.seed(record.pop("config_name"), record, record.pop("project_id", ""))
