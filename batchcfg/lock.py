"""One run at a time: ``--lock PATH`` holds an exclusive ``flock`` on PATH for the whole run, and
writes who holds it into the file, so that a run kept out can say who is in its way.

>>> import tempfile
>>> path = Path(tempfile.mkdtemp()) / "batchcfg.lock"
>>> with Lock(path, command="batchcfg apply configs.csv") as lock:
...     lock.holder().command
'batchcfg apply configs.csv'
>>> path.read_text()  # let go: the file names no one
''

- The lock is the ``flock``: the kernel lets it go when its holder ends, however it ends (a
  ``kill -9`` too). A run that cannot have it raises :class:`~batchcfg.errors.LockHeld`
  (exit 75), naming the holder: its pid, host, command and start time.
- ``wait`` seconds: try again until then, and only then give up.
- What the file says never keeps a run out, only the ``flock`` does. A run that gets the
  ``flock`` takes the lock over, and when the file still names a holder (one that was killed, or
  a machine that rebooted), says so in a warning: "took over ... from pid N, which is gone".
- A pid is judged only on its own host: on this host a pid is gone when no such process runs,
  or when the process that runs under it started at another time (the pid was reused). A pid of
  another host (a lock file on NFS) cannot be checked from here, and is never called gone.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType

from .errors import LockHeld, UsageError
from .text import clip, from_server, printable

POLL_SECONDS = 0.1       # how often a waiting run tries the lock again
MAX_HOLDER_BYTES = 4096  # what is read of a lock file: one line of JSON
MAX_COMMAND_CHARS = 300  # a holder's command, as the file keeps it and a message shows it
HOLDER_START = '{"pid": '  # how a holder's line starts: a file that starts otherwise is not a lock's

log = logging.getLogger("batchcfg")


@dataclass(frozen=True)
class Holder:
    """Who holds (or held) a lock, as its file says: the first line, one JSON object."""

    pid: int
    host: str
    command: str
    started: str        # UTC, ISO 8601, to the second
    process: str = ""   # the process's start as the kernel counts it (Linux), to tell a reused pid

    @classmethod
    def me(cls, command: str) -> Holder:
        return cls(os.getpid(), socket.gethostname(), clip(command, MAX_COMMAND_CHARS),
                   datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), _process_start(os.getpid()))

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        """The holder a lock file names, or None: empty, or not written by batchcfg."""
        try:
            data = json.loads(text.partition("\n")[0])
            return cls(int(data["pid"]), printable(str(data["host"]))[:255],
                       from_server(data["command"], MAX_COMMAND_CHARS),
                       printable(str(data["started"]))[:40], str(data.get("process", "")))
        except (ValueError, TypeError, KeyError, AttributeError):
            return None

    def line(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False) + "\n"

    def __str__(self) -> str:
        return f"pid {self.pid} on host {self.host} (started {self.started}): {self.command}"

    def gone(self) -> bool:
        """True only when this holder surely runs no more: a pid of this host that no process
        has, or has since another process start (reused). Never for another host's pid."""
        if self.host != socket.gethostname() or self.pid <= 0:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # it runs, as another user
        now = _process_start(self.pid)
        return bool(self.process and now and now != self.process)


class Lock:
    """An exclusive lock on ``path`` for a ``with`` block; ``wait`` seconds to get it, else
    :class:`LockHeld`. ``command`` is what the file says the holder runs."""

    def __init__(self, path: Path, *, command: str, wait: float = 0.0) -> None:
        self.path = path
        self.command = command
        self.wait = wait
        self._fd: int | None = None

    def __repr__(self) -> str:
        return f"Lock({str(self.path)!r}, wait={self.wait:g}, held={self._fd is not None})"

    def __enter__(self) -> Lock:
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise UsageError(f"--lock {self.path}: {exc.strerror or exc}") from None
        try:
            self._take()
        except BaseException:
            os.close(self._fd)
            self._fd = None
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)  # the next run finds no one named: this run ended
        except OSError:
            pass
        os.close(self._fd)  # and the kernel lets the lock go
        self._fd = None

    def holder(self) -> Holder | None:
        """Who the file says holds the lock now."""
        return Holder.parse(self._text())

    def _text(self) -> str:
        assert self._fd is not None
        try:
            return os.pread(self._fd, MAX_HOLDER_BYTES, 0).decode("utf-8", "replace")
        except OSError:
            return ""

    def _take(self) -> None:
        """The flock, within ``wait`` seconds; then the file names this run."""
        import fcntl

        assert self._fd is not None
        deadline = time.monotonic() + self.wait
        said = False
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    waited = f" (waited {self.wait:g} s)" if self.wait else ""
                    raise LockHeld(f"another run holds the lock {self.path}{waited}: {self._who()}") from None
                if not said:
                    log.info("waiting up to %g s for the lock %s: %s", self.wait, self.path, self._who())
                    said = True
                time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
            except OSError as exc:  # a file system without locks (NFS without lockd)
                raise UsageError(f"--lock {self.path}: cannot lock it ({exc.strerror or exc})") from None
        text = self._text()
        before = Holder.parse(text)
        if before is None and text.strip() and not text.startswith(HOLDER_START):
            raise UsageError(f"--lock {self.path}: the file holds something else than a lock (it is left as it "
                             "is): name a file of its own, such as /run/batchcfg.lock")
        if before is not None and before.gone():
            log.warning("took over the lock %s from pid %d, which is gone (started %s): %s", self.path,
                        before.pid, before.started, before.command)
        elif before is not None:
            log.warning("took over the lock %s, which that run holds no more: %s", self.path, before)
        me = Holder.me(self.command).line().encode()
        try:  # the new line over the old, then the rest cut off: the first line is always whole
            os.pwrite(self._fd, me, 0)
            os.ftruncate(self._fd, len(me))
        except OSError as exc:
            log.warning("cannot write who holds the lock %s (%s)", self.path, exc.strerror or exc)

    def _who(self) -> str:
        """Who holds the lock, as the file says, for a message."""
        holder = self.holder()
        if holder is None:
            return "it does not say who (an older batchcfg, or a run that has only just started)"
        if holder.gone():
            return f"the file still names {holder}, which is gone (an older batchcfg, or another program, holds it)"
        return str(holder)


def _process_start(pid: int) -> str:
    """When process ``pid`` started, as the kernel counts it: the boot and the clock tick (Linux
    ``/proc``); empty where that cannot be read."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    fields = stat.rpartition(")")[2].split()  # after the command name, which may hold spaces
    return f"{boot}/{fields[19]}" if len(fields) > 19 else ""
