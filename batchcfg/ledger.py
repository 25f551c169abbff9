"""One run's ledger: every row's outcome recorded exactly once, and the report at the end.

When sending, each outcome goes to the journal (not memory) the moment its row ends, and the
sorted report is written from the journal at the end. Without sending, outcomes come in row order
and go straight into the report. Either way the counts, the error codes and the rows to fix are
kept here, for the summary and the failed-row manifest.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from .checked import Spool, check
from .errors import BatchcfgError, OutputError, UsageError
from .files import check_output_path
from .journal import Journal, in_use, journal_path, running_pid
from .logs import log
from .manifest import open_manifest
from .model import SKIPPED, TO_FIX_STATUSES, Job, Outcome, Summary
from .options import Options
from .report import (FAILED_SUFFIXES, REPORT_SUFFIXES, reserve_default_report, write_failed_manifest,
                     write_report)
from .resume import Chain

if TYPE_CHECKING:
    from .sender import Sender


class Ledger:
    """The bookkeeping of one run. Use as a context manager."""

    def __init__(self, options: Options, manifest: str | Path | None, *, sending: bool, command: str = "") -> None:
        self.options = options
        outputs = options.outputs
        self._reserved: Path | None = None
        if outputs.report is None:  # a default name, taken at once: never another run's
            if outputs.report_dir is not None and not outputs.report_dir.is_dir():
                raise UsageError(f"--report-dir {outputs.report_dir}: no such directory")
            self.report = self._reserved = reserve_default_report(outputs.report_dir or Path())
        else:
            self.report = check_output_path(outputs.report, "--report", REPORT_SUFFIXES)
        self.journal: Journal | None = None
        self.chain: Chain | None = None  # the runs this one resumes (held for its life)
        try:
            self.failed_manifest = (check_output_path(outputs.failed_manifest, "--failed-manifest", FAILED_SUFFIXES)
                                    if outputs.failed_manifest and manifest is not None else None)
            for path, option in ((outputs.report, "--report"), (self.failed_manifest, "--failed-manifest")):
                if path is not None and path.exists() and not outputs.overwrite:
                    raise UsageError(f"{path} exists (an earlier run's?): choose another {option}, or --overwrite")
            self.manifest = (open_manifest(manifest, sheet=options.input.sheet, encoding=options.input.encoding,
                                           delimiter=options.input.delimiter)
                             if manifest is not None else None)
            self._as_read = _stamp(self.manifest.path) if self.manifest is not None else None
            self.journal = self._open_journal() if sending else None
            if sending and options.resume is not None:
                self.chain = Chain(options.resume, self.journal.path if self.journal is not None else None)
        except BaseException:
            self._close()
            raise
        self.summary = Summary(Counter(), self.report, self.failed_manifest, command=command,
                               started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                               inputs=[Path(manifest)] if manifest is not None else [], settings=_settings(options))
        if self.manifest is not None:  # what the reader noticed about the file: logged now, kept for the summary
            for text in self.manifest.notes:
                log.info("%s", text)
            for text in self.manifest.warnings:
                log.warning("%s", text)
            self.summary.notes.extend((*self.manifest.warnings, *self.manifest.notes))
        self.pending: dict[int, Job] = {}  # sent or about to be, not yet ended
        self.to_fix: dict[int, tuple[str, str]] = {}  # row -> (status, "code: message")
        self.on_outcome: Callable[[Outcome], None] | None = None
        self.stop_sending: Callable[[str], None] | None = None  # the sender's stop(), while sending

    def __repr__(self) -> str:
        return f"Ledger(report={str(self.report)!r}, counts={dict(self.summary.counts)}, pending={len(self.pending)})"

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._close()

    def _close(self) -> None:
        """Close the journal (removed when no row ended) and the chain; give back a default report
        name taken for a report that was never written."""
        if self.journal is not None:
            self.journal.close()
            if self.journal.created and not self.journal.records and self.journal.path.exists():
                self.journal.path.unlink()  # stopped before any row ended: nothing to keep
        if self.chain is not None:
            self.chain.close()
        if self._reserved is not None and self._reserved.exists() and not self._reserved.stat().st_size:
            self._reserved.unlink()

    def _open_journal(self) -> Journal:
        """The journal beside the report; one left by an interrupted run is continued only when
        it is what this run resumes from, never overwritten."""
        path = journal_path(self.report)
        resume = self.options.resume
        for busy in (path, resume):
            if busy is not None and busy.exists() and (pid := running_pid(busy)) is not None:
                raise UsageError(in_use(busy, pid))
        if path.exists() and (resume is None or path.resolve() != resume.resolve()):
            raise UsageError(f"{path} is the journal of an interrupted run: resume from it with "
                             f"--resume {path}, or move it away")
        with writing(path, error=UsageError):
            return Journal(path, resume, on_error=self._journal_failed)

    def _journal_failed(self, error: OSError) -> None:
        if self.stop_sending is not None:
            self.stop_sending(f"not sent: the journal cannot be written ({reason(error)})")

    def check(self, default_project: str, *, project_required: bool) -> Spool:
        """Every row of the manifest, checked once (see :mod:`batchcfg.checked`); a resumed
        chain of another manifest is refused here, before anything is sent."""
        assert self.manifest is not None
        spool = check(self.manifest, default_project, project_required=project_required,
                      max_rows=self.options.input.max_rows, replace=self.options.replace)
        if self.chain is not None:
            try:
                self.chain.check_rows(((item.row, item.config_name) for item in spool.items()), "manifest")
            except BaseException:
                spool.__exit__()
                raise
        for note in spool.notes:  # cells a spreadsheet's quote still defuses: logged once, and in the summary
            log.warning("%s", note)
            self.summary.notes.append(note)
        return spool

    def to_send(self, items: Iterable[Job | Outcome]) -> Iterator[Job]:
        """The jobs among ``items``, each marked pending as it goes out; the other items
        (invalid rows, and rows done in the chain resumed from) are recorded on the way."""
        done: Collection[tuple[str, str, str]] = self.chain.done if self.chain is not None else ()
        for item in items:
            if isinstance(item, Outcome):
                self.record(item)
            elif (item.project_id, item.config_name, item.body_sha256) in done:
                self.record(Outcome.of(item, SKIPPED, error_message=f"succeeded in an earlier run "
                                                                    f"({self.options.resume})"))
            else:
                self.pending[item.row] = item
                yield item

    def record(self, outcome: Outcome) -> None:
        """One row ended: journal it at once, count it, then tell the caller."""
        self.pending.pop(outcome.row, None)
        if self.journal is not None:
            self.journal.write(outcome)
        self.summary.note(outcome)
        if self.failed_manifest is not None and outcome.status in TO_FIX_STATUSES:
            error = f"{outcome.error_code}: {outcome.error_message}" if outcome.error_code else ""
            self.to_fix[outcome.row] = (outcome.status, error)
        if self.on_outcome is not None:
            self.on_outcome(outcome)

    def close_sending(self, sender: Sender, unsent: Iterable[Job], *, interrupted: bool) -> None:
        """After sending, however it ended: rows cut off in flight and rows never sent end
        ``cancelled``, and the sending's figures go into the summary."""
        written = sender.rows_written()
        for job in list(self.pending.values()):  # a hard stop (a second Ctrl-C) cuts rows off
            self.record(Outcome.cancelled(job, "stopped at once: may or may not have been applied" if job.row in written
                                          else "not sent: the run was interrupted"))
        for job in unsent:
            self.record(Outcome.cancelled(job, "not sent: the run was interrupted"))
        summary, stats = self.summary, sender.stats
        summary.elapsed, summary.requests, summary.retries = sender.elapsed(), stats.requests, stats.retries
        summary.max_rate, summary.lowest_rate = self.options.sending.rate, sender.lowest_rate
        summary.http_statuses = stats.statuses
        started = stats.started_at or 0.0
        summary.timeline = [(second, starts, throttled, retries)
                            for second, (starts, throttled, retries) in sorted(stats.seconds.items())]
        if sender.adaptive is not None:
            summary.rate_changes = [(at - started, rate) for at, rate in sender.adaptive.changes]
        import numpy as np  # loaded already: the manifest's check uses it

        if stats.windows:
            windows = np.frombuffer(stats.windows, dtype=np.float64)
            summary.window_p50, summary.window_p99 = (float(q) for q in np.quantile(windows, [0.5, 0.99]))
        if stats.latencies:
            latencies = np.frombuffer(stats.latencies, dtype=np.float64)
            summary.latency_p50, summary.latency_p95, summary.latency_p99 = (
                float(q) for q in np.quantile(latencies, [0.5, 0.95, 0.99]))
            bounds = np.geomspace(0.001, max(0.002, float(latencies.max())), num=24)  # 1 ms up, log-spaced
            counts = np.histogram(np.clip(latencies, 0.001, None), bins=np.concatenate(([0.0], bounds)))[0]
            summary.latency_buckets = [(float(b), int(c)) for b, c in zip(bounds, counts)]
        summary.stop_reason = sender.stop_reason
        summary.interrupted = interrupted

    def finish(self, in_row_order: Iterable[Outcome] = ()) -> Summary:
        """Write the report, atomically: the outcomes given (already in row order), or else the
        journal's, sorted. Then the failed-row manifest; then the journal is no longer needed."""
        journal = self.journal
        kept = ""
        if journal is not None:
            journal.flush()
            if journal.error is not None:
                raise OutputError(f"cannot write the journal {journal.path} ({reason(journal.error)}), so "
                                  "the run stopped. It holds the rows that ended before; once there is room, "
                                  f"--resume {journal.path} sends the others (again)")
            kept = f"; every row's result is in the journal {journal.path}"
        with writing(self.report, kept):
            write_report(self.report, self._recorded(in_row_order) if journal is None else journal.outcomes(),
                         bom=self.manifest is not None and self.manifest.bom)
        if self.failed_manifest is not None and self.manifest is not None:
            if _stamp(self.manifest.path) != self._as_read:  # its rows are not the rows the run read
                self.summary.notes.append(f"rows to fix not written: {self.manifest.path} changed during the run; "
                                          "the report has every row")
                self.summary.failed_manifest = None
            else:
                with writing(self.failed_manifest, kept):
                    write_failed_manifest(self.manifest, self.to_fix, self.failed_manifest)
        if journal is not None:
            journal.close()
            journal.path.unlink(missing_ok=True)
        return self.summary

    def _recorded(self, outcomes: Iterable[Outcome]) -> Iterator[Outcome]:
        for outcome in outcomes:
            self.record(outcome)
            yield outcome


