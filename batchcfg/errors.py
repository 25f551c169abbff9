"""batchcfg's exceptions and error codes.

Exceptions are for "cannot start" (the CLI maps them to exit code 2), and for a run whose own
files cannot be written (exit 74). A row that fails is a result with an error code, never an
exception::

    BatchcfgError              anything that stops a run before a request is sent (exit 2)
     +-- UsageError            bad option value, missing endpoint, project id or credentials
     +-- ManifestError         unreadable or malformed manifest (file, extension, header)
     +-- OutputError           the journal or the report cannot be written (a full disk): exit 74
    TransportError             one attempt got no usable HTTP answer (raised by client.py only)
     +-- AttemptTimeout        the attempt timed out             -> BATCHCFG.TIMEOUT
     +-- ConnectionFailed      could not connect, or was cut off -> BATCHCFG.CONNECTION
"""

from __future__ import annotations

# Exit codes (CONTRACT.md, and those batchcfg adds: 143 after SIGTERM, 75 for a held --lock,
# 74 when the run's own files cannot be written).
EXIT_OK = 0
EXIT_ROWS_FAILED = 1
EXIT_CANNOT_START = 2
EXIT_IO_ERROR = 74  # EX_IOERR: the journal or the report cannot be written
EXIT_LOCKED = 75  # EX_TEMPFAIL: another run holds the lock; try again later
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

# Local error codes (CONTRACT.md). Server errors keep the server's own code.
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


class TransportError(Exception):
    """One attempt got no usable HTTP answer. ``code`` is the local error code to report."""

    code = CONNECTION


class AttemptTimeout(TransportError):
    """The attempt did not finish within ``--timeout`` seconds."""

    code = TIMEOUT


class ConnectionFailed(TransportError):
    """The connection could not be made, or broke before the answer was complete."""

    code = CONNECTION
