"""The library's commands: validate, apply, plan, rollback, export.

Each is thin: it opens the run's :class:`~batchcfg.ledger.Ledger`, checks the manifest's rows, and
sends the jobs the one way every command does (:func:`batchcfg.session.send`) with the action that
fits: modify (read, lay the row over, back up, PUT), plan, rollback, read (export), or a saved
plan's (:mod:`batchcfg.actions`).

>>> summary = validate("samples/training_job_configs.csv", Options.of(report=Path("check.csv")))
>>> summary.counts["invalid"], summary.exit_code
(3, 1)
>>> Path("check.csv").unlink()
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from . import credentials, session
from .errors import UsageError
from .ledger import Ledger, writing
from .model import VALID, Job, Outcome, Summary
from .options import Options

# What only sending needs (client, sender, actions, catalog, and aiohttp under them) is imported
# where a run sends: an offline validate starts without it.
if TYPE_CHECKING:
    from .client import Client
    from .export import Listing
    from .sender import Action


def validate(manifest: str | Path, options: Options = Options()) -> Summary:
    """Read and check the manifest; every row ends ``valid`` or ``invalid``. Offline, unless
    ``online``: then also against the specs and engines of each row's project."""
    if options.online:
        return anyio.run(validate_online, manifest, options)
    default_project = credentials.discover_project_id(options.connection.project_id, options.connection.env)
    session.check_default_project(default_project)
    with Ledger(options, manifest, sending=False, command="validate") as ledger:
        with ledger.check(default_project, project_required=False) as checked:
            return ledger.finish(map(_valid_or_invalid, checked.items()))


async def validate_online(manifest: str | Path, options: Options) -> Summary:
    """``validate`` with ``online``, in a running event loop."""
    async with AsyncExitStack() as stack:
        ledger = stack.enter_context(Ledger(options, manifest, sending=False, command="validate"))
        target = session.target(options, ledger)
        checked = stack.enter_context(ledger.check(target.project_id, project_required=True))
        client, sender = await session.sending(stack, target, options, checked.projects)
        catalogs = await session.catalogs(client, sender, checked.projects)
        return ledger.finish(_valid_or_invalid(session.against(item, catalogs)) for item in checked.items())


async def apply(manifest: str | Path, options: Options = Options(), *,
                on_ready: Callable[[int], None] | None = None,
                on_outcome: Callable[[Outcome], None] | None = None,
                stop: anyio.Event | None = None, stop_now: anyio.Event | None = None) -> Summary:
    """Validate, then send every valid row: read its config, lay the row over it (the row is the
    whole body with ``replace``), skip it when that changes nothing (unless ``send_unchanged``),
    back the config up (unless ``no_backup``), then PUT the whole body.

    ``on_ready(n)`` is called once the manifest is checked, with its number of rows;
    ``on_outcome`` as each row ends; ``stop`` and ``stop_now`` stop the run (see
    :class:`session.Events`). Either way the report is written.
    """
    from .planfile import is_plan

    if is_plan(Path(manifest)):
        return await _apply_plan(Path(manifest), options, session.Events(on_ready, on_outcome, stop, stop_now))
    events = session.Events(on_ready, on_outcome, stop, stop_now)
    async with AsyncExitStack() as stack:
        ledger = stack.enter_context(Ledger(options, manifest, sending=not options.dry_run, command="apply"))
        target = session.target(options, ledger)
        checked = stack.enter_context(ledger.check(target.project_id, project_required=True))
        items: Iterator[Job | Outcome] = checked.items()
        if options.dry_run and not options.preflight:
            events.ready(checked.rows)
            return ledger.finish(map(_valid_or_invalid, items))
        client, sender = await session.sending(stack, target, options, checked.projects)
        if options.preflight:
            catalogs = await session.catalogs(client, sender, checked.projects)
            items = (session.against(item, catalogs) for item in items)
        if options.dry_run:
            events.ready(checked.rows)
            return ledger.finish(map(_valid_or_invalid, items))
        action = _modify_action(stack, ledger, client, options)
        events.ready(checked.rows)
        return await session.send(ledger, sender, ledger.to_send(items), action, events, client, checked.rows)


