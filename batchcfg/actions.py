"""What happens to one row: each action is a function of the :class:`~batchcfg.sender.Sender`, the
:class:`~batchcfg.model.Job` and the row's :class:`~batchcfg.model.Outcome` (``cancelled`` until
settled), and returns that outcome.

- :class:`Put`: the plain Modify, the row's body PUT as it is (``--replace --no-backup
  --send-unchanged``: nothing to read).
- :class:`Read`: read the config, for ``export``.
- :class:`Plan`: read the config, lay the row over it, say what the PUT would change.
- :class:`Modify`: the same, then (when something changes) back the config up, never changing
  what could not be saved first, PUT the whole body, and read it back when the run verifies it.
- :class:`Planned`: ``apply`` of a saved plan: each row's body exactly as planned.
- :class:`Rollback`: put a backed-up body back, unless the config changed since the run; delete
  a config the run created only while it is exactly as the run created it.

Every read is checked before it is trusted (:func:`batchcfg.merge.check_details`): an answer for
another config, or with a field of the wrong type, fails the row (``BATCHCFG.BAD_RESPONSE``) and
nothing is written or backed up for it.

The body sent is always whole (:mod:`batchcfg.merge`): the result is the same whether the server
merges or replaces. The API has no conditional PUT, so an edit another client makes between a
row's read and its write is overwritten: a row's read takes the rate slot of its write with it, so
the two follow each other at once (the sender measures the window), and the canary
(:mod:`batchcfg.verify`) reads changes back. Reads count against the rate limit; the report's
``attempts`` count the write's attempts (or the read's, for a row that ends at its read).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, NamedTuple

from . import errors
from .backup import Backup
from .change import Change, render
from .client import Answer, Client
from .merge import Patch, check_details, diff, exact_differences, whole, writable_body
from .model import (CHANGED, CONFLICT, CREATE, CREATED, FAILED, INVALID, MISSING, SKIPPED, SUCCEEDED, UNCHANGED,
                    Job, Outcome)
from .planfile import PlanWriter, PlannedRow
from .schema import PARAM_PREFIX, check_body, describe, encode_body
from .sender import Request, Sender
from .verify import Ticket, Verifier

log = logging.getLogger(__name__)


def settle(outcome: Outcome, answer: Answer | None, status: str = SUCCEEDED) -> Outcome:
    """Fill ``outcome`` from the final answer: ``status`` when it is a success, ``failed`` when
    not; unchanged (``cancelled``) when nothing was sent."""
    if answer is None:
        return outcome
    outcome.http_status = answer.status or None
    outcome.error_code, outcome.error_message = answer.error_code, answer.error_message
    outcome.request_id = answer.request_id
    outcome.status = status if answer.ok else FAILED
    return outcome


Encoded = tuple[bytes, str]  # a body as sent, and its SHA-256


def encoded_body(body: dict[str, Any]) -> Encoded:
    data = encode_body(body)
    return data, hashlib.sha256(data).hexdigest()


def is_missing(answer: Answer) -> bool:
    """The config does not exist: 404 from ModelArts (the gateway's 404 means a wrong path)."""
    return answer.status == 404 and not answer.error_code.startswith(("APIGW.", "APIG."))


class Found(NamedTuple):
    """A config as read: the Details answer, checked (None when the config does not exist), and
    its writable fields (``{}`` then)."""

    details: dict[str, Any] | None
    current: dict[str, Any]


class _Action:
    """An action that sends through one client; ``replace``: the row is the whole body;
    ``verifier``: the run's read-backs (None: nothing is read back); ``columns``: the manifest's,
    to say which empty cells kept a value."""

    def __init__(self, client: Client, *, replace: bool = False, verifier: Verifier | None = None,
                 columns: Sequence[str] = ()) -> None:
        self.client = client
        self.replace = replace
        self.verifier = verifier
        self.columns = columns

    async def _look(self, sender: Sender, job: Job, outcome: Outcome, *, hold: bool = False) -> Found | None:
        """The row's config as it is now; or None, with ``outcome`` failed (or still
        ``cancelled``: the run stopped first). The read's HTTP status and request id are noted in
        ``outcome``, and for a config that does not exist its error; the status stays
        ``cancelled`` until the caller or a write settles it. ``hold``: the read takes the rate
        slot of the row's write with it."""
        answer = await sender.call(partial(self.client.get_config, job.project_id, job.config_name),
                                   job=job, outcome=outcome, hold=hold)
        if answer is None:
            return None
        if not answer.ok and not is_missing(answer) or answer.ok and answer.body is None:
            settle(outcome, answer)
            return None
        outcome.http_status, outcome.request_id = answer.status, answer.request_id
        if not answer.ok:
            outcome.error_code, outcome.error_message = answer.error_code, answer.error_message
            return Found(None, {})
        assert answer.body is not None
        problem = check_details(job.config_name, answer.body)
        if problem is not None:
            outcome.status, outcome.error_code = FAILED, errors.BAD_RESPONSE
            outcome.error_message = f"the server's answer to the read is not the config asked for, or not as the " \
                                    f"API describes it: {problem}; nothing was changed"
            return None
        return Found(answer.body, writable_body(answer.body))

    def _whole(self, job: Job, current: dict[str, Any], outcome: Outcome, *,
               creating: bool = False) -> dict[str, Any] | None:
        """The whole body the row sends: laid over ``current`` (or, with ``replace``, the row
        itself; ``current`` is empty when ``creating``). None, with ``outcome`` invalid, when the
        body breaks a rule (a whole row was checked offline, but not for a config to create). A
        field the row does not touch is sent back as the server holds it: only the row's own
        fields, and the rules of the whole config, can make the row invalid. The manifest's empty
        cells whose field the config holds a value for are noted as ``kept``."""
        patch = Patch.decode(job.body)
        body = whole(current, patch.fields) if self.replace else patch.over(current)
        problems = check_body(body) if creating or not self.replace else []
        if problems and not creating:
            touched = {*patch.fields, *patch.unset}
            if patch.labels or any(name.startswith(PARAM_PREFIX) for name in patch.unset):
                touched.add("parameter")
            problems = [p for p in problems if p.code in (errors.CONFLICT, errors.REQUIRED)
                        or p.column.split("[")[0] in touched]
        if not self.replace and not creating and self.columns:
            outcome.kept = tuple(patch.kept(current, self.columns))
            if outcome.kept:
                log.debug("row %d %s: empty cells kept the config's value: %s", job.row, job.config_name,
                          ", ".join(outcome.kept))
        if problems:
            outcome.status, outcome.error_code = INVALID, problems[0].code
            outcome.error_message = "laid over the current config: " + describe(problems)
            return None
        return body

    async def _gated(self, sender: Sender, outcome: Outcome, step: Callable[[Ticket], Awaitable[Outcome]]) -> Outcome:
        """``step(ticket)`` once through the canary's gate (without a verifier: a ticket that reads
        nothing back), the row counted by the canary when it ends; ``outcome`` as it is when the
        run stopped first."""
        ticket = Ticket(False, False) if self.verifier is None else await self.verifier.admit(sender)
        if ticket is None:
            return outcome
        try:
            return await step(ticket)
        finally:
            if self.verifier is not None:
                self.verifier.leave(ticket, outcome)

    async def _write(self, sender: Sender, job: Job, outcome: Outcome, request: Request,
                     status: str = SUCCEEDED) -> bool:
        """Send the row's write (PUT, POST or DELETE); ``outcome`` settled by its answer, with the
        write's attempts. True when it succeeded."""
        outcome.attempts = 0
        answer = await sender.call(request, job=job, outcome=outcome, write=True)
        settle(outcome, answer, status)
        return answer is not None and answer.ok

    async def _put(self, sender: Sender, job: Job, outcome: Outcome, ticket: Ticket, body: dict[str, Any],
                   encoded: Encoded | None = None) -> dict[str, Any] | None:
        """PUT ``body``, the whole config (``encoded``: its bytes and their hash, when made
        already); read it back when the ticket says so. Returns the config as read back, when it was."""
        data, sha256 = encoded or encoded_body(body)
        request = partial(self.client.put_config, job.project_id, job.config_name, data, sha256)
        if await self._write(sender, job, outcome, request) and ticket.verify and self.verifier is not None:
            return await self.verifier.check(sender, job, outcome, ticket, body, changed=_names(outcome.changes))
        return None


def _names(changes: tuple[Change, ...]) -> set[str]:
    return {change.name for change in changes}


class Put(_Action):
    """The plain Modify: PUT the row's body (with ``--replace``, the whole config: every field
    of it is the row's to change)."""

    async def __call__(self, sender: Sender, job: Job, outcome: Outcome) -> Outcome:
        return await self._gated(sender, outcome, partial(self._put_row, sender, job, outcome))

    async def _put_row(self, sender: Sender, job: Job, outcome: Outcome, ticket: Ticket) -> Outcome:
        request = partial(self.client.put_config, job.project_id, job.config_name, job.body, job.body_sha256 or None)
        if await self._write(sender, job, outcome, request) and ticket.verify and self.verifier is not None:
            # Nothing was read first: every field is the row's, and one the server keeps otherwise did not take.
            await self.verifier.check(sender, job, outcome, ticket, Patch.decode(job.body).fields, changed=None)
        return outcome


class Read(_Action):
    """``export``: read the config; its writable body goes into ``found`` by row."""

    def __init__(self, client: Client, found: dict[int, dict[str, Any]]) -> None:
        super().__init__(client)
        self.found = found

    async def __call__(self, sender: Sender, job: Job, outcome: Outcome) -> Outcome:
        found = await self._look(sender, job, outcome)
        if found is not None and found.details is None:
            outcome.status = FAILED  # listed, then gone before it was read
        elif found is not None:
            self.found[job.row] = found.current
            outcome.status, outcome.error_code, outcome.error_message = SUCCEEDED, "", ""
        return outcome


class Plan(_Action):
    """``unchanged``, ``changed`` (with ``changes``), ``missing`` (``create`` with
    ``create_missing``), ``invalid`` (the row laid over the config breaks a rule), or ``failed``
    to read. With a saved plan, the config as read and the body to send are staged there for the
    row (the plan takes every row's outcome from the run's ledger)."""

    def __init__(self, client: Client, *, replace: bool = False, create_missing: bool = False,
                 saved: PlanWriter | None = None, columns: Sequence[str] = ()) -> None:
        super().__init__(client, replace=replace, columns=columns)
        self.create_missing = create_missing
        self.saved = saved  # plan --out

    async def __call__(self, sender: Sender, job: Job, outcome: Outcome) -> Outcome:
        found = await self._look(sender, job, outcome)  # a plan's attempts are its read's
        if found is None:
            return outcome
        creating = found.details is None
        if creating and not self.create_missing:
            outcome.status = MISSING
            return outcome
        outcome.error_code = outcome.error_message = ""
        body = self._whole(job, found.current, outcome, creating=creating)
        if body is None:
            return outcome
        outcome.changes = tuple(diff(found.current, body))
        outcome.status = CREATE if creating else CHANGED if outcome.changes else UNCHANGED
        if self.saved is not None and outcome.status != UNCHANGED:
            self.saved.stage(job.row, None if creating else found.current, body)
        return outcome


class Modify(_Action):
    """``apply``: read the config, lay the row over it, skip it when that changes nothing (unless
    ``send_unchanged``), back the config up (unless ``backup`` is None), then PUT the whole body
    (or, with ``create_missing``, create a config that does not exist)."""

    def __init__(self, client: Client, backup: Backup | None, *, replace: bool = False, send_unchanged: bool = False,
                 create_missing: bool = False, verifier: Verifier | None = None, columns: Sequence[str] = ()) -> None:
        super().__init__(client, replace=replace, verifier=verifier, columns=columns)
        self.backup = backup
        self.send_unchanged = send_unchanged
        self.create_missing = create_missing

    async def __call__(self, sender: Sender, job: Job, outcome: Outcome) -> Outcome:
        return await self._gated(sender, outcome, partial(self._modify, sender, job, outcome))

    async def _modify(self, sender: Sender, job: Job, outcome: Outcome, ticket: Ticket) -> Outcome:
        found = await self._look(sender, job, outcome, hold=True)
        if found is not None and found.details is None and self.create_missing:
            body = self._whole(job, {}, outcome, creating=True)
            return outcome if body is None else await self._create(sender, job, outcome, ticket, body)
        if found is not None and found.details is None:
            outcome.status = FAILED
        if found is None or found.details is None:
            if outcome.status == FAILED and outcome.error_code != errors.BAD_RESPONSE:
                outcome.error_message = f"could not read the config first, so nothing was changed: " \
                                        f"{outcome.error_message}"
            return outcome
        body = self._whole(job, found.current, outcome)
        if body is None:
            return outcome
        outcome.changes = tuple(diff(found.current, body))
        if not outcome.changes and not self.send_unchanged:
            outcome.status, outcome.error_code, outcome.error_message = SKIPPED, "", "unchanged"
            return outcome
        return await self._change(sender, job, outcome, ticket, found.current, body)

    async def _change(self, sender: Sender, job: Job, outcome: Outcome, ticket: Ticket, current: dict[str, Any],
                      body: dict[str, Any]) -> Outcome:
        """Back ``current`` up, then PUT ``body``."""
        outcome.error_code = outcome.error_message = ""
        encoded = encoded_body(body)  # once: the backup's hash, and the PUT
        if not await self._backed_up(sender, job, current, body, outcome, encoded[1]):
            return outcome
        shown = await self._put(sender, job, outcome, ticket, body, encoded)
        if shown is not None and self.backup is not None and outcome.status == SUCCEEDED:
            self.backup.note_after(job, writable_body(shown))  # what "changed since the run" is measured from
        return outcome

    async def _create(self, sender: Sender, job: Job, outcome: Outcome, ticket: Ticket,
                      body: dict[str, Any]) -> Outcome:
        """The config does not exist: create it (``POST``). Once the server said it was created,
        it is read back, and the backup records it as the server shows it: rollback deletes it
        only while it is exactly that. A POST answered "already exists" (someone else created it
        meanwhile) fails the row, and nothing goes into the backup for it."""
        outcome.error_code = outcome.error_message = ""
        outcome.changes = tuple(diff({}, body))
        request = partial(self.client.create_config, job.project_id, encode_body({"config_name": job.config_name, **body}))
        if not await self._write(sender, job, outcome, request, CREATED):
            return outcome
        shown: dict[str, Any] | None = None
        if self.backup is not None or ticket.verify:
            probe = Outcome.cancelled(job)
            found = await self._look(sender, job, probe)
            shown = found.details if found is not None else None
            if shown is None:
                outcome.error_message = f"not read back after it was created: {probe.error_code} " \
                                        f"{probe.error_message}".rstrip()
        if self.backup is not None:
            try:
                await self.backup.save(job, None, body, created=shown)
            except OSError as exc:
                sender.stop(f"not sent: the backup {self.backup.path} cannot be written")
                outcome.error_message = f"created, but the backup cannot be written ({exc.strerror or exc}): " \
                                        "a rollback will not delete it"
                return outcome
            outcome.backup = str(self.backup.path)
        if shown is not None and ticket.verify and self.verifier is not None:
            self.verifier.compare(sender, job, outcome, ticket, body, shown, changed=_names(outcome.changes))
        return outcome

    async def _backed_up(self, sender: Sender, job: Job, before: dict[str, Any], body: dict[str, Any],
                         outcome: Outcome, sha256: str) -> bool:
        """Save the config as it is before it changes; False, with ``outcome`` failed and the run
        stopping, when the backup cannot be written: nothing is changed that could not be saved."""
        if self.backup is None:
            return True
        try:
            await self.backup.save(job, before, body, sent_sha256=sha256)
        except OSError as exc:
            sender.stop(f"not sent: the backup {self.backup.path} cannot be written")
            outcome.status, outcome.error_code = FAILED, errors.BACKUP
            outcome.error_message = f"could not back the config up, so nothing was changed: {exc.strerror or exc}"
            return False
        outcome.backup = str(self.backup.path)
        return True


class Planned(Modify):
    """``apply`` of a saved plan: each row's ``send`` exactly as planned, unless its config
    changed since it was planned (``conflict``, not sent). A row the plan holds that was not to
    change (unchanged, missing, invalid, failed to read) is recorded as the plan says."""

    async def __call__(self, sender: Sender, job: Job, outcome: Outcome) -> Outcome:
        planned = PlannedRow.decode(job.body)
        if planned.send is None:
            return planned.outcome(job)
        return await self._gated(sender, outcome, partial(self._apply, sender, job, outcome, planned))

    async def _apply(self, sender: Sender, job: Job, outcome: Outcome, planned: PlannedRow, ticket: Ticket) -> Outcome:
        assert planned.send is not None
        found = await self._look(sender, job, outcome, hold=True)
        if found is None:
            return outcome
        missing = found.details is None
        drift = diff(planned.before, found.current) if planned.before is not None and not missing else []
        if (planned.before is None) != missing or drift:
            outcome.status, outcome.error_code, outcome.attempts = CONFLICT, errors.CHANGED_SINCE, 0
            why = render(drift, limit=80) or ("created since" if planned.before is None else "deleted since")
            outcome.error_message = f"conflict: changed since it was planned ({why}); plan again"
            return outcome
        if missing:
            return await self._create(sender, job, outcome, ticket, planned.send)
        outcome.changes = tuple(diff(found.current, planned.send))
        return await self._change(sender, job, outcome, ticket, found.current, planned.send)


class Rollback(_Action):
    """Put a backed-up body back (the job's body: ``before``), unless the config changed since
    the run sent ``sent[(project, name)]`` (then ``conflict``, not sent; ``force`` restores it
    anyway), or is already as it was (``skipped``, ``unchanged``). A config the run created
    (``before`` null) is deleted only while every field of it is exactly as the run saw it right
    after creating it; anything else is a ``conflict``, whatever ``force`` says: a delete cannot be
    undone."""

    def __init__(self, client: Client, sent: dict[tuple[str, str], dict[str, Any]], force: bool,
                 dry_run: bool = False, verifier: Verifier | None = None,
                 after: dict[tuple[str, str], dict[str, Any]] | None = None) -> None:
        super().__init__(client, verifier=verifier)
        self.sent = sent
        self.after = after or {}  # what the server showed right after the run, where it was read back
        self.force = force
        self.dry_run = dry_run  # a rollback plan: ``changed`` (would be restored), ``conflict``, ``skipped``

    async def __call__(self, sender: Sender, job: Job, outcome: Outcome) -> Outcome:
        return await self._gated(sender, outcome, partial(self._restore, sender, job, outcome))

    async def _restore(self, sender: Sender, job: Job, outcome: Outcome, ticket: Ticket) -> Outcome:
        restore = json.loads(job.body)
        before, created = restore["before"], restore.get("created")
        found = await self._look(sender, job, outcome, hold=not self.dry_run)  # a dry run writes nothing
        if found is None:
            return outcome
        if before is None:
            return await self._delete(sender, job, outcome, found, created)
        if found.details is None:
            outcome.status = FAILED
            outcome.error_message = f"not restored: the config no longer exists ({outcome.error_message})"
            return outcome
        outcome.changes = tuple(diff(found.current, before))
        if not outcome.changes:
            outcome.status, outcome.error_code, outcome.error_message = SKIPPED, "", "unchanged: already as backed up"
            return outcome
        key = (job.project_id, job.config_name)
        known = key in self.after  # read back after the run: a difference is a change since
        drift = diff(self.after[key] if known else self.sent[key], found.current)
        if drift and not self.force:
            outcome.status, outcome.error_code = CONFLICT, errors.CHANGED_SINCE
            outcome.error_message = (f"conflict: changed since the run ({render(drift, limit=80)}); --force to restore"
                                     if known else
                                     f"conflict: it holds otherwise than the run sent ({render(drift, limit=80)}): "
                                     "changed since the run, or kept otherwise by the server; --force to restore")
            return outcome
        if self.dry_run:
            outcome.status, outcome.error_code, outcome.error_message = CHANGED, "", ""
            return outcome
        await self._put(sender, job, outcome, ticket, before)
        return outcome

    async def _delete(self, sender: Sender, job: Job, outcome: Outcome, found: Found,
                      created: dict[str, Any] | None) -> Outcome:
        """Delete a config the run created, only while it is exactly as the run created it."""
        if found.details is None:
            outcome.status, outcome.error_code, outcome.error_message = SKIPPED, "", "unchanged: already deleted"
            return outcome
        outcome.changes = tuple(diff(found.current, {}))
        differences = exact_differences(created, found.details) if created is not None else None
        if differences is None or differences:
            outcome.status, outcome.error_code = CONFLICT, errors.CHANGED_SINCE
            why = ("the run did not see it after creating it" if differences is None else
                   f"changed since the run created it: {', '.join(differences)}")
            outcome.error_message = f"conflict: not deleted ({why}); a config is deleted only while it is " \
                                    "exactly as the run created it, even with --force"
            return outcome
        if self.dry_run:
            outcome.status, outcome.error_code, outcome.error_message = CHANGED, "", "to delete: the run created it"
            return outcome
        if await self._write(sender, job, outcome, partial(self.client.delete_config, job.project_id, job.config_name)):
            outcome.error_message = "deleted: the run had created it"
        return outcome
