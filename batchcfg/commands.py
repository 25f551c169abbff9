"""The library's commands: validate, apply, plan, rollback.

Each is thin: it opens the run's :class:`~batchcfg.ledger.Ledger`, checks the manifest's rows,
and sends the jobs through one shared way (:func:`_send`) with the action that fits: put, modify
(read, back up, PUT), plan or rollback (:mod:`batchcfg.actions`).

>>> summary = validate("samples/training_job_configs.csv", Options.of(report=Path("check.csv")))
>>> summary.counts["invalid"], summary.exit_code
(3, 1)
>>> Path("check.csv").unlink()
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from . import credentials, resume
from .errors import UsageError
from .ledger import Ledger, writing
from .model import INVALID, VALID, Job, Outcome, Summary
from .options import Options, Sending
from .report import default_backup_path
from .schema import check_project_id, describe
from .settings import AUTO_MAX_CONCURRENCY

# What only sending needs (client, sender, actions, catalog, and aiohttp under them) is imported
# where a run sends: an offline validate starts without it.
if TYPE_CHECKING:
    from .auth import Auth
    from .backup import Backup
    from .catalog import Catalog
    from .client import Client
    from .sender import Action, Sender


def validate(manifest: str | Path, options: Options = Options()) -> Summary:
    """Read and check the manifest; every row ends ``valid`` or ``invalid``. Offline, unless
    ``online``: then also against the specs and engines of each row's project."""
    if options.online:
        return anyio.run(validate_online, manifest, options)
    default_project = credentials.discover_project_id(options.connection.project_id, options.connection.env)
    check_default_project(default_project)
    with Ledger(options, manifest, sending=False, command="validate") as ledger:
        with ledger.check(default_project, project_required=False) as checked:
            return ledger.finish(map(_valid_or_invalid, checked.items()))


async def validate_online(manifest: str | Path, options: Options) -> Summary:
    """``validate`` with ``online``, in a running event loop."""
    async with AsyncExitStack() as stack:
        ledger = stack.enter_context(Ledger(options, manifest, sending=False, command="validate"))
        target = _target(options, ledger)
        checked = stack.enter_context(ledger.check(target.project_id, project_required=True))
        client, sender = await _sending(stack, target, options)
        catalogs = await _catalogs(client, sender, checked.projects)
        return ledger.finish(_valid_or_invalid(_against(item, catalogs)) for item in checked.items())


@dataclass(frozen=True)
class Events:
    """What the caller of a run wants to hear, and how it stops the run: setting ``stop`` stops
    it gracefully (no new request starts, those in flight finish, the unsent rows end
    ``cancelled``); setting ``stop_now`` also abandons the requests in flight."""

    on_ready: Callable[[int], None] | None = None
    on_outcome: Callable[[Outcome], None] | None = None
    stop: anyio.Event | None = None
    stop_now: anyio.Event | None = None

    def ready(self, rows: int) -> None:
        if self.on_ready is not None:
            self.on_ready(rows)


async def apply(manifest: str | Path, options: Options = Options(), *,
                on_ready: Callable[[int], None] | None = None,
                on_outcome: Callable[[Outcome], None] | None = None,
                stop: anyio.Event | None = None, stop_now: anyio.Event | None = None) -> Summary:
    """Validate, then send every valid row: read its config, lay the row over it (the row is the
    whole body with ``replace``), skip it when that changes nothing (unless ``send_unchanged``),
    back the config up (unless ``no_backup``), then PUT the whole body.

    ``on_ready(n)`` is called once the manifest is checked, with its number of rows;
    ``on_outcome`` as each row ends; ``stop`` and ``stop_now`` stop the run (see
    :class:`Events`). Either way the report is written.
    """
    from .planfile import is_plan

    if is_plan(Path(manifest)):
        return await _apply_plan(Path(manifest), options, Events(on_ready, on_outcome, stop, stop_now))
    events = Events(on_ready, on_outcome, stop, stop_now)
    done = resume.done_keys(options.resume) if options.resume else set()
    async with AsyncExitStack() as stack:
        ledger = stack.enter_context(Ledger(options, manifest, sending=not options.dry_run, command="apply"))
        target = _target(options, ledger)
        checked = stack.enter_context(ledger.check(target.project_id, project_required=True))
        items: Iterator[Job | Outcome] = checked.items()
        if options.dry_run and not options.preflight:
            events.ready(checked.rows)
            return ledger.finish(map(_valid_or_invalid, items))
        client, sender = await _sending(stack, target, options)
        if options.preflight:
            catalogs = await _catalogs(client, sender, checked.projects)
            items = (_against(item, catalogs) for item in items)
        if options.dry_run:
            events.ready(checked.rows)
            return ledger.finish(map(_valid_or_invalid, items))
        action = _modify_action(stack, ledger, client, options)
        events.ready(checked.rows)
        return await _send(ledger, sender, ledger.to_send(items, done), action, events, client, checked.rows)


