"""Sending: jobs -> concurrent, rate-limited, retried requests -> one :class:`Outcome` per row.

What happens to a row is its action (:mod:`batchcfg.actions`): an async function of the sender,
the job and the row's outcome (made here, ``cancelled`` until the action settles it) that returns
the outcome, making its requests through :meth:`Sender.call`. A call is given the client's request
itself (a function of no arguments that returns an :class:`~batchcfg.client.Answer`), and sends it
within the run's limits:

- a fixed pool of workers pulls jobs from one iterator, so memory does not grow with the rows;
- a row in progress holds a slot (``concurrency`` of them, or with ``auto`` as many as
  :class:`~batchcfg.ratelimit.AutoConcurrency` says), so that its requests (a read, then a PUT)
  follow each other closely and rows finish from the start, rather than every row's read first;
- every attempt, retries too, takes a start from the :class:`~batchcfg.ratelimit.RateLimiter`,
  which adapts to throttling; a read made ``hold=True`` takes the start of the row's write with
  it, and the write (``write=True``) uses it: the write never waits behind other rows' reads. The
  time from the read's answer to the write's start (the window in which another client's edit
  would be overwritten: the API has no conditional PUT) is measured for every such row;
- failed attempts are retried as the :class:`~batchcfg.retry.RetryPolicy` says, after waits on
  the injected :class:`~batchcfg.clock.Clock` that a stop cuts short. Throttled answers (429 and
  the gateway's throttling codes) do not use up a row's retries: they wait and are sent again
  while the adaptive rate comes down, for up to :data:`~batchcfg.settings.MAX_THROTTLED_WAIT`
  seconds; a rate too high costs time, not rows.

The first request of a run is sent alone, and an authentication failure stops the run: the
remaining rows end ``cancelled`` instead of locking the AK (five bad signatures lock it for five
minutes). ``max_failures`` failed rows stop it too. A row's failure is its outcome, never an
exception: in a task group one escaped exception would cancel every sibling. An error nobody
foresaw, while one row is handled, ends that row (``BATCHCFG.UNEXPECTED``, with the exception's
message), never the run; a row whose change was answered keeps its true status.

>>> async def send(client, jobs):
...     await Sender(rate=10, concurrency=8).run(jobs, Put(client), on_outcome=print)
"""

from __future__ import annotations

import logging
import time
from array import array
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone

import anyio

from .client import Answer
from .clock import SYSTEM_CLOCK, Clock
from .errors import CANCELLED as CANCELLED_CODE
from .errors import CONNECTION, TIMEOUT, UNEXPECTED, TransportError
from .model import CANCELLED, CREATED, FAILED, SUCCEEDED, Job, Outcome
from .ratelimit import AdaptiveRate, AutoConcurrency, RateLimiter
from .retry import RetryPolicy, is_retryable, is_throttled
from .settings import (AUTO, AUTO_MAX_CONCURRENCY, AUTO_START_CONCURRENCY, AUTO_UNLIMITED_CONCURRENCY,
                       DEFAULT_CONCURRENCY, DEFAULT_MAX_UNAVAILABLE, DEFAULT_RATE, MAX_RETRY_WAIT,
                       MAX_THROTTLED_WAIT)
from .text import from_server

log = logging.getLogger(__name__)

# 403 codes that mean the credentials, not the request, are wrong (plus every 401).
AUTH_FAILURE_CODES = frozenset({"APIGW.0302", "APIGW.0306", "APIGW.0310", "APIG.0302", "APIG.0306",
                                "APIG.0310", "ModelArts.0203", "ModelArts.0206", "ModelArts.0210"})

Request = Callable[[], Awaitable[Answer]]  # one attempt: the client's call, bound to its arguments
Action = Callable[["Sender", Job, Outcome], Awaitable[Outcome]]  # what happens to one row


def is_auth_failure(status: int | None, error_code: str) -> bool:
    return status == 401 or (status == 403 and error_code in AUTH_FAILURE_CODES)


@dataclass
class SendStats:
    """How the sending went: attempts, retries, HTTP statuses (0: no answer), latencies."""

    requests: int = 0
    retries: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    latencies: array[float] = field(default_factory=lambda: array("d"))  # seconds, one per attempt
    windows: array[float] = field(default_factory=lambda: array("d"))  # seconds from a read's answer to its write
    started_at: float | None = None
    finished_at: float | None = None
    # second since the first request -> [request starts, throttled answers, retries started]
    seconds: dict[int, list[int]] = field(default_factory=dict)

    def count(self, at: float, kind: int) -> None:
        """One event (0: a start, 1: a throttled answer, 2: a retry) at clock time ``at``."""
        second = int(at - (self.started_at if self.started_at is not None else at))
        counts = self.seconds.get(second)
        if counts is None:
            counts = self.seconds[second] = [0, 0, 0]
        counts[kind] += 1

    def elapsed(self, now: float) -> float:
        """Seconds from the first request to the end of the last (0 before any)."""
        if self.started_at is None:
            return 0.0
        return (self.finished_at or now) - self.started_at


