"""What a run tells the people and the machines watching it: log lines and progress.

- Logging goes to stderr (``--log-format text|json``) and, with ``--log-file PATH``, also to
  that file. JSON logs hold one object a line: ``time``, ``level``, ``message``.
- On a terminal, progress is a tqdm bar, and log lines are routed through it. The bar appears
  once the rows are ready to go (never before a question or an error that stops the run), and
  counts the rows that really ended: a row cancelled unsent (Ctrl-C, a stop) is named beside it,
  not counted. Anywhere else (cron, CI, a pipe), there is no bar and no carriage return, but a
  progress line every ``--progress-interval`` seconds.
- A reader that stops reading ends the output quietly, and a stdout or stderr closed from the
  start goes to /dev/null (:func:`batchcfg.files.reader_may_leave`,
  :func:`batchcfg.files.ensure_std_streams`).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import Counter
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UsageError
from .model import CANCELLED, SUCCEEDED

if TYPE_CHECKING:
    from .model import Outcome

LOGGER = "batchcfg"
log = logging.getLogger(LOGGER)


class JsonFormatter(logging.Formatter):
    """One JSON object a line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "message": record.getMessage()}
        entry.update(getattr(record, "fields", {}))
        return json.dumps(entry, ensure_ascii=False)


def configure(*, verbose: int = 0, quiet: bool = False, log_format: str = "text",
              log_file: Path | None = None) -> None:
    """``-q`` errors only; default: what happens (progress, throttling, stops); ``-v``: every attempt."""
    logger = logging.getLogger(LOGGER)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    formatter: logging.Formatter = (JsonFormatter() if log_format == "json"
                                    else logging.Formatter("batchcfg: %(levelname)s: %(message)s"))
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        try:
            handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
        except OSError as exc:
            raise UsageError(f"--log-file: cannot write {log_file} ({exc.strerror or exc})") from None
        handlers[-1].setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(
            "%(asctime)s batchcfg: %(levelname)s: %(message)s"))
    handlers[0].setFormatter(formatter)
    for handler in handlers:
        logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.ERROR if quiet else logging.DEBUG if verbose else logging.INFO)


class Progress:
    """Counts rows as they end; shows a bar on a terminal, else logs a line every ``interval``.

    The bar is drawn from :meth:`ready` on (the rows are checked, and a person at the terminal
    said yes), and moves only for rows that really ended: a ``cancelled`` row was never sent, so
    after a Ctrl-C the bar stays at what was done (``42/300``) and names the rest
    (``cancelled=258``)."""

    def __init__(self, command: str, *, interval: float, bar: bool) -> None:
        self.command = command
        self.interval = interval
        self.total = 0
        self.done: Counter[str] = Counter()
        self.started = time.monotonic()
        self.terminal = bar and sys.stderr.isatty()
        self._bar: Any = None

    def __repr__(self) -> str:
        return f"Progress({self.command!r}, {self.ended}/{self.total}, {dict(self.done)})"

    @property
    def ended(self) -> int:
        """Rows that really ended: every status but ``cancelled``."""
        return sum(count for status, count in self.done.items() if status != CANCELLED)

    def routed(self) -> AbstractContextManager[Any]:
        """Log lines through the bar while it is shown (they would break it otherwise)."""
        if not self.terminal:
            return nullcontext()
        from tqdm.contrib.logging import logging_redirect_tqdm

        routed: AbstractContextManager[Any] = logging_redirect_tqdm(loggers=[logging.getLogger(LOGGER)])
        return routed

    def ready(self, total: int) -> None:
        """The rows are ready to go: ``total`` of them. The bar starts here."""
        self.total = total
        self.started = time.monotonic()
        if not self.terminal:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="row", desc=self.command, file=sys.stderr, dynamic_ncols=True)
        else:
            self._bar.reset(total=total)

    def update(self, outcome: Outcome) -> None:
        self.done[outcome.status] += 1
        if self._bar is not None:
            if outcome.status != CANCELLED:
                self._bar.update(1)
            if outcome.status != SUCCEEDED:  # the statuses as the summary counts them
                self._bar.set_postfix({status: count for status, count in sorted(self.done.items())
                                       if status != SUCCEEDED}, refresh=False)

    def line(self) -> None:
        """The periodic progress line (when there is no bar)."""
        done = self.ended
        elapsed = time.monotonic() - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        left = (self.total - done) / rate if rate > 0 and self.total > done else 0.0
        counts = ", ".join(f"{count} {status}" for status, count in sorted(self.done.items()))
        share = f" ({done / self.total:.0%})" if self.total else ""
        log.info("progress: %d/%d rows%s; %s; %.1f rows/s; about %s left", done, self.total, share,
                 counts or "none ended yet", rate, _duration(left),
                 extra={"fields": {"done": done, "total": self.total, "rows_per_second": round(rate, 2),
                                   "seconds_left": round(left), "statuses": dict(self.done)}})

    async def report_every_interval(self) -> None:
        import anyio

        if self.terminal or self.interval <= 0:
            return
        while True:
            await anyio.sleep(self.interval)
            self.line()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
