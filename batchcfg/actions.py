"""What happens to one row: each action is a function of the :class:`~batchcfg.sender.Sender` and
the :class:`~batchcfg.model.Job` that returns the row's :class:`~batchcfg.model.Outcome`.

- :class:`Put`: the plain Modify, the row's body PUT as it is (``--replace --no-backup
  --send-unchanged``: nothing to read).
- :class:`Read`: read the config, for ``export``.
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
from .planfile import PlanWriter
from .model import (CHANGED, CONFLICT, CREATE, CREATED, FAILED, INVALID, MISSING, SKIPPED, SUCCEEDED, UNCHANGED,
                    Job, Outcome)
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

    def _whole(self, job: Job, current: dict[str, Any], outcome: Outcome, *,
               creating: bool = False) -> dict[str, Any] | None:
        """The whole body the row sends: laid over ``current`` (or, with ``replace``, the row
        itself; ``current`` is empty when ``creating``). None, with ``outcome`` invalid, when the
        body breaks a rule (a whole row was checked offline, but not for a config to create)."""
        patch = Patch.decode(job.body)
        body = whole(current, patch.fields) if self.replace else patch.over(current)
        problems = check_body(body) if creating or not self.replace else []
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


def is_missing(answer: Answer | Outcome) -> bool:
    """The config does not exist: 404 from ModelArts (the gateway's 404 means a wrong path)."""
    status = answer.status if isinstance(answer, Answer) else answer.http_status
    return status == 404 and not answer.error_code.startswith(("APIGW.", "APIG."))


class Put(_Action):
    """The plain Modify: PUT the row's body."""

    async def __call__(self, sender: Sender, job: Job) -> Outcome:
        return await self._put(sender, job, Outcome.cancelled(job))


class Read(_Action):
    """``export``: read the config; its writable body goes into ``found`` by row."""

    def __init__(self, client: Client, found: dict[int, dict[str, Any]]) -> None:
        super().__init__(client)
        self.found = found

    async def __call__(self, sender: Sender, job: Job) -> Outcome:
        outcome = Outcome.cancelled(job)
        current = await self._read(sender, job, outcome)
        if current is not None:
            self.found[job.row] = current
            outcome.status, outcome.error_code, outcome.error_message = SUCCEEDED, "", ""
        return outcome


class Plan(_Action):
    """``unchanged``, ``changed`` (with ``changes``), ``missing`` (``create`` with
    ``create_missing``), ``invalid`` (the row laid over the config breaks a rule), or ``failed``
    to read."""

    def __init__(self, client: Client, *, replace: bool = False, create_missing: bool = False,
                 saved: PlanWriter | None = None) -> None:
        super().__init__(client, replace=replace)
        self.create_missing = create_missing
        self.saved = saved  # plan --out: each row that would change, as it would be sent

    async def __call__(self, sender: Sender, job: Job) -> Outcome:
        outcome = Outcome.cancelled(job)
        answer = await self._get(sender, job, outcome)  # a plan's attempts are its read's
        if answer is None:
            return outcome
        settle(outcome, answer)
        if is_missing(answer) and not self.create_missing:
            outcome.status = MISSING
        elif is_missing(answer) or (answer.ok and answer.body is not None):
            current = writable_body(answer.body) if answer.ok and answer.body is not None else {}
            outcome.error_code = outcome.error_message = ""
            body = self._whole(job, current, outcome, creating=is_missing(answer))
            if body is not None:
                found = changes(current, body)
                outcome.changes = "; ".join(found)
                outcome.status = CREATE if is_missing(answer) else CHANGED if found else UNCHANGED
                if self.saved is not None and outcome.status != UNCHANGED:
                    self.saved.add(job, None if is_missing(answer) else current, body)
        return outcome


class Modify(_Action):
    """``apply``: read the config, lay the row over it, skip it when that changes nothing (unless
    ``send_unchanged``), back the config up (unless ``backup`` is None), then PUT the whole body."""

    def __init__(self, client: Client, backup: Backup | None, *, replace: bool = False,
                 send_unchanged: bool = False, create_missing: bool = False) -> None:
        super().__init__(client, replace=replace)
        self.backup = backup
        self.send_unchanged = send_unchanged
        self.create_missing = create_missing

    async def __call__(self, sender: Sender, job: Job) -> Outcome:
        outcome = Outcome.cancelled(job)
        current = await self._read(sender, job, outcome)
        if current is None and self.create_missing and is_missing(outcome):
            return await self._create(sender, job, outcome)
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
        if not await self._backed_up(sender, job, current, body, outcome):
            return outcome
        return await self._put(sender, job, outcome, encode_body(body))

    async def _create(self, sender: Sender, job: Job, outcome: Outcome) -> Outcome:
        """The config does not exist: create it (``POST``) with the row's body, after a backup
        record that says it did not exist, so that a rollback deletes it."""
        outcome.error_code = outcome.error_message = ""
        outcome.attempts = 0
        body = self._whole(job, {}, outcome, creating=True)
        if body is None:
            return outcome
        outcome.changes = "; ".join(changes({}, body))
        if not await self._backed_up(sender, job, None, body, outcome):
            return outcome
        request = partial(self.client.create_config, job.project_id,
                          encode_body({"config_name": job.config_name, **body}))
        return settle(outcome, await sender.call(request, job=job, outcome=outcome), CREATED)

    async def _backed_up(self, sender: Sender, job: Job, before: dict[str, Any] | None, body: dict[str, Any],
                         outcome: Outcome) -> bool:
        """Save the config as it is before it changes; False, with ``outcome`` failed and the run
        stopping, when the backup cannot be written: nothing is changed that could not be saved."""
        if self.backup is None:
            return True
        try:
            await self.backup.save(job, before, body)
        except OSError as exc:
            sender.stop(f"not sent: the backup {self.backup.path} cannot be written")
            outcome.status, outcome.error_code = FAILED, errors.BACKUP
            outcome.error_message = f"could not back the config up, so nothing was changed: {exc.strerror or exc}"
            return False
        outcome.backup = str(self.backup.path)
        return True


class Planned(Modify):
    """``apply`` of a saved plan: each row's ``send`` exactly as planned, unless its config
    changed since it was planned (``conflict``, not sent)."""

    async def __call__(self, sender: Sender, job: Job) -> Outcome:
        outcome = Outcome.cancelled(job)
        planned = json.loads(job.body)
        before, send = planned["before"], planned["send"]
        current = await self._read(sender, job, outcome)
        missing = current is None and is_missing(outcome)
        if current is None and not missing:
            return outcome
        drift = changes(before, current) if before is not None and current is not None else []
        if (before is None) != missing or drift:
            outcome.status, outcome.error_code, outcome.attempts = CONFLICT, errors.CHANGED_SINCE, 0
            why = "; ".join(drift) or ("created since" if before is None else "deleted since")
            outcome.error_message = f"conflict: changed since it was planned ({why}); plan again"
            return outcome
        outcome.error_code = outcome.error_message = ""
        outcome.changes = "; ".join(changes(current or {}, send))
        if not await self._backed_up(sender, job, current, send, outcome):
            return outcome
        if missing:
            request = partial(self.client.create_config, job.project_id,
                              encode_body({"config_name": job.config_name, **send}))
            return settle(outcome, await sender.call(request, job=job, outcome=outcome), CREATED)
        return await self._put(sender, job, outcome, encode_body(send))


class Rollback(_Action):
    """Put a backed-up body back (the job's body; delete a config the run created), unless the
    config changed since the run sent ``sent[(project, name)]`` (then ``conflict``, not sent;
    ``force`` restores it anyway), or is already as it was (``skipped``, ``unchanged``)."""

    def __init__(self, client: Client, sent: dict[tuple[str, str], dict[str, Any]], force: bool,
                 dry_run: bool = False) -> None:
        super().__init__(client)
        self.sent = sent
        self.force = force
        self.dry_run = dry_run  # a rollback plan: ``changed`` (would be restored), ``conflict``, ``skipped``

    async def __call__(self, sender: Sender, job: Job) -> Outcome:
        outcome = Outcome.cancelled(job)
        before = json.loads(job.body)  # None: the run created the config, and rollback deletes it
        now = await self._read(sender, job, outcome)
        if now is None and before is None and is_missing(outcome):
            outcome.status, outcome.error_code, outcome.error_message = SKIPPED, "", "unchanged: already deleted"
            outcome.attempts = 0
            return outcome
        if now is None:
            return outcome
        restored = changes(now, before or {})
        if before is not None and not restored:
            outcome.status, outcome.error_code, outcome.error_message = SKIPPED, "", "unchanged: already as backed up"
            return outcome
        drift = changes(self.sent[(job.project_id, job.config_name)], now)
        outcome.changes = "deleted (the run created it)" if before is None else "; ".join(restored)
        if drift and not self.force:
            outcome.status, outcome.error_code = CONFLICT, errors.CHANGED_SINCE
            outcome.error_message = f"conflict: changed since the run ({'; '.join(drift)}); --force to restore"
            return outcome
        if self.dry_run:
            outcome.status, outcome.error_code, outcome.error_message = CHANGED, "", ""
            return outcome
        if before is None:
            request = partial(self.client.delete_config, job.project_id, job.config_name)
            return settle(outcome, await sender.call(request, job=job, outcome=outcome))
        return await self._put(sender, job, outcome)