class Sender:
    """Sends jobs' requests within one run's limits. Call :meth:`stop` (for example on SIGINT)
    for a graceful stop: no new request starts, the requests in flight finish, and the rows not
    yet sent end ``cancelled``."""

    def __init__(self, *, rate: float = DEFAULT_RATE, concurrency: int = DEFAULT_CONCURRENCY,
                 retry: RetryPolicy | None = None, max_failures: int = 0,
                 max_unavailable: int = DEFAULT_MAX_UNAVAILABLE, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self._retry = retry or RetryPolicy()
        self._limiter = RateLimiter(rate, clock=clock) if rate > 0 else None
        self.adaptive = AdaptiveRate(self._limiter, clock) if self._limiter is not None else None
        self._auto = AutoConcurrency(self._limiter) if concurrency == AUTO and self._limiter is not None else None
        self._workers = AUTO_MAX_CONCURRENCY if concurrency == AUTO else concurrency
        self._slots = concurrency if concurrency != AUTO else (
            AUTO_START_CONCURRENCY if rate > 0 else AUTO_UNLIMITED_CONCURRENCY)
        # With a fixed number, the workers are the slots; auto needs a gate it can resize, made
        # on first use, inside the event loop.
        self._gated = concurrency == AUTO
        self._gate: anyio.CapacityLimiter | None = None
        self._first_sent: dict[int, tuple[float, float]] = {}  # row -> its first request's clock and wall time
        # Of the rows in progress: those holding the start of their write (taken with their read),
        # when their read was answered, and those whose write has been sent.
        self._holding: set[int] = set()
        self._read_at: dict[int, float] = {}
        self._written: set[int] = set()
        self._max_failures = max_failures
        self._max_unavailable = max_unavailable  # 0: never stop for that
        self.unavailable = 0  # rows failed in a row because the service was unavailable
        self._pauses: set[anyio.CancelScope] = set()  # retry waits, cut short by stop()
        self._debug = log.isEnabledFor(logging.DEBUG)  # checked once: a log call per attempt adds up
        self.failures = 0
        self.stop_reason = ""
        self.in_flight = 0
        self.stats = SendStats()

    def __repr__(self) -> str:
        return (f"Sender(requests={self.stats.requests}, retries={self.stats.retries}, "
                f"in_flight={self.in_flight}, slots={self.concurrency}, stop_reason={self.stop_reason!r}, "
                f"limiter={self._limiter!r})")

    @property
    def concurrency(self) -> int:
        """Requests allowed in flight now."""
        return int(self._gate.total_tokens) if self._gate is not None else self._slots

    @property
    def lowest_rate(self) -> float:
        """The lowest rate throttling brought the run down to (0: no limit)."""
        return self.adaptive.lowest if self.adaptive is not None else 0.0

    def elapsed(self) -> float:
        return self.stats.elapsed(self._clock.now())

    @property
    def clock(self) -> Clock:
        return self._clock

    def rows_written(self) -> set[int]:
        """The rows in progress whose write (PUT, POST, DELETE) has started: it may or may not
        have reached the server."""
        return set(self._written)

    def stop(self, reason: str = "not sent: the run was stopped") -> None:
        """Start no new request; rows not yet sent end ``cancelled`` with ``reason``."""
        if not self.stop_reason:
            self.stop_reason = reason
            log.error("stopping: %s", reason)
            for pause in self._pauses:
                pause.cancel()

    async def run(self, jobs: Iterable[Job], action: Action, on_outcome: Callable[[Outcome], None],
                  rows: int | None = None) -> None:
        """Run ``action`` on every job; returns when each has an outcome, given to ``on_outcome``.
        ``rows``, when known, bounds the workers: never more than rows."""
        if rows is not None:
            self._workers = max(1, min(self._workers, rows))
        iterator = iter(jobs)
        first = next(iterator, None)
        if first is None:
            return
        self.stats.started_at = self._clock.now()
        try:
            await self._finish(first, action, on_outcome)  # alone: bad credentials cost one request
            async with anyio.create_task_group() as group:
                for _ in range(self._workers):
                    group.start_soon(self._worker, iterator, action, on_outcome)
        finally:
            self.stats.finished_at = self._clock.now()

    async def _worker(self, jobs: Iterator[Job], action: Action, on_outcome: Callable[[Outcome], None]) -> None:
        # The workers share one iterator: next() runs to completion before any await, so they
        # never race for it, and rows are read from the spool only as workers are free for them.
        for job in jobs:
            await self._finish(job, action, on_outcome)

    async def _finish(self, job: Job, action: Action, on_outcome: Callable[[Outcome], None]) -> None:
        gate = self._gate_now()
        if gate is not None:  # anyio's acquire() yields to the loop even when a slot is free: try first
            try:
                gate.acquire_nowait()
            except anyio.WouldBlock:
                await gate.acquire()
        outcome = Outcome.cancelled(job)
        try:
            outcome = await action(self, job, outcome)
        except Exception as exc:  # one row's surprise ends that row, never the run
            self._unexpected(job, outcome, exc)
        finally:
            if gate is not None:
                gate.release()
        # The row ended (a hard stop cancels it above, and leaves what it did for the ledger to see).
        if job.row in self._holding:  # the row wrote nothing: its held start goes back
            self._holding.discard(job.row)
            if self._limiter is not None:
                self._limiter.release()
        self._read_at.pop(job.row, None)
        self._written.discard(job.row)
        first_sent = self._first_sent.pop(job.row, None)
        if first_sent is not None:  # the row's own time: from its first request, not its queueing
            outcome.duration_ms = round((self._clock.now() - first_sent[0]) * 1000)
            outcome.started_at = datetime.fromtimestamp(first_sent[1], timezone.utc).isoformat(timespec="milliseconds")
        if outcome.status == CANCELLED:  # never written: nothing of its read or its plan stays on it
            outcome.http_status, outcome.request_id, outcome.changes = None, "", ()
            outcome.error_code = CANCELLED_CODE
            outcome.error_message = self.stop_reason or outcome.error_message
        if outcome.status == FAILED:
            self.failures += 1
            if self._max_failures and self.failures >= self._max_failures:
                self.stop(f"not sent: {self.failures} rows failed (--max-failures {self._max_failures})")
            if is_retryable(outcome.http_status, outcome.error_code) or outcome.error_code in (TIMEOUT, CONNECTION):
                self.unavailable += 1
                if self._max_unavailable and self.unavailable >= self._max_unavailable:
                    self.stop(f"not sent: the service looks unavailable: {self.unavailable} rows in a row failed "
                              f"({outcome.error_code}) with no success between (--max-unavailable "
                              f"{self._max_unavailable})")
        elif outcome.status != CANCELLED:
            self.unavailable = 0
        on_outcome(outcome)

    def _unexpected(self, job: Job, outcome: Outcome, exc: Exception) -> None:
        """End the row after an error nobody foresaw: a row whose change was answered keeps its
        status, with a note; any other row fails with ``BATCHCFG.UNEXPECTED``."""
        log.debug("row %d %s: unexpected error", job.row, job.config_name, exc_info=exc)
        what = from_server(f"{type(exc).__name__}: {exc}", 300)
        if outcome.status in (SUCCEEDED, CREATED):
            outcome.error_message = f"{outcome.error_message}; then an unexpected error: {what}".lstrip("; ")
            return
        outcome.status, outcome.error_code = FAILED, UNEXPECTED
        outcome.error_message = f"unexpected error: {what}" + (
            "; its change was sent and may or may not have been applied" if job.row in self._written else
            "; nothing was changed")

    async def call(self, request: Request, *, job: Job | None = None, outcome: Outcome | None = None,
                   hold: bool = False, write: bool = False, after_stop: bool = False,
                   retry: RetryPolicy | None = None) -> Answer | None:
        """Send ``request`` within the run's limits, retried as the policy says. Returns the last
        answer (a failed attempt with no HTTP answer has status 0), or None when the run stopped
        before it was sent, or while a failed attempt waited for its retry (the row then ends
        ``cancelled``, not ``failed``). ``job`` is the row (its time, debug logs); the attempts
        are counted in ``outcome`` when given. ``hold``: a read that takes the start of the row's
        write with it; ``write``: a PUT, POST or DELETE (it uses that start); ``after_stop``: a
        read that is sent even once the run is stopping (the read-back of a write already sent:
        without it, the row's record could not say whether its change was kept); ``retry``: a
        policy of its own instead of the run's."""
        policy = retry or self._retry
        attempts = throttled = 0
        throttled_since: float | None = None
        window: float | None = None  # of a write: from the row's read's answer to its first attempt
        answer: Answer | None = None
        stats, clock = self.stats, self._clock
        row = job.row if job is not None else -1  # -1: a request of no row (List, the catalogs)
        hold = hold and row >= 0
        while True:
            stopped = bool(self.stop_reason) and not (after_stop and attempts == 0)
            if self._limiter is not None and not stopped:
                if row in self._holding:  # the start taken with the row's read
                    self._holding.discard(row)
                    self._limiter.use()
                elif await self._limiter.acquire(2 if hold else 1) == 2:
                    self._holding.add(row)
            if stopped:
                return None  # before the first attempt, or while waiting to retry: not sent again
            sent_at = clock.now()
            if job is not None and job.row not in self._first_sent:
                self._first_sent[job.row] = (sent_at, time.time())
            if write:
                self._written.add(row)
                read_at = self._read_at.pop(row, None)
                if read_at is not None:
                    window = sent_at - read_at
                    stats.windows.append(window)
            attempts += 1
            if outcome is not None:
                outcome.attempts += 1
            stats.requests += 1
            stats.count(sent_at, 0)
            self.in_flight += 1
            try:
                answer = await request()
            except TransportError as exc:
                answer = Answer(0, False, exc.code, str(exc))
            finally:
                self.in_flight -= 1
            self._observe(answer, clock.now() - sent_at, job, request, attempts, window)
            window = None
            if answer.ok or is_auth_failure(answer.status, answer.error_code):
                break
            if is_throttled(answer.status, answer.error_code):
                throttled += 1  # costs time, not one of the row's retries
                throttled_since = sent_at if throttled_since is None else throttled_since
                if sent_at - throttled_since >= MAX_THROTTLED_WAIT:
                    return answer._replace(error_message=f"{answer.error_message} (still throttled after "
                                                         f"{MAX_THROTTLED_WAIT:g} s of waiting)")
            if not policy.retries(attempts - throttled, answer.status, answer.error_code):
                break
            if self.stop_reason:
                return None  # it would be tried again, but the run stopped: cancelled, not failed
            if answer.retry_after is not None and answer.retry_after > MAX_RETRY_WAIT:
                return answer._replace(error_message=f"{answer.error_message} (the server asked to wait "
                                                     f"{answer.retry_after:.0f} s: more than the {MAX_RETRY_WAIT:g} s "
                                                     "a run waits)")
            if row in self._holding:  # no start is held through a retry's wait
                self._holding.discard(row)
                if self._limiter is not None:
                    self._limiter.release()
            stats.retries += 1
            stats.count(clock.now(), 2)
            await self._pause(min(MAX_RETRY_WAIT, policy.backoff.delay(max(1, attempts - throttled), answer.retry_after)))
        if hold:
            self._read_at[row] = clock.now()
        if job is not None and is_auth_failure(answer.status, answer.error_code):  # (no row: its caller says why)
            self.stop(f"not sent: authentication failed on row {job.row} ({answer.error_code}); check the credentials")
        return answer

    def _gate_now(self) -> anyio.CapacityLimiter | None:
        if self._gate is None and self._gated:
            self._gate = anyio.CapacityLimiter(self._slots)
        return self._gate

    def _observe(self, answer: Answer, latency: float, job: Job | None, request: Request, attempts: int,
                 window: float | None) -> None:
        """Count one attempt, and let the rate and the concurrency follow what it showed."""
        self.stats.latencies.append(latency)
        self.stats.statuses[answer.status] += 1
        if self._auto is not None and self._gate is not None:
            slots = self._auto.observe(latency)
            if slots != self._gate.total_tokens:
                self._gate.total_tokens = slots
        throttled = is_throttled(answer.status, answer.error_code)
        if throttled:
            self.stats.count(self._clock.now(), 1)
        if self.adaptive is not None:
            if throttled:
                self.adaptive.throttled()
            elif answer.ok:
                self.adaptive.succeeded()
        if self._debug:
            what = getattr(request, "func", request)
            log.debug("%s %s attempt %d: %s %s %s%s", f"row {job.row} {job.config_name}" if job else "-",
                      getattr(what, "__name__", "request"), attempts, answer.status or "-",
                      answer.error_code or "ok", answer.request_id,
                      f" (read-to-write window {window * 1000:.0f} ms)" if window is not None else "")

    async def _pause(self, seconds: float) -> None:
        """Wait before a retry, on the clock; :meth:`stop` cuts the wait short."""
        await self.wait(self._clock.sleep(seconds))

    async def wait(self, waiting: Awaitable[object]) -> bool:
        """Wait for ``waiting`` (a retry's backoff, a gate to open), unless :meth:`stop` cuts it
        short; False when the run stopped."""
        if self.stop_reason:
            if isinstance(waiting, Coroutine):
                waiting.close()  # never awaited: closed, so that no warning says so
            return False
        with anyio.CancelScope() as scope:
            self._pauses.add(scope)
            try:
                await waiting
            finally:
                self._pauses.discard(scope)
        return not self.stop_reason