async def _apply_plan(path: Path, options: Options, events: Events) -> Summary:
    """``apply`` of a saved plan: exactly what was planned, row by row, each refused when its
    config changed since (see :mod:`batchcfg.planfile`)."""
    from .actions import Planned
    from .planfile import planned_jobs

    done = resume.done_keys(options.resume) if options.resume else set()
    jobs = list(planned_jobs(path))
    async with AsyncExitStack() as stack:
        ledger = stack.enter_context(Ledger(options, None, sending=True, command="apply"))
        ledger.summary.inputs = [path]
        client, sender = await _sending(stack, _target(options, ledger), options)
        backup = _backup(stack, ledger, options)
        events.ready(len(jobs))
        return await _send(ledger, sender, ledger.to_send(jobs, done), Planned(client, backup), events, client,
                           len(jobs))


def _backup(stack: AsyncExitStack, ledger: Ledger, options: Options) -> Backup | None:
    """The run's backup (None with ``no_backup``): a new file, or the one a resumed run's chain
    started."""
    from .backup import Backup

    if options.outputs.no_backup:
        return None
    continued = resume.backup_of(options.resume)  # a resumed run adds to its own chain's backup
    path = options.outputs.backup or continued or default_backup_path(ledger.report)
    with writing(path, error=UsageError):
        backup = stack.enter_context(Backup(path, new=path != continued))
    ledger.summary.backup = path
    return backup


def _modify_action(stack: AsyncExitStack, ledger: Ledger, client: Client, options: Options) -> Action:
    """apply's action: read first and back up (the default), or a plain PUT (``no_backup``)."""
    from .actions import Modify, Put

    if options.outputs.no_backup and options.replace and options.send_unchanged and not options.create_missing:
        return Put(client)  # nothing to read: the row is the whole body, sent whatever it changes
    return Modify(client, _backup(stack, ledger, options), replace=options.replace,
                  send_unchanged=options.send_unchanged, create_missing=options.create_missing)


async def plan(manifest: str | Path, options: Options = Options(), *,
               on_ready: Callable[[int], None] | None = None,
               on_outcome: Callable[[Outcome], None] | None = None,
               stop: anyio.Event | None = None, stop_now: anyio.Event | None = None) -> Summary:
    """Validate, then read each valid row's config and compare it with the body the row would
    send: ``unchanged``, ``changed`` (every field, in ``changes``), ``missing``, or ``invalid``
    when the row laid over the config breaks a rule. Changes nothing."""
    from .actions import Plan

    events = Events(on_ready, on_outcome, stop, stop_now)
    async with AsyncExitStack() as stack:
        ledger = stack.enter_context(Ledger(options, manifest, sending=True, command="plan"))
        target = _target(options, ledger)
        checked = stack.enter_context(ledger.check(target.project_id, project_required=True))
        client, sender = await _sending(stack, target, options)
        saved = None
        if options.outputs.plan_out is not None:
            from .planfile import PlanWriter

            saved = stack.enter_context(PlanWriter(options.outputs.plan_out, overwrite=options.outputs.overwrite,
                                                   manifest=str(manifest), replace=options.replace))
            ledger.summary.saved_plan = options.outputs.plan_out
        events.ready(checked.rows)
        action = Plan(client, replace=options.replace, create_missing=options.create_missing, saved=saved)
        return await _send(ledger, sender, ledger.to_send(checked.items()), action, events, client, checked.rows)


