"""batchcfg's exceptions, its local error codes, and the one rule that gives a run its exit code.

Exceptions are for "cannot start" (exit 2), for a run whose own files cannot be written (exit 74)
and for a lock held by another run (exit 75). A row that fails is a result with an error code,
never an exception::

    BatchcfgError              anything that stops a run before a request is sent (exit 2)
     +-- UsageError            bad option value, missing endpoint, project id or credentials
     +-- ManifestError         unreadable or malformed manifest (file, extension, header)
     +-- OutputError           the journal or the report cannot be written (a full disk): exit 74
     +-- LockHeld              another run holds the --lock file: exit 75
    TransportError             one attempt got no usable HTTP answer (raised by client.py only)
     +-- AttemptTimeout        the attempt timed out             -> BATCHCFG.TIMEOUT
     +-- ConnectionFailed      could not connect, or was cut off -> BATCHCFG.CONNECTION
"""

from __future__ import annotations

import signal as signals

# Exit codes: docs/contract.md's, and those batchcfg adds (74, 75, 143).
EXIT_OK = 0
EXIT_ROWS_FAILED = 1
EXIT_CANNOT_START = 2
EXIT_CHANGES_PENDING = 3  # plan --detailed-exitcode: every row planned, and some would change
EXIT_IO_ERROR = 74  # EX_IOERR: the journal or the report cannot be written
EXIT_LOCKED = 75  # EX_TEMPFAIL: another run holds the lock; try again later
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM

# Local error codes (docs/contract.md, and batchcfg's own). Server errors keep the server's own code.
REQUIRED = "BATCHCFG.REQUIRED"
TYPE = "BATCHCFG.TYPE"
RANGE = "BATCHCFG.RANGE"
CONFLICT = "BATCHCFG.CONFLICT"
FORMAT = "BATCHCFG.FORMAT"
DUPLICATE = "BATCHCFG.DUPLICATE"
TIMEOUT = "BATCHCFG.TIMEOUT"
CONNECTION = "BATCHCFG.CONNECTION"
BAD_RESPONSE = "BATCHCFG.BAD_RESPONSE"
CANCELLED = "BATCHCFG.CANCELLED"
BACKUP = "BATCHCFG.BACKUP"  # the config could not be backed up, so it was not changed
NOT_APPLIED = "BATCHCFG.NOT_APPLIED"  # read back after the PUT, a field the row changed is not as sent
UNEXPECTED = "BATCHCFG.UNEXPECTED"  # an error nobody foresaw ended the row (never the run)
CHANGED_SINCE = "BATCHCFG.CHANGED_SINCE"  # a conflict: the config changed since the run or the plan
SPEC = "BATCHCFG.SPEC"      # preflight: spec_id is not one of the project's training specs
ENGINE = "BATCHCFG.ENGINE"  # preflight: engine_id is not one of the project's engines


def exit_code(*, interrupted: bool = False, signal: int | None = None, rows_to_fix: bool = False) -> int:
    """The exit code of a run that ended: 130 (143 after SIGTERM) when interrupted, else 1 when
    some row is invalid, failed or cancelled, else 0. Exceptions carry their own ``exit_code``."""
    if interrupted:
        return EXIT_TERMINATED if signal == signals.SIGTERM else EXIT_INTERRUPTED
    return EXIT_ROWS_FAILED if rows_to_fix else EXIT_OK


class BatchcfgError(Exception):
    """A run cannot start (or, as :class:`OutputError`, cannot go on). The message is one line, fit
    to print after ``batchcfg: error:``; ``exit_code`` is the CLI's."""

    exit_code = EXIT_CANNOT_START


class UsageError(BatchcfgError):
    """An option, the endpoint, the project id or the credentials are missing or wrong."""


class ManifestError(BatchcfgError):
    """The manifest cannot be read: missing, empty, undecodable, unsupported, bad header."""


class OutputError(BatchcfgError):
    """The run's journal or report cannot be written; the run stopped sending."""

    exit_code = EXIT_IO_ERROR


class LockHeld(BatchcfgError):
    """Another batchcfg run holds the ``--lock`` file; nothing was done."""

    exit_code = EXIT_LOCKED


class TransportError(Exception):
    """One attempt got no usable HTTP answer. ``code`` is the local error code to report."""

    code = CONNECTION


class AttemptTimeout(TransportError):
    """The attempt did not finish within ``--timeout`` seconds."""

    code = TIMEOUT


class ConnectionFailed(TransportError):
    """The connection could not be made, or broke before the answer was complete."""

    code = CONNECTION
