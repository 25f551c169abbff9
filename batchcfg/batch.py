"""One run of batchcfg: manifest -> checked rows -> requests -> outcomes -> report.

>>> summary = validate("samples/training_job_configs.csv", Options(report=Path("check.csv")))
>>> summary.counts["invalid"], summary.exit_code                             # doctest: +SKIP
(3, 1)
>>> summary = anyio.run(apply, "samples/training_job_configs.csv", Options(sandbox=True))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from . import auth, errors, recovery, regions
from .defaults import (AUTO_MAX_CONCURRENCY, DEFAULT_CONCURRENCY, DEFAULT_MAX_RETRIES, DEFAULT_MAX_ROWS,
                       DEFAULT_RATE, DEFAULT_TIMEOUT)
from .errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_ROWS_FAILED, BatchcfgError, OutputError, UsageError
from .manifest import open_manifest
from .recovery import TO_FIX_STATUSES
from .report import (CANCELLED, INVALID, SKIPPED, VALID, Journal, Outcome, check_output_path,
                     default_backup_path, default_report_path, journal_path, write_report)
from .schema import check_project_id
from .spool import Job, Spool, check, describe

# What only sending needs (client, runner, migrate, catalog, and aiohttp under them) is imported
# where a run sends: an offline validate starts without it.
if TYPE_CHECKING:
    from .catalog import Catalog
    from .runner import Action, Runner
    from .sandbox import RunningSandbox



@dataclass(frozen=True)
class Options:
    """Everything a run needs besides the manifest path; the CLI builds one from its flags."""

    sheet: str | None = None
    encoding: str | None = None
    report: Path | None = None
    failed_manifest: Path | None = None
    endpoint: str | None = None
    region: str | None = None
    project_id: str | None = None
    token_file: Path | None = None
    rate: float = DEFAULT_RATE
    concurrency: int = DEFAULT_CONCURRENCY
    max_retries: int = DEFAULT_MAX_RETRIES
    max_failures: int = 0  # 0: no limit
    timeout: float = DEFAULT_TIMEOUT
    resume: Path | None = None
    backup: Path | None = None   # where apply backs configs up (default: beside the report)
    no_backup: bool = False
    skip_unchanged: bool = False
    force: bool = False          # rollback: restore configs changed since the run
    online: bool = False         # validate: check spec_id, workers and engine_id against the project
    preflight: bool = False      # apply: the same before sending
    max_rows: int = DEFAULT_MAX_ROWS
    ca_bundle: Path | None = None
    allow_http: bool = False
    dry_run: bool = False
    sandbox: bool = False
    env: Mapping[str, str] = field(default_factory=lambda: os.environ, repr=False, compare=False)


@dataclass
class Summary:
    """What a run did: rows per status, where the report is, and how the sending went."""

    counts: Counter[str]
    report: Path
    failed_manifest: Path | None = None
    backup: Path | None = None
    elapsed: float = 0.0
    requests: int = 0
    retries: int = 0
    max_rate: float = 0.0     # the --rate asked for
    lowest_rate: float = 0.0  # the lowest request rate throttling brought the run down to
    stop_reason: str = ""
    interrupted: bool = False
    error_codes: Counter[str] = field(default_factory=Counter)  # of the rows that did not succeed
    http_statuses: Counter[int] = field(default_factory=Counter)  # of every attempt; 0: no answer
    latency_p50: float | None = None  # seconds per attempt
    latency_p95: float | None = None

    @property
    def request_rate(self) -> float:
        """Requests (attempts) per second while sending."""
        return self.requests / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_ROWS_FAILED if any(self.counts[s] for s in TO_FIX_STATUSES) else EXIT_OK


def endpoint_for(endpoint: str | None, region: str | None, *, allow_http: bool = False) -> str:
    """``--endpoint``, else ``https://modelarts.{region}.myhuaweicloud.com`` from ``--region``.
    A plain ``http://`` endpoint is refused unless its host is loopback or ``allow_http``."""
    from .client import is_loopback, parse_endpoint

    if endpoint:
        url = parse_endpoint(endpoint)
        if url.scheme == "http" and not allow_http and not is_loopback(url.host or ""):
            raise UsageError(f"endpoint {endpoint!r} is plain http: credentials and configs would "
                             "cross the network unencrypted; use https://, or --allow-http")
        return str(url)
    if region:
        return regions.endpoint(region)
    raise UsageError("no endpoint: pass --endpoint URL or --region REGION (or --sandbox to try "
                     "the tool)")