async def rollback(backup: str | Path | Sequence[str | Path], options: Options = Options(), *,
                   on_ready: Callable[[int], None] | None = None,
                   on_outcome: Callable[[Outcome], None] | None = None,
                   stop: anyio.Event | None = None, stop_now: anyio.Event | None = None) -> Summary:
    """Put every config of one or more backup files back as it was (newest backup first), unless
    it changed since the run that backed it up (``conflict``; ``force`` restores it anyway). A
    config already as backed up is ``skipped`` (``unchanged``): rolling back twice is harmless.
    With ``dry_run`` nothing is sent: a row that would be restored is ``changed``. The report's
    ``row`` numbers the configs in the order restored."""
    from .actions import Rollback
    from .backup import restore_jobs

    events = Events(on_ready, on_outcome, stop, stop_now)
    paths = [Path(backup)] if isinstance(backup, str | Path) else [Path(b) for b in backup]
    restore, sent = restore_jobs(paths)
    async with AsyncExitStack() as stack:
        ledger = stack.enter_context(Ledger(options, None, sending=True, command="rollback"))
        ledger.summary.inputs = paths
        client, sender = await _sending(stack, _target(options, ledger), options)
        events.ready(len(restore))
        action = Rollback(client, sent, options.force, dry_run=options.dry_run)
        return await _send(ledger, sender, ledger.to_send(restore), action, events, client, len(restore))


async def export(output: str | Path, options: Options = Options(), *,
                 on_ready: Callable[[int], None] | None = None,
                 on_outcome: Callable[[Outcome], None] | None = None,
                 stop: anyio.Event | None = None, stop_now: anyio.Event | None = None) -> Summary:
    """Write the current configs of the project (those matching ``name_pattern`` and
    ``config_type``) to ``output`` as a manifest ``apply`` reads back unchanged (``.csv``,
    ``.xlsx`` or ``.jsonl``). Each config is read like a row; the report says which could not
    be, and the manifest holds the others. An existing ``output`` is kept unless ``overwrite``."""
    from datetime import datetime, timezone

    from . import export as exporting
    from .actions import Read
    from .files import check_output_path

    output = check_output_path(Path(output), "export", exporting.EXPORT_SUFFIXES)
    if output.exists() and not options.outputs.overwrite:
        raise UsageError(f"{output} exists: choose another name, or --overwrite")
    events = Events(on_ready, on_outcome, stop, stop_now)
    async with AsyncExitStack() as stack:
        ledger = stack.enter_context(Ledger(options, None, sending=True, command="export"))
        target = _target(options, ledger)
        if not target.project_id:
            raise UsageError("export needs a project: --project-id, HUAWEICLOUD_SDK_PROJECT_ID or the "
                             "credentials file")
        client, sender = await _sending(stack, target, options)
        names = await exporting.list_names(client, sender, target.project_id, pattern=options.name_pattern,
                                           config_type=options.config_type)
        jobs = [Job(row, target.project_id, name, b"") for row, name in enumerate(names, start=2)]
        found: dict[int, dict[str, Any]] = {}
        events.ready(len(jobs))
        summary = await _send(ledger, sender, iter(jobs), Read(client, found), events, client, len(jobs))
        when = datetime.now(timezone.utc).isoformat(timespec="seconds")
        columns, rows = exporting.manifest_table(
            ((job.config_name, job.project_id, found[job.row]) for job in jobs if job.row in found),
            project_column=options.project_column, when=when)
        with writing(output):
            exporting.write_manifest(output, columns, rows)
        summary.output = output
        return summary


async def _send(ledger: Ledger, sender: Sender, jobs: Iterator[Job], action: Action, events: Events,
                client: Client, rows: int | None = None) -> Summary:
    """The one way a command sends: ``action`` on every job through the sender (never more
    workers than ``rows``); every row gets its one record, and the report is written, even when
    the run is stopped, after the connections are closed (their sockets count as open files)."""
    ledger.on_outcome = events.on_outcome
    ledger.stop_sending = sender.stop
    try:
        async with _stoppable(sender, events, ledger.options.sending):
            await sender.run(jobs, action, ledger.record, rows)
    finally:
        ledger.close_sending(sender, jobs, interrupted=events.stop is not None and events.stop.is_set())
        await client.close()
    return ledger.finish()


@asynccontextmanager
async def _stoppable(sender: Sender, events: Events, sending: Sending) -> AsyncIterator[None]:
    """The block runs until it ends, or until ``events.stop_now`` cancels it; ``events.stop``
    stops the sender gracefully, and so does the run's ``deadline``."""
    async with anyio.create_task_group() as group:
        for event, scope in ((events.stop, None), (events.stop_now, group.cancel_scope)):
            if event is not None:
                group.start_soon(_stop_when_set, event, sender, scope)
        if sending.deadline is not None:
            group.start_soon(_stop_at_deadline, sender, sending)
        yield
        group.cancel_scope.cancel()