async def _apply_plan(path: Path, options: Options, events: session.Events) -> Summary:
    """``apply`` of a saved plan: exactly what was planned, row by row, each refused when its
    config changed since (see :mod:`batchcfg.planfile`). The whole plan is checked first."""
    from .actions import Planned
    from .planfile import Plan
    from .verify import Verifier

    fixed = [flag for flag, on in (("--replace", options.replace), ("--create-missing", options.create_missing),
                                   ("--send-unchanged", options.send_unchanged), ("--preflight", options.preflight),
                                   ("--failed-manifest", options.outputs.failed_manifest),
                                   ("--sheet", options.input.sheet), ("--encoding", options.input.encoding)) if on]
    if fixed:
        raise UsageError(f"{', '.join(fixed)}: not for a saved plan, which says what to send (plan again with it)")
    async with AsyncExitStack() as stack:
        plan = stack.enter_context(Plan(path, max_rows=options.input.max_rows))
        if options.dry_run:  # the plan is what would be sent: its rows to send valid, the others as planned
            ledger = stack.enter_context(Ledger(options, None, sending=False, command="apply"))
            ledger.summary.inputs = [path]
            events.ready(plan.rows)
            return ledger.finish(_as_planned(job) for job in plan.jobs())
        ledger = stack.enter_context(Ledger(options, None, sending=True, command="apply"))
        ledger.summary.inputs = [path]
        if ledger.chain is not None:
            ledger.chain.check_rows(((job.row, job.config_name) for job in plan.jobs()), "saved plan")
        client, sender = await session.sending(stack, session.target(options, ledger), options, plan.projects)
        backup = session.backup_for(stack, ledger, options)
        action = Planned(client, backup, verifier=Verifier(client, every=options.verify))
        events.ready(plan.rows)
        return await session.send(ledger, sender, ledger.to_send(plan.jobs()), action, events, client, plan.rows)


def _as_planned(job: Job) -> Outcome:
    from .planfile import TO_SEND, PlannedRow

    planned = PlannedRow.decode(job.body)
    return Outcome.of(job, VALID) if planned.status in TO_SEND else planned.outcome(job)


def _modify_action(stack: AsyncExitStack, ledger: Ledger, client: Client, options: Options) -> Action:
    """apply's action: read first and back up (the default), or a plain PUT (``no_backup``)."""
    from .actions import Modify, Put
    from .verify import Verifier

    verifier = Verifier(client, every=options.verify)
    if options.outputs.no_backup and options.replace and options.send_unchanged and not options.create_missing:
        return Put(client, verifier=verifier)  # nothing to read: the row is the whole body, sent whatever it changes
    return Modify(client, session.backup_for(stack, ledger, options), replace=options.replace,
                  send_unchanged=options.send_unchanged, create_missing=options.create_missing, verifier=verifier,
                  columns=checked_columns(ledger))


async def plan(manifest: str | Path, options: Options = Options(), *,
               on_ready: Callable[[int], None] | None = None,
               on_outcome: Callable[[Outcome], None] | None = None,
               stop: anyio.Event | None = None, stop_now: anyio.Event | None = None) -> Summary:
    """Validate, then read each valid row's config and compare it with the body the row would
    send: ``unchanged``, ``changed`` (every field, in ``changes``), ``missing``, or ``invalid``
    when the row laid over the config breaks a rule. Changes nothing."""
    from .actions import Plan

    events = session.Events(on_ready, on_outcome, stop, stop_now)
    async with AsyncExitStack() as stack:
        ledger = stack.enter_context(Ledger(options, manifest, sending=True, command="plan"))
        target = session.target(options, ledger)
        checked = stack.enter_context(ledger.check(target.project_id, project_required=True))
        client, sender = await session.sending(stack, target, options, checked.projects)
        saved = None
        if options.outputs.plan_out is not None:
            from .planfile import PlanWriter

            saved = stack.enter_context(PlanWriter(options.outputs.plan_out, overwrite=options.outputs.overwrite,
                                                   manifest=str(manifest), replace=options.replace))
            events = dataclasses.replace(events, on_outcome=_both(saved.add, events.on_outcome))
        events.ready(checked.rows)
        action = Plan(client, replace=options.replace, create_missing=options.create_missing, saved=saved,
                      columns=checked_columns(ledger))
        summary = await session.send(ledger, sender, ledger.to_send(checked.items()), action, events, client,
                                     checked.rows)
        if saved is not None:
            with writing(saved.path):
                saved.finish(summary.counts, summary.headline)
            summary.saved_plan = saved.path
        return summary


def checked_columns(ledger: Ledger) -> tuple[str, ...]:
    return ledger.manifest.columns if ledger.manifest is not None else ()