def validate(manifest: str | Path, options: Options = Options()) -> Summary:
    """Read and check the manifest; every row ends ``valid`` or ``invalid``. Offline, unless
    ``online``: then also against the specs and engines of each row's project."""
    if options.online:
        return anyio.run(_validate_online, manifest, options)
    default_project = auth.discover_project_id(options.project_id, options.env)
    _check_default_project(default_project)
    with _Run(options, manifest, sending=False) as run:
        with run.check(default_project, project_required=False) as checked:
            return run.finish(map(_valid_or_invalid, checked.items()))


async def _validate_online(manifest: str | Path, options: Options) -> Summary:
    async with AsyncExitStack() as stack:
        run = stack.enter_context(_Run(options, manifest, sending=False))
        endpoint, credentials, default_project, sandbox = await _connect(stack, options)
        checked = stack.enter_context(run.check(default_project, project_required=True))
        catalogs = await _preflight(stack, checked, endpoint, credentials, options)
        return run.finish(_valid_or_invalid(_against(item, catalogs)) for item in checked.items())


async def _preflight(stack: AsyncExitStack, checked: Spool, endpoint: str, credentials: auth.Auth,
                     options: Options) -> dict[str, Catalog]:
    """The specs and engines of every project the valid rows name (exit 2 if unreadable)."""
    from .catalog import fetch as fetch_catalogs
    from .client import Client

    async with Client(endpoint, credentials, timeout=options.timeout, ca_bundle=options.ca_bundle) as client:
        return await fetch_catalogs(client, checked.projects, max_retries=options.max_retries)


def _against(item: Job | Outcome, catalogs: dict[str, Catalog]) -> Job | Outcome:
    """A job that fits its project's catalog (or when there are none), else an ``invalid`` row."""
    if isinstance(item, Outcome) or not catalogs:
        return item
    problems = catalogs[item.project_id].problems(json.loads(item.body))
    if not problems:
        return item
    return Outcome(item.row, item.config_name, item.project_id, INVALID, error_code=problems[0].code,
                   error_message=describe(problems), body_sha256=item.body_sha256)


def _valid_or_invalid(item: Job | Outcome) -> Outcome:
    return _valid(item) if isinstance(item, Job) else item


async def apply(manifest: str | Path, options: Options = Options(), *,
                on_ready: Callable[[int], None] | None = None,
                on_outcome: Callable[[Outcome], None] | None = None,
                stop: anyio.Event | None = None, stop_now: anyio.Event | None = None) -> Summary:
    """Validate, then send every valid row: read its config first and back it up (unless
    ``no_backup``; skipped when unchanged with ``skip_unchanged``), then PUT it.

    ``on_ready(n)`` is called once the manifest is checked, with its number of rows;
    ``on_outcome`` as each row ends. Setting ``stop`` stops the run gracefully: no new request
    starts, those in flight finish, the unsent rows end ``cancelled``. Setting ``stop_now`` also
    abandons the requests in flight. Either way the report is written.
    """
    events = _Events(on_ready, on_outcome, stop, stop_now)
    done = recovery.done_keys(options.resume) if options.resume else set()
    async with AsyncExitStack() as stack:
        run = stack.enter_context(_Run(options, manifest, sending=not options.dry_run))
        endpoint, credentials, default_project, sandbox = await _connect(stack, options)
        checked = stack.enter_context(run.check(default_project, project_required=True))
        if sandbox is not None:
            _seed(sandbox, checked)
        catalogs = await _preflight(stack, checked, endpoint, credentials, options) if options.preflight else {}
        if options.dry_run:
            events.ready(checked.rows)
            return run.finish(_valid_or_invalid(_against(item, catalogs)) for item in checked.items())
        from .migrate import Backup, Modify
        from .runner import put

        action: Action = put
        if options.skip_unchanged or not options.no_backup:
            backup = None
            if not options.no_backup:
                path = options.backup or recovery.backup_of(options.resume) or default_backup_path(run.report)
                with _writing(path, error=UsageError):
                    backup = stack.enter_context(Backup(path))
                run.summary.backup = path
            action = Modify(backup, options.skip_unchanged)
        items = (_against(item, catalogs) for item in checked.items()) if catalogs else checked.items()
        events.ready(checked.rows)
        return await _send(stack, run, run.to_send(items, done), action, endpoint, credentials, events)


