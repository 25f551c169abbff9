"""What happens to one row: each action is a function of the :class:`~batchcfg.sender.Sender` and
the :class:`~batchcfg.model.Job` that returns the row's :class:`~batchcfg.model.Outcome`.

- :class:`Put`: the plain Modify, the row's body PUT as it is (``--replace --no-backup
  --send-unchanged``: nothing to read).
- :class:`Plan`: read the config, lay the row over it, say what the PUT would change.
- :class:`Modify`: the same, then (when something changes) back the config up, never changing
  what could not be saved first, and PUT the whole body.
- :class:`Rollback`: put a backed-up body back, unless the config changed since the run.

The body sent is always whole (:mod:`batchcfg.merge`): the result is the same whether the server
merges or replaces. Reads count against the rate limit; the report's ``attempts`` count the
PUT's attempts only.
"""

from __future__ import annotations

import hashlib
import json
from functools import partial
from typing import Any

from . import errors
from .backup import Backup
from .client import Answer, Client
from .merge import Patch, changes, whole, writable_body
from .model import CHANGED, FAILED, INVALID, MISSING, SKIPPED, SUCCEEDED, UNCHANGED, Job, Outcome
from .schema import check_body, describe, encode_body
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
    """An action that sends through one client; ``replace``: the row is the whole body."""

    def __init__(self, client: Client, *, replace: bool = False) -> None:
        self.client = client
        self.replace = replace

    async def _put(self, sender: Sender, job: Job, outcome: Outcome, body: bytes | None = None) -> Outcome:
        """PUT ``body`` (by default the job's own) for the row; ``outcome`` settled by the answer."""
        sha256 = job.body_sha256 if body is None else hashlib.sha256(body).hexdigest()
        request = partial(self.client.put_config, job.project_id, job.config_name,
                          job.body if body is None else body, sha256 or None)
        return settle(outcome, await sender.call(request, job=job, outcome=outcome))

    def _whole(self, job: Job, current: dict[str, Any], outcome: Outcome) -> dict[str, Any] | None:
        """The whole body the row sends: laid over ``current`` (or, with ``replace``, the row
        itself). None, with ``outcome`` invalid, when the merged body breaks a rule."""
        patch = Patch.decode(job.body)
        body = whole(current, patch.fields) if self.replace else patch.over(current)
        problems = [] if self.replace else check_body(body)  # a whole row was checked offline
        if problems:
            outcome.status, outcome.error_code = INVALID, problems[0].code
            outcome.error_message = "laid over the current config: " + describe(problems)
            return None
        return body

    async def _get(self, sender: Sender, job: Job, outcome: Outcome | None = None) -> Answer | None:
        """Read the row's config; its attempts counted in ``outcome`` when given."""
        return await sender.call(partial(self.client.get_config, job.project_id, job.config_name),
                                 job=job, outcome=outcome)

    async def _read(self, sender: Sender, job: Job, outcome: Outcome) -> dict[str, Any] | None:
        """The row's config as it is now (writable fields), the read's HTTP status and request id
        noted in ``outcome``, which stays ``cancelled`` until a PUT settles it; or None, with
        ``outcome`` failed (or still cancelled: the run stopped first). A row that ends at its read
        reports the read's attempts; one that goes on reports its PUT's."""
        answer = await self._get(sender, job, outcome)
        if answer is None:
            return None
        if not answer.ok or answer.body is None:
            settle(outcome, answer)
            return None
        outcome.http_status, outcome.request_id, outcome.attempts = answer.status, answer.request_id, 0
        return writable_body(answer.body)


class Put(_Action):
    """The plain Modify: PUT the row's body."""

    async def __call__(self, sender: Sender, job: Job) -> Outcome:
        return await self._put(sender, job, Outcome.cancelled(job))


class Plan(_Action):
    """``unchanged``, ``changed`` (with ``changes``), ``missing``, ``invalid`` (the row laid over
    the config breaks a rule), or ``failed`` to read."""

    async def __call__(self, sender: Sender, job: Job) -> Outcome:
        outcome = Outcome.cancelled(job)
        answer = await self._get(sender, job)
        if answer is None:
            return outcome
        settle(outcome, answer)
        if answer.status == 404:
            outcome.status = MISSING
        elif answer.ok and answer.body is not None:
            current = writable_body(answer.body)
            outcome.error_code = outcome.error_message = ""
            body = self._whole(job, current, outcome)
            if body is not None:
                found = changes(current, body)
                outcome.status, outcome.changes = (CHANGED, "; ".join(found)) if found else (UNCHANGED, "")
        return outcome


class Modify(_Action):
    """``apply``: read the config, lay the row over it, skip it when that changes nothing (unless
    ``send_unchanged``), back the config up (unless ``backup`` is None), then PUT the whole body."""

    def __init__(self, client: Client, backup: Backup | None, *, replace: bool = False,
                 send_unchanged: bool = False) -> None:
        super().__init__(client, replace=replace)
        self.backup = backup
        self.send_unchanged = send_unchanged

    async def __call__(self, sender: Sender, job: Job) -> Outcome:
        outcome = Outcome.cancelled(job)
        current = await self._read(sender, job, outcome)
        if current is None:
            if outcome.status == FAILED:
                outcome.error_message = ("could not read the config first, so nothing was changed: "
                                         f"{outcome.error_message}")
            return outcome
        body = self._whole(job, current, outcome)
        if body is None:
            return outcome
        outcome.changes = "; ".join(changes(current, body))
        if not outcome.changes and not self.send_unchanged:
            outcome.status, outcome.error_code, outcome.error_message = SKIPPED, "", "unchanged"
            return outcome
        if self.backup is not None:
            try:
                await self.backup.save(job, current, body)
            except OSError as exc:
                sender.stop(f"not sent: the backup {self.backup.path} cannot be written")
                outcome.status, outcome.error_code = FAILED, errors.BACKUP
                outcome.error_message = ("could not back the config up, so nothing was changed: "
                                         f"{exc.strerror or exc}")
                return outcome
            outcome.backup = str(self.backup.path)
        return await self._put(sender, job, outcome, encode_body(body))


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
        restored = changes(now, before)
        if not restored:
            outcome.status, outcome.error_code, outcome.error_message = SKIPPED, "", "unchanged: already as backed up"
            return outcome
        drift = changes(self.sent[(job.project_id, job.config_name)], now)
        outcome.changes = "; ".join(restored)
        if drift and not self.force:
            outcome.status, outcome.error_code = SKIPPED, ""
            outcome.error_message = f"conflict: changed since the run ({'; '.join(drift)}); --force to restore"
            return outcome
        return await self._put(sender, job, outcome)
