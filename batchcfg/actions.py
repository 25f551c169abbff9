"""What happens to one row: each action is a function of the :class:`~batchcfg.sender.Sender` and
the :class:`~batchcfg.model.Job` that returns the row's :class:`~batchcfg.model.Outcome`.

- :class:`Put`: the plain Modify, the row's body PUT.
- :class:`Plan`: read the config and say what the row would change; change nothing.
- :class:`Modify`: read first, back the config up (never change what could not be saved
  first), skip the row when it changes nothing and that is asked for, then PUT.
- :class:`Rollback`: put a backed-up body back, unless the config changed since the run.

Reads count against the rate limit; the report's ``attempts`` count the PUT's attempts only.
"Unchanged" means every field the row sets already has that value: fields a row leaves empty are
not compared, because the API page does not say whether the Modify PUT clears them.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from . import errors
from .backup import Backup
from .client import Answer, Client
from .merge import changes, writable_body
from .model import CHANGED, FAILED, MISSING, SKIPPED, SUCCEEDED, UNCHANGED, Job, Outcome
from .sender import Sender


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


class _Action:
    """An action that sends through one client."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def _put(self, sender: Sender, job: Job, outcome: Outcome) -> Outcome:
        request = partial(self.client.put_config, job.project_id, job.config_name, job.body, job.body_sha256 or None)
        return settle(outcome, await sender.call(request, job=job, outcome=outcome))

    async def _get(self, sender: Sender, job: Job) -> Answer | None:
        return await sender.call(partial(self.client.get_config, job.project_id, job.config_name), job=job)

    async def _read(self, sender: Sender, job: Job, outcome: Outcome) -> dict[str, Any] | None:
        """The row's config as it is now (writable fields), the read's HTTP status and request id
        noted in ``outcome``, which stays ``cancelled`` until a PUT settles it; or None, with
        ``outcome`` failed (or still cancelled: the run stopped first)."""
        answer = await self._get(sender, job)
        if answer is None:
            return None
        if not answer.ok or answer.body is None:
            settle(outcome, answer)
            return None
        outcome.http_status, outcome.request_id = answer.status, answer.request_id
        return writable_body(answer.body)


class Put(_Action):
    """The plain Modify: PUT the row's body."""

    async def __call__(self, sender: Sender, job: Job) -> Outcome:
        return await self._put(sender, job, Outcome.cancelled(job))


class Plan(_Action):
    """``unchanged``, ``changed`` (with ``changes``), ``missing``, or ``failed`` to read."""

    async def __call__(self, sender: Sender, job: Job) -> Outcome:
        outcome = Outcome.cancelled(job)
        answer = await self._get(sender, job)
        if answer is None:
            return outcome
        settle(outcome, answer)
        if answer.status == 404:
            outcome.status = MISSING
        elif answer.ok and answer.body is not None:
            found = changes(writable_body(answer.body), json.loads(job.body))
            outcome.status, outcome.changes = (CHANGED, "; ".join(found)) if found else (UNCHANGED, "")
            outcome.error_code = outcome.error_message = ""
        return outcome


class Modify(_Action):
    """``apply`` reading first: back the config up (unless ``backup`` is None), skip it when
    ``skip_unchanged`` and the row changes nothing, else PUT."""

    def __init__(self, client: Client, backup: Backup | None, skip_unchanged: bool) -> None:
        super().__init__(client)
        self.backup = backup
        self.skip_unchanged = skip_unchanged

    async def __call__(self, sender: Sender, job: Job) -> Outcome:
        outcome = Outcome.cancelled(job)
        before = await self._read(sender, job, outcome)
        if before is None:
            if outcome.status == FAILED:
                outcome.error_message = ("could not read the config first, so nothing was changed: "
                                         f"{outcome.error_message}")
            return outcome
        wanted = json.loads(job.body)
        outcome.changes = "; ".join(changes(before, wanted))
        if self.skip_unchanged and not outcome.changes:
            outcome.status, outcome.error_code, outcome.error_message = SKIPPED, "", "unchanged"
            return outcome
        if self.backup is not None:
            try:
                await self.backup.save(job, before, wanted)
            except OSError as exc:
                sender.stop(f"not sent: the backup {self.backup.path} cannot be written")
                outcome.status, outcome.error_code = FAILED, errors.BACKUP
                outcome.error_message = ("could not back the config up, so nothing was changed: "
                                         f"{exc.strerror or exc}")
                return outcome
            outcome.backup = str(self.backup.path)
        return await self._put(sender, job, outcome)


class Rollback(_Action):
    """Put a backed-up body back (the job's body), unless the config changed since the run sent
    ``sent[(project, name)]`` (then ``skipped`` with ``conflict``; ``force`` restores it anyway),
    or is already as it was (``skipped``, ``unchanged``)."""

    def __init__(self, client: Client, sent: dict[tuple[str, str], dict[str, Any]], force: bool) -> None:
        super().__init__(client)
        self.sent = sent
        self.force = force

    async def __call__(self, sender: Sender, job: Job) -> Outcome:
        outcome = Outcome.cancelled(job)
        now = await self._read(sender, job, outcome)
        if now is None:
            return outcome
        before = json.loads(job.body)
        if not changes(now, before, every_field=True):
            outcome.status, outcome.error_code, outcome.error_message = SKIPPED, "", "unchanged: already as backed up"
            return outcome
        drift = changes(self.sent[(job.project_id, job.config_name)], now)
        outcome.changes = "; ".join(changes(now, before, every_field=True))
        if drift and not self.force:
            outcome.status, outcome.error_code = SKIPPED, ""
            outcome.error_message = f"conflict: changed since the run ({'; '.join(drift)}); --force to restore"
            return outcome
        return await self._put(sender, job, outcome)