async def plan(manifest: str | Path, options: Options = Options(), *,
               on_ready: Callable[[int], None] | None = None,
               on_outcome: Callable[[Outcome], None] | None = None,
               stop: anyio.Event | None = None, stop_now: anyio.Event | None = None) -> Summary:
    """Validate, then read each valid row's config and compare it with the body the row would
    send: ``unchanged``, ``changed`` (what, in ``changes``), or ``missing``. Changes nothing."""
    events = _Events(on_ready, on_outcome, stop, stop_now)
    async with AsyncExitStack() as stack:
        run = stack.enter_context(_Run(options, manifest, sending=True))
        endpoint, credentials, default_project, sandbox = await _connect(stack, options)
        checked = stack.enter_context(run.check(default_project, project_required=True))
        if sandbox is not None:
            _seed(sandbox, checked)
        events.ready(checked.rows)
        from .migrate import plan as compare

        return await _send(stack, run, run.to_send(checked.items()), compare, endpoint, credentials, events)


async def rollback(backup: str | Path, options: Options = Options(), *,
                   on_ready: Callable[[int], None] | None = None,
                   on_outcome: Callable[[Outcome], None] | None = None,
                   stop: anyio.Event | None = None, stop_now: anyio.Event | None = None) -> Summary:
    """Put every config of a backup file back as it was, unless it changed since the run that
    backed it up (``skipped`` with ``conflict``; ``force`` restores it anyway). A config already
    as backed up is ``skipped`` (``unchanged``): rolling back twice is harmless. The report's
    ``row`` is the backup record's number."""
    events = _Events(on_ready, on_outcome, stop, stop_now)
    from .migrate import Rollback, restore_jobs

    restore, sent = restore_jobs(Path(backup))
    async with AsyncExitStack() as stack:
        run = stack.enter_context(_Run(options, None, sending=True))
        endpoint, credentials, _, _ = await _connect(stack, options)
        events.ready(len(restore))
        return await _send(stack, run, run.to_send(restore), Rollback(sent, options.force), endpoint, credentials,
                           events)


@dataclass(frozen=True)
class _Events:
    """What the caller of a run wants to hear, and how it stops the run."""

    on_ready: Callable[[int], None] | None
    on_outcome: Callable[[Outcome], None] | None
    stop: anyio.Event | None
    stop_now: anyio.Event | None

    def ready(self, rows: int) -> None:
        if self.on_ready is not None:
            self.on_ready(rows)


async def _connect(stack: AsyncExitStack, options: Options
                   ) -> tuple[str, auth.Auth, str, RunningSandbox | None]:
    """Endpoint, credentials and default project: the embedded sandbox's with ``sandbox``."""
    if options.sandbox:
        from .sandbox import SandboxConfig, serve

        default_project = options.project_id or SandboxConfig.project_id
        _check_default_project(default_project)
        sandbox = await stack.enter_async_context(serve(SandboxConfig(project_id=default_project)))
        return sandbox.endpoint, sandbox.signer(), default_project, sandbox
    default_project = auth.discover_project_id(options.project_id, options.env)
    _check_default_project(default_project)
    endpoint = endpoint_for(options.endpoint, options.region, allow_http=options.allow_http)
    return endpoint, auth.discover_auth(options.env, options.token_file), default_project, None


def _seed(sandbox: RunningSandbox, checked: Spool) -> None:
    """Give the embedded sandbox an earlier state of every config the manifest names."""
    from .sandbox import earlier_state

    for item in checked.items():
        if isinstance(item, Job):
            sandbox.seed(item.config_name, earlier_state(json.loads(item.body), item.row), item.project_id)


