"""One run of batchcfg: manifest -> checked rows -> requests -> outcomes -> report.

>>> summary = validate("samples/training_job_configs.csv", Options(report=Path("check.csv")))
>>> summary.counts["invalid"], summary.exit_code                             # doctest: +SKIP
(2, 1)
>>> summary = anyio.run(apply, "samples/training_job_configs.csv", Options(sandbox=True))  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from . import auth, errors, recovery
from .client import Client, parse_endpoint
from .errors import ManifestError, UsageError
from .manifest import Manifest, open_manifest
from .recovery import TO_FIX_STATUSES
from .report import (CANCELLED, INVALID, SKIPPED, STATUSES, VALID, Journal, Outcome, check_report_path,
                     default_report_path, journal_path, write_report)
from .runner import (DEFAULT_CONCURRENCY, DEFAULT_MAX_RETRIES, DEFAULT_RATE, DEFAULT_TIMEOUT, Job,
                     Runner)
from .schema import Problem, check_project_id, check_row

EXIT_OK = 0
EXIT_ROWS_FAILED = 1
EXIT_CANNOT_START = 2
EXIT_INTERRUPTED = 130
DEFAULT_MAX_ROWS = 1_000_000
_LOOPBACK = ("localhost", "::1")
_REGION_RE = re.compile(r"[a-z]{2}(?:-[a-z]+)+-[0-9]+")
# The SDK's region table puts CN-Hong Kong under .myhuaweicloud.cn.
_REGION_DOMAINS = {"ap-southeast-1": "myhuaweicloud.cn"}


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
    elapsed: float = 0.0
    requests: int = 0
    retries: int = 0
    max_rate: float = 0.0     # the --rate asked for
    lowest_rate: float = 0.0  # the lowest request rate throttling brought the run down to
    stop_reason: str = ""
    interrupted: bool = False

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
    if endpoint:
        url = parse_endpoint(endpoint)
        if url.scheme == "http" and not allow_http and not _is_loopback(url.host or ""):
            raise UsageError(f"endpoint {endpoint!r} is plain http: credentials and configs would "
                             "cross the network unencrypted; use https://, or --allow-http")
        return str(url)
    if region:
        if not _REGION_RE.fullmatch(region):
            raise UsageError(f"--region {region!r} is not a region name such as cn-north-4; "
                             "or pass --endpoint URL")
        return f"https://modelarts.{region}.{_REGION_DOMAINS.get(region, 'myhuaweicloud.com')}"
    raise UsageError("no endpoint: pass --endpoint URL or --region REGION (or --sandbox to try "
                     "the tool)")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host.lower() in _LOOPBACK


def validate(manifest: str | Path, options: Options = Options()) -> Summary:
    """Read and check the manifest offline; every row ends ``valid`` or ``invalid``."""
    run = _Run(manifest, options)
    default_project = auth.discover_project_id(options.project_id, options.env)
    _check_default_project(default_project)
    jobs = run.check(default_project, project_required=False)
    run.outcomes.extend(_valid(job) for job in jobs)
    return run.finish()


async def apply(manifest: str | Path, options: Options = Options(), *,
                on_ready: Callable[[int], None] | None = None,
                on_outcome: Callable[[Outcome], None] | None = None,
                stop: anyio.Event | None = None, stop_now: anyio.Event | None = None) -> Summary:
    """Validate, then send every valid row.

    ``on_ready(n)`` is called once the manifest is checked, with the number of rows to send;
    ``on_outcome`` as each of them ends. Setting ``stop`` stops the run gracefully: no new request
    starts, those in flight finish, the unsent rows end ``cancelled``. Setting ``stop_now`` also
    abandons the requests in flight. Either way the report is written.
    """
    run = _Run(manifest, options)
    done = recovery.done_keys(options.resume) if options.resume else set()
    credentials: auth.Auth
    async with AsyncExitStack() as stack:
        if options.sandbox:
            from .sandbox import SandboxConfig, serve

            default_project = options.project_id or SandboxConfig.project_id
            _check_default_project(default_project)
            sandbox = await stack.enter_async_context(serve(SandboxConfig(project_id=default_project)))
            endpoint, credentials = sandbox.endpoint, sandbox.signer()
        else:
            default_project = auth.discover_project_id(options.project_id, options.env)
            _check_default_project(default_project)
            endpoint = endpoint_for(options.endpoint, options.region, allow_http=options.allow_http)
            credentials = auth.discover_auth(options.env, options.token_file)
        jobs = run.check(default_project, project_required=True)
        if options.dry_run:
            run.outcomes.extend(_valid(job) for job in jobs)
            return run.finish()
        run.journal = stack.enter_context(run.open_journal())
        for outcome in run.outcomes:  # the invalid rows
            run.journal.write(outcome)
        to_send = []
        for job in jobs:
            if (job.project_id, job.config_name, job.body_sha256) in done:
                run.record(Outcome(job.row, job.config_name, job.project_id, SKIPPED,
                                   error_message=f"succeeded in an earlier run ({options.resume})",
                                   body_sha256=job.body_sha256))
            else:
                to_send.append(job)
        run.on_outcome = on_outcome
        if on_ready is not None:
            on_ready(len(to_send))
        if not to_send:
            return run.finish()

        client = await stack.enter_async_context(
            Client(endpoint, credentials, timeout=options.timeout, connections=options.concurrency,
                   ca_bundle=options.ca_bundle))
        runner = Runner(client, rate=options.rate, concurrency=options.concurrency,
                        max_retries=options.max_retries, max_failures=options.max_failures,
                        on_outcome=run.record)
        pending = run.pending = {job.row: job for job in to_send}
        try:
            async with anyio.create_task_group() as group:
                if stop is not None:
                    group.start_soon(_stop_when_set, stop, runner, None)
                if stop_now is not None:
                    group.start_soon(_stop_when_set, stop_now, runner, group.cancel_scope)
                await runner.run(to_send)
                group.cancel_scope.cancel()
        finally:
            # Rows cut off by a hard stop (a second Ctrl-C) still get a record.
            for job in list(pending.values()):
                run.record(Outcome(job.row, job.config_name, job.project_id, CANCELLED,
                                   error_code=errors.CANCELLED, body_sha256=job.body_sha256,
                                   error_message="stopped at once: may or may not have been applied"))
            summary = run.summary
            summary.elapsed, summary.requests, summary.retries = runner.elapsed, runner.requests, runner.retries
            summary.max_rate, summary.lowest_rate = options.rate, runner.lowest_rate
            summary.stop_reason = runner.stop_reason
            summary.interrupted = stop is not None and stop.is_set()
        return run.finish()


async def _stop_when_set(event: anyio.Event, runner: Runner, scope: anyio.CancelScope | None) -> None:
    await event.wait()
    runner.stop("not sent: the run was interrupted")
    if scope is not None:
        scope.cancel()


class _Run:
    """The state of one run: its manifest, outcomes so far, journal and output paths."""

    def __init__(self, manifest: str | Path, options: Options) -> None:
        self.options = options
        self.report = check_report_path(options.report or default_report_path())
        self.failed_manifest = (recovery.check_failed_manifest_path(options.failed_manifest)
                                if options.failed_manifest else None)
        self.manifest = open_manifest(manifest, sheet=options.sheet, encoding=options.encoding)
        self.outcomes: list[Outcome] = []
        self.summary = Summary(Counter(), self.report, self.failed_manifest)
        self.journal: Journal | None = None
        self.pending: dict[int, Job] = {}
        self.on_outcome: Callable[[Outcome], None] | None = None

    def check(self, default_project: str, *, project_required: bool) -> list[Job]:
        jobs, invalid = check_manifest(self.manifest, default_project, project_required=project_required,
                                       max_rows=self.options.max_rows)
        self.outcomes.extend(invalid)
        return jobs

    def open_journal(self) -> Journal:
        """The journal beside the report; one left by an interrupted run is continued only when
        it is what this run resumes from, never overwritten."""
        path = journal_path(self.report)
        if path.exists() and (self.options.resume is None
                              or path.resolve() != self.options.resume.resolve()):
            raise UsageError(f"{path} is the journal of an interrupted run: resume from it with "
                             f"--resume {path}, or move it away")
        return Journal(path)

    def record(self, outcome: Outcome) -> None:
        """One row ended: journal it at once, then tell the caller."""
        self.pending.pop(outcome.row, None)
        self.outcomes.append(outcome)
        if self.journal is not None:
            self.journal.write(outcome)
        if self.on_outcome is not None:
            self.on_outcome(outcome)

    def finish(self) -> Summary:
        """Write the report (sorted by row, atomically), the failed-row manifest, drop the journal."""
        self.outcomes.sort(key=lambda outcome: outcome.row)
        self.summary.counts.update(outcome.status for outcome in self.outcomes)
        write_report(self.report, self.outcomes)
        if self.failed_manifest is not None:
            recovery.write_failed_manifest(self.manifest, self.outcomes, self.failed_manifest)
        if self.journal is not None:
            self.journal.close()
            self.journal.path.unlink(missing_ok=True)
            self.journal = None
        return self.summary


def check_manifest(manifest: Manifest, default_project: str, *, project_required: bool,
                   max_rows: int = DEFAULT_MAX_ROWS) -> tuple[list[Job], list[Outcome]]:
    """Read and validate every row: valid rows become jobs, the others ``invalid`` outcomes.

    A config name that appears more than once for the same project makes each of those rows
    invalid: two PUTs to one config would race. More than ``max_rows`` rows is a
    :class:`ManifestError`: nothing is sent.
    """
    checked: list[tuple[int, str, str, bytes | None, list[Problem]]] = []
    rows_by_target: dict[tuple[str, str], list[int]] = defaultdict(list)
    for count, row in enumerate(manifest.rows(), start=1):
        if count > max_rows:
            raise ManifestError(f"{manifest.path}: more than {max_rows} rows (--max-rows); nothing was sent")
        result = check_row(row.cells, default_project_id=default_project,
                           project_required=project_required)
        body = None
        if result.ok:
            body = json.dumps(result.body, ensure_ascii=False, separators=(",", ":")).encode()
        if result.config_name:
            rows_by_target[(result.project_id, result.config_name)].append(row.number)
        checked.append((row.number, result.config_name, result.project_id, body, list(result.problems)))

    duplicates = {target: numbers for target, numbers in rows_by_target.items() if len(numbers) > 1}
    jobs: list[Job] = []
    outcomes: list[Outcome] = []
    for number, name, project_id, body, problems in checked:
        others = duplicates.get((project_id, name))
        if others:
            rows = ", ".join(str(n) for n in others if n != number)
            problems.insert(0, Problem("config_name", errors.DUPLICATE,
                                       f"{name!r} also appears in row {rows} for the same project"))
        if problems:
            outcomes.append(Outcome(number, name, project_id, INVALID, error_code=problems[0].code,
                                    error_message=_describe(problems)))
        else:
            assert body is not None
            jobs.append(Job(number, project_id, name, body, hashlib.sha256(body).hexdigest()))
    return jobs, outcomes


def _describe(problems: list[Problem]) -> str:
    """``column: message`` for each problem; codes shown where they differ from the first."""
    first = problems[0].code
    return "; ".join(str(p) if p.code == first else f"{p} ({p.code})" for p in problems)


def _valid(job: Job) -> Outcome:
    return Outcome(job.row, job.config_name, job.project_id, VALID, body_sha256=job.body_sha256)


def _check_default_project(project_id: str) -> None:
    if project_id and (problem := check_project_id(project_id)) is not None:
        raise UsageError(f"project id {problem.message}")


def iter_statuses(summary: Summary) -> Iterator[tuple[str, int]]:
    """(status, count) in the contract's order, nonzero only."""
    return ((status, summary.counts[status]) for status in STATUSES if summary.counts[status])