async def _stop_at_deadline(sender: Sender, sending: Sending) -> None:
    await sending.clock.sleep(sending.deadline or 0.0)
    sender.stop(f"not sent: the run's --deadline of {sending.deadline:g} s passed")


async def _stop_when_set(event: anyio.Event, sender: Sender, scope: anyio.CancelScope | None) -> None:
    await event.wait()
    sender.stop("not sent: the run was interrupted")
    if scope is not None:
        scope.cancel()


@dataclass(frozen=True)
class _Target:
    """Where a run sends, as whom, and the project of rows without a ``project_id`` cell."""

    endpoint: str
    credentials: Auth
    project_id: str


def _target(options: Options, ledger: Ledger | None = None) -> _Target:
    """The endpoint, credentials and default project of a run; a run whose rows cannot all have a
    project (none given, and no ``project_id`` column in the ledger's manifest) cannot start."""
    connection = options.connection
    from .endpoints import endpoint_for

    project_id = credentials.discover_project_id(connection.project_id, connection.env)
    check_default_project(project_id)
    if not project_id and ledger is not None and ledger.manifest is not None \
            and "project_id" not in ledger.manifest.columns:
        raise UsageError("no project id: pass --project-id, set HUAWEICLOUD_SDK_PROJECT_ID, or add a "
                         "project_id column to the manifest")
    endpoint = endpoint_for(connection.endpoint, connection.region, allow_http=connection.allow_http,
                            env=connection.env)
    found = connection.credentials or credentials.discover_auth(connection.env, connection.token_file)
    if ledger is not None:
        ledger.summary.endpoint, ledger.summary.project_id = endpoint, project_id
    return _Target(endpoint, found, project_id)


async def _sending(stack: AsyncExitStack, target: _Target, options: Options) -> tuple[Client, Sender]:
    """The run's client (closed with ``stack``) and sender."""
    from .client import Client
    from .retry import RetryPolicy
    from .sender import Sender

    connection, sending = options.connection, options.sending
    client = await stack.enter_async_context(
        Client(target.endpoint, target.credentials, timeout=connection.timeout,
               connections=_connections(sending.concurrency or AUTO_MAX_CONCURRENCY), ca_bundle=connection.ca_bundle))
    sender = Sender(rate=sending.rate, concurrency=sending.concurrency, retry=RetryPolicy(sending.max_retries),
                    max_failures=sending.max_failures, max_unavailable=sending.max_unavailable, clock=sending.clock)
    return client, sender


def _connections(wanted: int) -> int:
    """Connections for ``wanted`` in flight, within the open-file limit: the files a run writes
    (the report, the journal, the backup) need descriptors too, after the sockets."""
    import logging
    import resource

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    room = max(8, soft - 64) if soft != resource.RLIM_INFINITY else wanted
    if wanted > room:
        logging.getLogger("batchcfg").warning("%d requests in flight would need more open files than the limit "
                                              "(ulimit -n %d) allows: at most %d", wanted, soft, room)
    return min(wanted, room)


async def _catalogs(client: Client, sender: Sender, projects: set[str]) -> dict[str, Catalog]:
    """The specs and engines of every project the valid rows name (exit 2 if unreadable)."""
    from .catalog import fetch

    return await fetch(client, sender, projects)


def _against(item: Job | Outcome, catalogs: dict[str, Catalog]) -> Job | Outcome:
    """A job that fits its project's catalog (or when there are none), else an ``invalid`` row."""
    if isinstance(item, Outcome) or not catalogs:
        return item
    problems = catalogs[item.project_id].problems(json.loads(item.body))
    if not problems:
        return item
    return Outcome.of(item, INVALID, error_code=problems[0].code, error_message=describe(problems))


def _valid_or_invalid(item: Job | Outcome) -> Outcome:
    """A checked row's record when nothing is sent: ``valid`` (saying which checks wait for the
    current config), or the row's ``invalid`` outcome."""
    return Outcome.of(item, VALID, error_message=item.note) if isinstance(item, Job) else item


def check_default_project(project_id: str) -> None:
    if project_id and (problem := check_project_id(project_id)) is not None:
        raise UsageError(f"project id {problem.message}")