async def _send(stack: AsyncExitStack, run: _Run, jobs: Iterator[Job], action: Action, endpoint: str,
                credentials: auth.Auth, events: _Events) -> Summary:
    """Run ``action`` on every job through one client and runner; the report is written even when
    the run is stopped."""
    from .client import Client
    from .runner import Runner

    options = run.options
    run.on_outcome = events.on_outcome
    client = await stack.enter_async_context(
        Client(endpoint, credentials, timeout=options.timeout,
               connections=options.concurrency or AUTO_MAX_CONCURRENCY, ca_bundle=options.ca_bundle))
    runner = Runner(client, rate=options.rate, concurrency=options.concurrency,
                    max_retries=options.max_retries, max_failures=options.max_failures,
                    on_outcome=run.record, action=action)
    run.stop_sending = runner.stop
    try:
        async with anyio.create_task_group() as group:
            if events.stop is not None:
                group.start_soon(_stop_when_set, events.stop, runner, None)
            if events.stop_now is not None:
                group.start_soon(_stop_when_set, events.stop_now, runner, group.cancel_scope)
            await runner.run(jobs)
            group.cancel_scope.cancel()
    finally:
        # A hard stop (a second Ctrl-C) cuts rows off in flight, and leaves rows unread.
        for job in list(run.pending.values()):
            run.record(_cancelled(job, "stopped at once: may or may not have been applied"))
        for job in jobs:
            run.record(_cancelled(job, "not sent: the run was interrupted"))
        summary = run.summary
        summary.elapsed, summary.requests, summary.retries = runner.elapsed, runner.requests, runner.retries
        summary.max_rate, summary.lowest_rate = options.rate, runner.lowest_rate
        summary.http_statuses = runner.statuses
        if runner.latencies:
            import numpy as np

            summary.latency_p50, summary.latency_p95 = (float(q) for q in np.quantile(runner.latencies, [0.5, 0.95]))
        summary.stop_reason = runner.stop_reason
        summary.interrupted = events.stop is not None and events.stop.is_set()
    return run.finish()


async def _stop_when_set(event: anyio.Event, runner: Runner, scope: anyio.CancelScope | None) -> None:
    await event.wait()
    runner.stop("not sent: the run was interrupted")
    if scope is not None:
        scope.cancel()