def _settings(options: Options) -> dict[str, str]:
    """The settings a run ran with, as text, for its page: no credentials among them."""
    sending, connection = options.sending, options.connection
    shown: dict[str, object] = {
        "rate": sending.rate or "no limit", "concurrency": sending.concurrency or "auto",
        "max_retries": sending.max_retries, "timeout": connection.timeout, "max_failures": sending.max_failures or "",
        "max_unavailable": sending.max_unavailable, "deadline": sending.deadline or "",
        "replace": options.replace, "create_missing": options.create_missing, "dry_run": options.dry_run,
        "send_unchanged": options.send_unchanged, "force": options.force, "resume": options.resume or ""}
    return {key: str(value) for key, value in shown.items() if value not in ("", False)}


def _stamp(path: Path) -> tuple[int, int] | None:
    """A file's size and modification time: enough to see that it changed."""
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_size, status.st_mtime_ns


def reason(error: OSError) -> str:
    return error.strerror or str(error)


@contextmanager
def writing(path: Path, kept: str = "", error: type[BatchcfgError] = OutputError) -> Iterator[None]:
    """An OSError while writing ``path`` (a full disk) becomes one line: an :class:`OutputError`,
    or a :class:`UsageError` when nothing has been sent yet."""
    try:
        yield
    except OSError as exc:
        raise error(f"cannot write {path} ({reason(exc)}){kept}") from None
