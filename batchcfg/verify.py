"""Checking that a change took: the config read back after its write, compared field by field with
what was sent, by the rule ``plan`` compares with (:func:`batchcfg.merge.diff`).

Nobody can tell from the API's documents whether Modify replaces or merges a body, or whether it
takes ``""`` as "clear". So a run finds out, before it can harm thousands of configs: it reads back
the first :data:`CANARY_ROWS` rows that change something (the canary), and with ``--verify`` every
row that changes something. While the canary is open, no more rows than it still needs are
between their read and their read-back, so at most :data:`CANARY_ROWS` configs are changed before
the run knows how the server behaves. Then, for each row read back:

- a field the row changed that reads back otherwise than sent did not take: the row fails with
  ``BATCHCFG.NOT_APPLIED``, naming the field, what was sent and what the server holds; in the
  canary the run stops, with one line saying that the server did not keep the change;
- a field the row did not change that reads back otherwise (the server normalised it) leaves the
  row ``succeeded``, with a note naming the fields;
- a read-back that fails leaves the row as its write's answer said, with a note.

Each read-back is a request like any other: it counts against the rate.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio

from .change import Change, value_text
from .errors import NOT_APPLIED
from .merge import check_details, diff, writable_body
from .model import FAILED, Job, Outcome
from .settings import CANARY_ROWS

if TYPE_CHECKING:
    from .client import Client
    from .sender import Sender

VERIFIED = "yes"  # the report's verified column, for a row read back after its write


@dataclass
class Ticket:
    """A row let through the canary gate: whether its change is read back, and whether it is one
    of the canary's rows."""

    verify: bool
    canary: bool


class Verifier:
    """The run's read-backs: the canary's gate, the comparison, and what they found."""

    def __init__(self, client: Client, *, every: bool = False, canary: int = CANARY_ROWS) -> None:
        self.client = client
        self.every = every
        self._left = canary      # canary rows still to be read back as sent
        self._open = 0           # canary rows let through, not yet ended
        self._moved: anyio.Event | None = None

    def __repr__(self) -> str:
        return f"Verifier(every={self.every}, canary_left={self._left}, canary_open={self._open})"

    @property
    def passed(self) -> bool:
        """The canary is through: the server kept what its rows sent."""
        return self._left <= 0

    async def admit(self, sender: Sender) -> Ticket | None:
        """Let a row through that may change a config; None when the run stopped first."""
        while not self.passed and self._open >= self._left:
            self._moved = self._moved or anyio.Event()
            if not await sender.wait(self._moved.wait()):
                return None
        if self.passed:
            return Ticket(self.every, canary=False)
        self._open += 1
        return Ticket(True, canary=True)

    def leave(self, ticket: Ticket | None, outcome: Outcome) -> None:
        """The row ended: a canary row read back as sent counts towards the canary."""
        if ticket is None or not ticket.canary:
            return
        self._open -= 1
        if outcome.verified == VERIFIED and outcome.status != FAILED:
            self._left -= 1
        if self._moved is not None:
            self._moved.set()
            self._moved = None

    async def check(self, sender: Sender, job: Job, outcome: Outcome, ticket: Ticket, sent: dict[str, Any], *,
                    changed: set[str] | None) -> dict[str, Any] | None:
        """Read the config back and compare it with ``sent``; ``changed`` names the fields the
        row changed (None: all of them, for a row that was not read first). The outcome says
        what was found; returns the config as read back (None when it could not be)."""
        answer = await sender.call(partial(self.client.get_config, job.project_id, job.config_name), job=job,
                                   after_stop=True)
        if answer is None:
            outcome.error_message = _noted(outcome.error_message, "not read back: the run stopped")
            return None
        problem = None if not answer.ok or answer.body is None else check_details(job.config_name, answer.body)
        if not answer.ok or answer.body is None or problem is not None:
            why = problem or f"{answer.error_code} {answer.error_message}".strip()
            outcome.error_message = _noted(outcome.error_message, f"not read back: {why}")
            return None
        self.compare(sender, job, outcome, ticket, sent, answer.body, changed=changed)
        return answer.body

    def compare(self, sender: Sender, job: Job, outcome: Outcome, ticket: Ticket, sent: dict[str, Any],
                details: dict[str, Any], *, changed: set[str] | None) -> None:
        """Compare the config as the server shows it (``details``, checked) with ``sent``."""
        outcome.verified = VERIFIED
        held = diff(writable_body(details), sent)  # before: what the server holds; after: what was sent
        lost = [change for change in held if changed is None or change.name in changed]
        if lost:
            outcome.status, outcome.error_code = FAILED, NOT_APPLIED
            outcome.error_message = "the server did not keep the change: " + _describe(lost)
            if ticket.canary:
                sender.stop(f"not sent: the server did not keep the change of row {job.row} {job.config_name} "
                            f"({_describe(lost[:1])}); it may merge bodies or ignore empty values: see "
                            "BATCHCFG.NOT_APPLIED in the report")
            return
        outcome.normalised = tuple(change.name for change in held)
        if outcome.normalised:
            outcome.error_message = _noted(outcome.error_message, "read back: the server keeps "
                                           f"{', '.join(outcome.normalised)} otherwise than sent (not changed by this row)")


def _describe(changes: Iterable[Change]) -> str:
    return "; ".join(f"{change.name} sent {value_text(change.after, 80)}, the server holds "
                     f"{value_text(change.before, 80)}" for change in changes)


def _noted(message: str, note: str) -> str:
    return f"{message}; {note}" if message else note