def _both(first: Callable[[Outcome], None], then: Callable[[Outcome], None] | None) -> Callable[[Outcome], None]:
    def both(outcome: Outcome) -> None:
        first(outcome)
        if then is not None:
            then(outcome)
    return both


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
    from .verify import Verifier

    events = session.Events(on_ready, on_outcome, stop, stop_now)
    paths = [Path(backup)] if isinstance(backup, str | Path) else [Path(b) for b in backup]
    restore, sent, after = restore_jobs(paths)
    async with AsyncExitStack() as stack:
        ledger = stack.enter_context(Ledger(options, None, sending=True, command="rollback"))
        ledger.summary.inputs = paths
        client, sender = await session.sending(stack, session.target(options, ledger), options,
                                               {job.project_id for job in restore})
        events.ready(len(restore))
        action = Rollback(client, sent, options.force, dry_run=options.dry_run, after=after,
                          verifier=None if options.dry_run else Verifier(client, every=options.verify))
        return await session.send(ledger, sender, ledger.to_send(restore), action, events, client, len(restore))


async def export(output: str | Path, options: Options = Options(), *,
                 on_ready: Callable[[int], None] | None = None,
                 on_outcome: Callable[[Outcome], None] | None = None,
                 stop: anyio.Event | None = None, stop_now: anyio.Event | None = None) -> Summary:
    """Write the current configs of the project (those matching ``name_pattern`` and
    ``config_type``) to ``output`` as a manifest ``apply`` reads back unchanged (``.csv``,
    ``.xlsx`` or ``.jsonl``). Each config is read like a row; the report says which could not
    be, or could not be held exactly by the format (``invalid``), and the manifest holds the
    others. When List gave fewer names than it counted, or may have had more, the summary says
    so and the exit code is 1; the file is written all the same. An existing ``output`` is kept
    unless ``overwrite``."""
    from . import export as exporting
    from .actions import Read
    from .files import check_output_path
    from .logs import log

    output = check_output_path(Path(output), "export", exporting.EXPORT_SUFFIXES)
    if output.exists() and not options.outputs.overwrite:
        raise UsageError(f"{output} exists: choose another name, or --overwrite")
    events = session.Events(on_ready, on_outcome, stop, stop_now)
    async with AsyncExitStack() as stack:
        ledger = stack.enter_context(Ledger(options, None, sending=True, command="export"))
        target = session.target(options, ledger)
        if not target.project_id:
            raise UsageError("export needs a project: --project-id, HUAWEICLOUD_SDK_PROJECT_ID or the "
                             "credentials file")
        client, sender = await session.sending(stack, target, options)
        listing = await exporting.list_names(client, sender, target.project_id, pattern=options.name_pattern,
                                             config_type=options.config_type)
        jobs = [Job(row, target.project_id, name, b"") for row, name in enumerate(listing.names, start=2)]
        found: dict[int, dict[str, Any]] = {}
        events.ready(len(jobs))
        action = exporting.fitting(Read(client, found), found, output.suffix.lower())
        summary = await session.send(ledger, sender, iter(jobs), action, events, client, len(jobs))
        columns, rows = exporting.manifest_table(
            ((job.config_name, job.project_id, found[job.row]) for job in jobs if job.row in found),
            project_column=options.project_column)
        with writing(output):
            exporting.write_manifest(output, columns, rows)
        summary.output = output
        for note in _export_notes(listing, exporting.refused_by_apply(columns, rows)):
            log.warning("%s", note)
            summary.notes.append(note)
        summary.incomplete = bool(listing.shortfall)
        return summary


def _export_notes(listing: Listing, refused: list[tuple[str, str]]) -> Iterator[str]:
    """What an export should say besides its counts: what List did not give, and the configs
    written exactly that apply refuses as they are."""
    if listing.shortfall:
        yield listing.shortfall
    if refused:
        shown = "; ".join(f"{name} ({problems})" for name, problems in refused[:3])
        more = f"; and {len(refused) - 3} more" if len(refused) > 3 else ""
        yield (f"{len(refused)} exported config{'s hold' if len(refused) > 1 else ' holds'} control characters that "
               f"apply refuses in a manifest: {shown}{more}. Their rows are written exactly, and plan calls them "
               "invalid until those cells are changed")


def _valid_or_invalid(item: Job | Outcome) -> Outcome:
    """A checked row's record when nothing is sent: ``valid`` (saying which checks wait for the
    current config), or the row's ``invalid`` outcome."""
    return Outcome.of(item, VALID, error_message=item.note) if isinstance(item, Job) else item


