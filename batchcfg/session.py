"""How a command runs: where it sends and as whom (:class:`Target`), its client and sender, the
one way every command sends its jobs (:func:`send`: each row one record, the report written
however the run ends), stopping (signals, ``--deadline``), the preflight catalogs, the backup.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio

from . import credentials
from .errors import UsageError
from .ledger import Ledger, writing
from .model import INVALID, Job, Outcome, Summary
from .options import Options, Sending
from .report import default_backup_path
from .schema import check_project_id, describe
from .settings import AUTO_MAX_CONCURRENCY

if TYPE_CHECKING:
    from .auth import Auth
    from .client import Answer
    from .backup import Backup
    from .catalog import Catalog
    from .client import Client
    from .sender import Action, Sender


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


def backup_for(stack: AsyncExitStack, ledger: Ledger, options: Options) -> Backup | None:
    """The run's backup (None with ``no_backup``): a new file, or the one a resumed run's chain
    started (a resumed run adds to its own chain's backup, and to no other)."""
    from .backup import Backup

    if options.outputs.no_backup:
        return None
    continued = ledger.chain.backup if ledger.chain is not None else None
    if continued is not None and options.outputs.backup is not None and options.outputs.backup != continued:
        raise UsageError(f"--backup {options.outputs.backup}: the run resumed from {ledger.chain.path} "  # type: ignore[union-attr]
                         f"adds to its own chain's backup, {continued}; leave --backup out")
    path = options.outputs.backup or continued or default_backup_path(ledger.report)
    with writing(path, error=UsageError):
        backup = stack.enter_context(Backup(path, new=path != continued))
    ledger.summary.backup = path
    return backup


async def send(ledger: Ledger, sender: Sender, jobs: Iterator[Job], action: Action, events: Events,
                client: Client, rows: int | None = None) -> Summary:
    """The one way a command sends: ``action`` on every job through the sender (never more
    workers than ``rows``); every row gets its one record, and the report is written, even when
    the run is stopped, after the connections are closed (their sockets count as open files)."""
    ledger.on_outcome = events.on_outcome
    ledger.stop_sending = sender.stop
    try:
        async with stoppable(sender, events, ledger.options.sending):
            await sender.run(jobs, action, ledger.record, rows)
    finally:
        ledger.close_sending(sender, jobs, interrupted=events.stop is not None and events.stop.is_set())
        await client.close()
    return ledger.finish()


@asynccontextmanager
async def stoppable(sender: Sender, events: Events, sending: Sending) -> AsyncIterator[None]:
    """The block runs until it ends, or until ``events.stop_now`` cancels it; ``events.stop``
    stops the sender gracefully, and so does the run's ``deadline``."""
    async with anyio.create_task_group() as group:
        for event, scope in ((events.stop, None), (events.stop_now, group.cancel_scope)):
            if event is not None:
                group.start_soon(stop_when_set, event, sender, scope)
        if sending.deadline is not None:
            group.start_soon(stop_at_deadline, sender, sending)
        yield
        group.cancel_scope.cancel()


async def stop_at_deadline(sender: Sender, sending: Sending) -> None:
    await sending.clock.sleep(sending.deadline or 0.0)
    sender.stop(f"not sent: the run's --deadline of {sending.deadline:g} s passed")


async def stop_when_set(event: anyio.Event, sender: Sender, scope: anyio.CancelScope | None) -> None:
    await event.wait()
    sender.stop("not sent: the run was interrupted")
    if scope is not None:
        scope.cancel()


@dataclass(frozen=True)
class Target:
    """Where a run sends, as whom, and the project of rows without a ``project_id`` cell; where
    the credentials and the project id came from (for messages)."""

    endpoint: str
    credentials: Auth
    project_id: str
    credentials_from: str = ""
    project_from: str = ""


def target(options: Options, ledger: Ledger | None = None) -> Target:
    """The endpoint, credentials and default project of a run; a run whose rows cannot all have a
    project (none given, and no ``project_id`` column in the ledger's manifest) cannot start."""
    connection = options.connection
    from .endpoints import endpoint_for

    project_id, project_from = credentials.found_project_id(connection.project_id, connection.env,
                                                            connection.project_from)
    check_default_project(project_id)
    if not project_id and ledger is not None and ledger.manifest is not None \
            and "project_id" not in ledger.manifest.columns:
        raise UsageError("no project id: pass --project-id, set HUAWEICLOUD_SDK_PROJECT_ID, or add a "
                         "project_id column to the manifest")
    endpoint = endpoint_for(connection.endpoint, connection.region, allow_http=connection.allow_http,
                            env=connection.env)
    found, found_in = ((connection.credentials, "the credentials given") if connection.credentials is not None
                       else credentials.found_auth(connection.env, connection.token_file))
    if ledger is not None:
        ledger.summary.endpoint, ledger.summary.project_id = endpoint, project_id
    return Target(endpoint, found, project_id, found_in, project_from)


async def sending(stack: AsyncExitStack, target: Target, options: Options,
                  projects: Iterable[str] = ()) -> tuple[Client, Sender]:
    """The run's client (closed with ``stack``) and sender, once the :func:`preflight` of the
    ``projects`` the run names passed (unless ``no_preflight``)."""
    from .client import Client
    from .retry import RetryPolicy
    from .sender import Sender

    connection, sending = options.connection, options.sending
    client = await stack.enter_async_context(
        Client(target.endpoint, target.credentials, timeout=connection.timeout,
               connections=connections(sending.concurrency or AUTO_MAX_CONCURRENCY), ca_bundle=connection.ca_bundle))
    sender = Sender(rate=sending.rate, concurrency=sending.concurrency, retry=RetryPolicy(sending.max_retries),
                    max_failures=sending.max_failures, max_unavailable=sending.max_unavailable, clock=sending.clock)
    if not options.no_preflight:
        await preflight(client, sender, target, projects)
    return client, sender


def connections(wanted: int) -> int:
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


async def catalogs(client: Client, sender: Sender, projects: set[str]) -> dict[str, Catalog]:
    """The specs and engines of every project the valid rows name (exit 2 if unreadable)."""
    from .catalog import fetch

    return await fetch(client, sender, projects)


def against(item: Job | Outcome, catalogs: dict[str, Catalog]) -> Job | Outcome:
    """A job that fits its project's catalog (or when there are none), else an ``invalid`` row."""
    if isinstance(item, Outcome) or not catalogs:
        return item
    problems = catalogs[item.project_id].problems(json.loads(item.body))
    if not problems:
        return item
    return Outcome.of(item, INVALID, error_code=problems[0].code, error_message=describe(problems))


async def preflight(client: Client, sender: Sender, target: Target, projects: Iterable[str] = ()) -> None:
    """Before a run reads or sends anything of its rows: one cheap read (List, one config a page,
    counted in the rate) for each project the run names. A dead endpoint, refused credentials or a
    project the endpoint does not know stop the run here, in one line (a :class:`UsageError`, exit
    2), within ``--timeout`` and a few seconds: connection errors and 5xx are tried again briefly
    (:data:`~batchcfg.retry.BRIEF`), a timeout is not."""
    from functools import partial

    from .retry import BRIEF

    for project in sorted(set(projects) or ({target.project_id} if target.project_id else set())):
        answer = await sender.call(partial(client.list_configs, project, (("per_page", "1"),)), retry=BRIEF)
        if answer is None:
            raise UsageError(f"preflight: stopped before {target.endpoint} answered ({sender.stop_reason})")
        if not answer.ok:
            raise UsageError(_refused(answer, target, project))


def _refused(answer: Answer, target: Target, project: str) -> str:
    """Why the preflight's read failed, in a user's words: what to check, and where it came from."""
    what = f"{answer.error_code}: {answer.error_message}".rstrip(": ")
    skip = "; nothing was sent (--no-preflight skips this check)"
    if answer.status == 0:
        return f"cannot reach {target.endpoint}: {answer.error_message}; nothing was sent"
    if "project" in answer.error_message.lower() and answer.status in (400, 403, 404):
        given = f" (from {target.project_from})" if project == target.project_id and target.project_from else ""
        return f"{target.endpoint} does not know project {project}{given} ({what}): check the project id{skip}"
    if answer.status in (401, 403):
        return (f"{target.endpoint} refused the credentials ({what}): check {target.credentials_from or 'them'}"
                f"{skip}")
    if answer.status >= 500 or answer.status == 429:
        return f"{target.endpoint} is unavailable (HTTP {answer.status}, {what}): try again later{skip}"
    if answer.status == 404 and answer.error_code.startswith(("APIGW.", "APIG.", "HTTP.")):
        return f"{target.endpoint} does not serve ModelArts' training job configs ({what}): check the endpoint{skip}"
    return f"{target.endpoint} answered the first read with HTTP {answer.status} ({what}){skip}"


def check_default_project(project_id: str) -> None:
    if project_id and (problem := check_project_id(project_id)) is not None:
        raise UsageError(f"project id {problem.message}")
