"""The journal: each row's final record, on disk the moment the row ends.

The journal (``{report stem}.journal.jsonl`` beside the report) gets one JSON line per row as
the row ends, so that after a ``kill -9`` every finished row is on disk. Rows that end in one
turn of the event loop are written together at the end of that turn (a group commit). When the
run ends, :meth:`Journal.outcomes` gives the records back sorted by row for the report, and the
journal is removed. A journal can be given to ``apply --resume``.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from array import array
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson

from .errors import UsageError
from .files import open_lines, write_all
from .model import Outcome

OUTCOME_CHUNK = 65_536  # records read back a batch
READ_BUFFER = 2**20


def journal_path(report: Path) -> Path:
    """Where the journal of a run with this report goes."""
    return report.with_name(report.stem + ".journal.jsonl")


def running_pid(path: Path) -> int | None:
    """The process of a live run that holds ``path`` (a journal it writes, or a file of the chain
    it resumes), or None when no run does; 0 when a run does but its process cannot be told."""
    try:
        with path.open("rb") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return lock_holder(path) or 0
            fcntl.flock(handle, fcntl.LOCK_UN)
    except OSError:
        return None
    return None


def lock_holder(path: Path) -> int | None:
    """The process that holds a ``flock`` on ``path``, from ``/proc/locks`` (Linux); None when it
    cannot be told."""
    try:
        status = path.stat()
        with open("/proc/locks", encoding="ascii", errors="replace") as locks:
            for line in locks:
                parts = line.split()  # 1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF ("->" marks a waiter)
                if len(parts) >= 6 and parts[1] == "FLOCK" and parts[2] != "->" \
                        and parts[5].rsplit(":", 1)[-1] == str(status.st_ino):
                    return int(parts[4])
    except (OSError, ValueError):
        return None
    return None


def in_use(path: Path, pid: int | None) -> str:
    """The message for a file a live run holds (the journal it writes, or a file of the chain it
    resumes): wait for that run, never resume beside it."""
    process = f" (process {pid})" if pid else ""
    return (f"{path} is in use by a batchcfg run that is still going{process}, which writes or resumes it: wait "
            "for it to end, then resume from its report")


class Journal:
    """Appends one JSON line per finished row.

    It also remembers where each of this run's lines starts (16 bytes a row), so that
    :meth:`outcomes` can give them back sorted by row without holding the run in memory.
    A run that resumes another starts its journal with ``{"resume": PATH}``: a later resume
    from this journal follows it, even when this run died before any row ended.
    """

    def __init__(self, path: Path, resume: Path | None = None,
                 on_error: Callable[[OSError], None] | None = None) -> None:
        self.path = path
        self.created = not path.exists()
        self._handle = open_lines(path)
        try:
            # Held for the run's lifetime: no other run resumes from a journal still being written.
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._handle.close()
            raise UsageError(in_use(path, running_pid(path))) from None
        try:
            header: dict[str, object] = {"pid": os.getpid()}
            if resume is not None:
                header["resume"] = str(resume.resolve())
            write_all(self._handle, orjson.dumps(header, option=orjson.OPT_APPEND_NEWLINE))
        except BaseException:
            self._handle.close()
            raise
        self._size = path.stat().st_size
        self._rows = array("q")
        self._offsets = array("q")
        self._pending: list[bytes] = []
        self.error: OSError | None = None  # why a write failed (a full disk): nothing is written after
        self._on_error = on_error

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r}, records={len(self._rows)})"

    @property
    def records(self) -> int:
        """How many rows this run has journaled."""
        return len(self._rows)

    def write(self, outcome: Outcome) -> None:
        """Append the row's record. Inside an event loop, the rows that end in one turn of the
        loop are written together at the end of that turn (one write() call, not one per row);
        outside one, at once."""
        line = orjson.dumps(outcome, default=tuple, option=orjson.OPT_APPEND_NEWLINE)  # its fields; a change an array
        self._rows.append(outcome.row)
        self._offsets.append(self._size)
        self._size += len(line)
        self._pending.append(line)
        if len(self._pending) == 1:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:
                self.flush()

    def flush(self) -> None:
        """Write the pending lines. A failure is kept in ``error`` and given to ``on_error``
        rather than raised: this runs as an event-loop callback, where an exception would only
        be logged."""
        if self._pending and self.error is None:
            try:
                write_all(self._handle, b"".join(self._pending))
            except OSError as exc:
                self.error = exc
                if self._on_error is not None:
                    self._on_error(exc)
        self._pending.clear()

    def outcomes(self) -> Iterator[Outcome]:
        """This run's records, sorted by row."""
        import numpy as np

        self.flush()
        rows = np.frombuffer(self._rows, dtype=np.int64)
        if not len(rows):
            return
        order = np.argsort(rows, kind="stable") if np.any(rows[1:] < rows[:-1]) else np.arange(len(rows))
        offsets = np.frombuffer(self._offsets, dtype=np.int64)
        # Rows end nearly in order: a large buffer serves most seeks from memory.
        with self.path.open("rb", buffering=READ_BUFFER) as reader:
            for chunk in range(0, len(order), OUTCOME_CHUNK):  # flat memory, whatever the rows
                for offset in offsets[order[chunk:chunk + OUTCOME_CHUNK]].tolist():
                    reader.seek(offset)
                    yield Outcome.from_record(orjson.loads(reader.readline()))

    def close(self) -> None:
        if not self._handle.closed:
            self.flush()
            self._handle.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
