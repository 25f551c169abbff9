"""The run's vocabulary: a :class:`Job` to send, its :class:`Outcome`, the statuses, the :class:`Summary`.

Every other module speaks these words; this one imports of batchcfg only the exit-code rule, the
changes and the text helpers.

>>> job = Job(row=2, project_id="0123456789abcdef0123456789abcdef", config_name="resnet", body=b"{}")
>>> Outcome.of(job, SUCCEEDED, attempts=1).status
'succeeded'
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

from . import errors
from .change import Change, Totals
from .text import printable

SUCCEEDED = "succeeded"
FAILED = "failed"
INVALID = "invalid"
CANCELLED = "cancelled"
SKIPPED = "skipped"
VALID = "valid"
UNCHANGED = "unchanged"  # plan: the row would change nothing
CHANGED = "changed"      # plan: the row would change the fields in ``changes``
MISSING = "missing"      # plan: there is no such config
CREATE = "create"        # plan with --create-missing: the config would be created
CREATED = "created"      # apply with --create-missing: the config did not exist and was created
CONFLICT = "conflict"    # rollback, and apply of a saved plan: the config changed since; not sent
STATUSES = (SUCCEEDED, CREATED, FAILED, INVALID, CANCELLED, CONFLICT, SKIPPED, VALID, UNCHANGED, CHANGED, CREATE,
            MISSING)
DONE_STATUSES = (SUCCEEDED, CREATED, SKIPPED)    # what --resume does not send again
TO_FIX_STATUSES = (INVALID, FAILED, CANCELLED, CONFLICT, MISSING)  # exit code 1; the failed-row manifest
EXAMPLE_CODES, EXAMPLE_ROWS, EXAMPLE_CHANGED_ROWS = 50, 5, 20  # what a summary keeps: the first rows, by row


class Job(NamedTuple):
    """One valid row, ready to send: where it goes, its serialised JSON body (what the row asks
    for: a :class:`~batchcfg.merge.Patch`) and that body's hash; ``note`` says which checks wait
    for the current config. (A named tuple: made a microsecond faster than a frozen dataclass.)"""

    row: int
    project_id: str
    config_name: str
    body: bytes
    body_sha256: str = ""
    note: str = ""


@dataclass(slots=True)
class Outcome:
    """The final result of one row: one report record. Field order is the column order."""

    row: int
    config_name: str
    project_id: str
    status: str
    http_status: int | None = None
    error_code: str = ""
    error_message: str = ""
    attempts: int = 0
    duration_ms: int | None = None
    request_id: str = ""
    changes: tuple[Change, ...] = ()  # what the row changes, when the config was read first (plan, apply)
    started_at: str = ""   # when the row's first request was sent (UTC, ISO 8601)
    body_sha256: str = ""  # of what the row asks for: what --resume matches on
    backup: str = ""       # the backup file that holds the config as it was before this row
    verified: str = ""     # "yes": read back after its write and compared (batchcfg.verify)
    # Not report columns: what the summary counts of the row.
    kept: tuple[str, ...] = ()        # fields of empty cells whose value the config holds: kept
    normalised: tuple[str, ...] = ()  # fields the row did not change that read back otherwise than sent

    @classmethod
    def of(cls, job: Job, status: str, **values: Any) -> Outcome:
        """The outcome of ``job``: its row, names and body hash, with ``status``."""
        return cls(job.row, job.config_name, job.project_id, status, body_sha256=job.body_sha256, **values)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Outcome:
        """An outcome from its journal line (a dict of its fields)."""
        record["changes"] = tuple(Change(*change) for change in record.get("changes") or ())  # arrays
        record["kept"], record["normalised"] = tuple(record.get("kept", ())), tuple(record.get("normalised", ()))
        return cls(**record)

    @classmethod
    def cancelled(cls, job: Job, message: str = "") -> Outcome:
        """A row that was never sent (or, with a message that says so, cut off in flight)."""
        return cls.of(job, CANCELLED, error_code=errors.CANCELLED, error_message=message)


OUTCOME_FIELDS = tuple(f.name for f in fields(Outcome))[:-2]  # the report's columns: all but kept, normalised


@dataclass
class Summary:
    """What a run did: rows per status, where its files are, and how the sending went."""

    counts: Counter[str]
    report: Path
    failed_manifest: Path | None = None
    backup: Path | None = None
    output: Path | None = None  # the manifest an export wrote
    saved_plan: Path | None = None  # plan --out
    notes: list[str] = field(default_factory=list)  # what else a person should know
    incomplete: bool = False  # the run did not get to every row it should have (export: List fell short): exit 1
    page: Path | None = None  # --html
    metrics: Path | None = None  # --metrics-file
    elapsed: float = 0.0
    requests: int = 0
    retries: int = 0
    max_rate: float = 0.0     # the --rate asked for
    lowest_rate: float = 0.0  # the lowest request rate throttling brought the run down to
    stop_reason: str = ""
    interrupted: bool = False
    signal: int | None = None  # the signal that interrupted the run, when the caller knows it
    error_codes: Counter[str] = field(default_factory=Counter)  # of the rows that did not succeed
    http_statuses: Counter[int] = field(default_factory=Counter)  # of every attempt; 0: no answer
    latency_p50: float | None = None  # seconds per attempt
    latency_p95: float | None = None
    # The first rows (by row) of each error code (row, config name, message), and what the rows
    # change, totalled: bounded samples for the screen and the page, whatever the number of rows.
    error_rows: dict[str, list[tuple[int, str, str]]] = field(default_factory=dict)
    error_statuses: dict[str, int] = field(default_factory=dict)  # code -> an HTTP status seen with it
    changes: Totals = field(default_factory=Totals)
    changed_rows: list[tuple[int, str, tuple[Change, ...]]] = field(default_factory=list)  # the first rows that change
    verified: int = 0  # rows read back after their write (the canary, --verify)
    normalised: Counter[str] = field(default_factory=Counter)  # fields the server keeps otherwise than sent
    kept_cells: int = 0  # empty cells whose field the config holds a value for: kept (a row changes what it names)
    kept_rows: int = 0
    window_p50: float | None = None  # seconds from a row's read to its write (the lost-update window)
    window_p99: float | None = None
    # What the run was, for the page a run can leave (--html): set by the command.
    command: str = ""
    started_at: str = ""  # UTC, ISO 8601
    endpoint: str = ""
    project_id: str = ""
    inputs: list[Path] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=dict)  # never a secret
    # How the sending went, second by second (from the first request): starts, throttled answers,
    # retries; the limiter's rate each time it moved; the latencies as a histogram.
    timeline: list[tuple[int, int, int, int]] = field(default_factory=list)
    rate_changes: list[tuple[float, float]] = field(default_factory=list)
    latency_p99: float | None = None
    latency_buckets: list[tuple[float, int]] = field(default_factory=list)  # (upper bound in seconds, attempts)

    def note(self, outcome: Outcome) -> None:
        """Count one row's outcome, and keep it as an example when it is among the first rows."""
        self.counts[outcome.status] += 1
        if outcome.error_code:
            self.error_codes[outcome.error_code] += 1
            if outcome.error_code not in self.error_statuses and len(self.error_statuses) < EXAMPLE_CODES:
                self.error_statuses[outcome.error_code] = outcome.http_status or 0
            if outcome.status in (INVALID, FAILED, CONFLICT, MISSING, CANCELLED):
                examples = self.error_rows.get(outcome.error_code)
                if examples is None and len(self.error_rows) < EXAMPLE_CODES:
                    examples = self.error_rows[outcome.error_code] = []
                if examples is not None:
                    _first_rows(examples, (outcome.row, printable(outcome.config_name), outcome.error_message),
                                EXAMPLE_ROWS)
        if outcome.verified:
            self.verified += 1
        if outcome.kept:
            self.kept_cells += len(outcome.kept)
            self.kept_rows += 1
        self.normalised.update(outcome.normalised)
        if outcome.changes and outcome.status in (CHANGED, CREATE, SUCCEEDED, CREATED):
            _first_rows(self.changed_rows, (outcome.row, outcome.config_name, outcome.changes), EXAMPLE_CHANGED_ROWS)
            self.changes.add(outcome.changes, creating=outcome.status in (CREATE, CREATED))

    @property
    def headline(self) -> dict[str, int]:
        """A plan in a reviewer's words, as Terraform's "3 to add, 12 to change, 0 to destroy":
        rows to create, to change, unchanged, missing, invalid, in conflict (failed and cancelled
        when there are some), and the rows to change that lose a value."""
        counts = self.counts
        shown = {"create": counts[CREATE], "change": counts[CHANGED], "unchanged": counts[UNCHANGED],
                 "missing": counts[MISSING], "invalid": counts[INVALID], "conflict": counts[CONFLICT]}
        shown.update({status: counts[status] for status in (FAILED, CANCELLED) if counts[status]})
        shown["lose_a_value"] = self.changes.losing_rows
        return shown

    def ranked_codes(self) -> list[tuple[str, int]]:
        """The error codes and their row counts, most rows first; codes of as many rows in the
        order of their first rows: one order, whatever order the rows ended in."""
        first = {code: rows[0][0] for code, rows in self.error_rows.items() if rows}
        return sorted(self.error_codes.items(), key=lambda item: (-item[1], first.get(item[0], math.inf), item[0]))

    @property
    def request_rate(self) -> float:
        """Requests (attempts) per second while sending."""
        return self.requests / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def exit_code(self) -> int:
        return errors.exit_code(interrupted=self.interrupted, signal=self.signal,
                                rows_to_fix=self.incomplete or any(self.counts[s] for s in TO_FIX_STATUSES))


def _first_rows(examples: list[Any], example: tuple[Any, ...], keep: int) -> None:
    """Keep the ``keep`` examples of lowest row number (rows end in any order), in row order."""
    if len(examples) < keep or example[0] < examples[-1][0]:
        bisect.insort(examples, example, key=lambda item: item[0])
        del examples[keep:]