class _Run:
    """One run's bookkeeping. When sending, each row's outcome goes to the journal (not memory)
    as it ends, and the sorted report is written from the journal at the end. Without sending,
    outcomes come in row order and go straight into the report."""

    def __init__(self, options: Options, manifest: str | Path | None, *, sending: bool) -> None:
        self.options = options
        self.report = check_output_path(options.report or default_report_path(), "--report")
        self.failed_manifest = (check_output_path(options.failed_manifest, "--failed-manifest",
                                                  recovery.FAILED_SUFFIXES)
                                if options.failed_manifest and manifest is not None else None)
        self.manifest = (open_manifest(manifest, sheet=options.sheet, encoding=options.encoding)
                         if manifest is not None else None)
        self.journal = self._open_journal() if sending else None
        self.summary = Summary(Counter(), self.report, self.failed_manifest)
        self.pending: dict[int, Job] = {}  # sent or about to be, not yet ended
        self.to_fix: dict[int, tuple[str, str]] = {}  # row -> (status, "code: message")
        self.on_outcome: Callable[[Outcome], None] | None = None
        self.stop_sending: Callable[[str], None] | None = None  # the runner's stop(), while sending

    def __enter__(self) -> _Run:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.journal is not None:
            self.journal.close()
            if self.journal.created and not self.journal.records and self.journal.path.exists():
                self.journal.path.unlink()  # stopped before any row ended: nothing to keep

    def _open_journal(self) -> Journal:
        """The journal beside the report; one left by an interrupted run is continued only when
        it is what this run resumes from, never overwritten."""
        path = journal_path(self.report)
        if path.exists() and (self.options.resume is None
                              or path.resolve() != self.options.resume.resolve()):
            raise UsageError(f"{path} is the journal of an interrupted run: resume from it with "
                             f"--resume {path}, or move it away")
        with _writing(path, error=UsageError):
            return Journal(path, self.options.resume, on_error=self._journal_failed)

    def _journal_failed(self, error: OSError) -> None:
        if self.stop_sending is not None:
            self.stop_sending(f"not sent: the journal cannot be written ({_reason(error)})")

    def check(self, default_project: str, *, project_required: bool) -> Spool:
        assert self.manifest is not None
        return check(self.manifest, default_project, project_required=project_required,
                     max_rows=self.options.max_rows)

    def to_send(self, items: Iterable[Job | Outcome],
                done: Collection[tuple[str, str, str]] = ()) -> Iterator[Job]:
        """The jobs among ``items``, each marked pending as it goes out; the other items
        (invalid rows, and rows ``done`` in the run resumed from) are recorded on the way."""
        for item in items:
            if isinstance(item, Outcome):
                self.record(item)
            elif (item.project_id, item.config_name, item.body_sha256) in done:
                self.record(Outcome(item.row, item.config_name, item.project_id, SKIPPED,
                                    error_message=f"succeeded in an earlier run ({self.options.resume})",
                                    body_sha256=item.body_sha256))
            else:
                self.pending[item.row] = item
                yield item

    def record(self, outcome: Outcome) -> None:
        """One row ended: journal it at once, count it, then tell the caller."""
        self.pending.pop(outcome.row, None)
        if self.journal is not None:
            self.journal.write(outcome)
        self.summary.counts[outcome.status] += 1
        if outcome.error_code:
            self.summary.error_codes[outcome.error_code] += 1
        if self.failed_manifest is not None and outcome.status in TO_FIX_STATUSES:
            error = f"{outcome.error_code}: {outcome.error_message}" if outcome.error_code else ""
            self.to_fix[outcome.row] = (outcome.status, error)
        if self.on_outcome is not None:
            self.on_outcome(outcome)

    def finish(self, in_row_order: Iterable[Outcome] = ()) -> Summary:
        """Write the report, atomically: the outcomes given (already in row order), or else the
        journal's, sorted. Then the failed-row manifest; then the journal is no longer needed."""
        journal = self.journal
        kept = ""
        if journal is not None:
            journal.flush()
            if journal.error is not None:
                raise OutputError(f"cannot write the journal {journal.path} ({_reason(journal.error)}), so "
                                  "the run stopped. It holds the rows that ended before; once there is room, "
                                  f"--resume {journal.path} sends the others (again)")
            kept = f"; every row's result is in the journal {journal.path}"
        with _writing(self.report, kept):
            write_report(self.report, self._recorded(in_row_order) if journal is None else journal.outcomes())
        if self.failed_manifest is not None and self.manifest is not None:
            with _writing(self.failed_manifest, kept):
                recovery.write_failed_manifest(self.manifest, self.to_fix, self.failed_manifest)
        if journal is not None:
            journal.close()
            journal.path.unlink(missing_ok=True)
        return self.summary

    def _recorded(self, outcomes: Iterable[Outcome]) -> Iterator[Outcome]:
        for outcome in outcomes:
            self.record(outcome)
            yield outcome


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


@contextmanager
def _writing(path: Path, kept: str = "", error: type[BatchcfgError] = OutputError) -> Iterator[None]:
    """An OSError while writing ``path`` (a full disk) becomes one line: an :class:`OutputError`,
    or a :class:`UsageError` when nothing has been sent yet."""
    try:
        yield
    except OSError as exc:
        raise error(f"cannot write {path} ({_reason(exc)}){kept}") from None


def _cancelled(job: Job, message: str) -> Outcome:
    return Outcome(job.row, job.config_name, job.project_id, CANCELLED, error_code=errors.CANCELLED,
                   error_message=message, body_sha256=job.body_sha256)


def _valid(job: Job) -> Outcome:
    return Outcome(job.row, job.config_name, job.project_id, VALID, body_sha256=job.body_sha256)


def _check_default_project(project_id: str) -> None:
    if project_id and (problem := check_project_id(project_id)) is not None:
        raise UsageError(f"project id {problem.message}")
