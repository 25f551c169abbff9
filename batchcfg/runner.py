"""Sending: jobs -> concurrent, rate-limited, retried requests -> one :class:`Outcome` per row.

What a row needs is its action: :func:`put` (the Modify PUT) by default; reading first, planning
and rolling back are actions too (:mod:`batchcfg.migrate`), all built on :meth:`Runner.call`.

A fixed pool of workers pulls jobs from one iterator, so memory does not grow with the number of
rows. Every attempt (retries too) first takes an in-flight slot, then a start from the
:class:`RateLimiter`. There are ``concurrency`` slots; with ``concurrency=AUTO`` the number follows
the rate: rate x the latency seen (a moving average) x 1.5, between 1 and 256 (Little's law, with
room for jitter). A row's failure is its outcome, never an exception: in a task group one escaped
exception would cancel every sibling.

The first request of a run is sent alone, and an authentication failure stops the run: the
remaining rows end ``cancelled`` instead of locking the AK (five bad signatures lock it for five
minutes). ``max_failures`` failed rows stop it too.

Throttling answers (429 and the throttle codes) halve the request rate at once, at most once a
second; successes raise it again by ``rate / 20`` per second, never above the rate asked for.

>>> async def send(client, jobs):
...     runner = Runner(client, rate=10, concurrency=8, max_retries=5, on_outcome=print)
...     await runner.run(jobs)
"""

from __future__ import annotations

import logging
import math
import time
from array import array
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator

import anyio

from . import errors
from .client import Answer, Client
from .defaults import (AUTO, AUTO_MAX_CONCURRENCY, AUTO_START_CONCURRENCY, AUTO_UNLIMITED_CONCURRENCY,
                       DEFAULT_CONCURRENCY, DEFAULT_MAX_RETRIES, DEFAULT_RATE)
from .errors import TransportError
from .ratelimit import RateLimiter
from .report import CANCELLED, FAILED, SUCCEEDED, Outcome
from .retry import THROTTLE_CODES, Backoff, is_retryable
from .spool import Job

log = logging.getLogger(__name__)


# 403 codes that mean the credentials, not the request, are wrong (plus every 401).
AUTH_FAILURE_CODES = frozenset({"APIGW.0302", "APIGW.0306", "APIGW.0310", "APIG.0302", "APIG.0306",
                                "APIG.0310", "ModelArts.0203", "ModelArts.0206", "ModelArts.0210"})


def is_auth_failure(status: int | None, error_code: str) -> bool:
    return status == 401 or (status == 403 and error_code in AUTH_FAILURE_CODES)


Action = Callable[["Runner", Job], Awaitable[Outcome]]  # what to do with one row: put, plan, ...


class Runner:
    """Sends jobs through one :class:`Client`; reports each row's outcome to ``on_outcome``.

    Call :meth:`stop` (for example on SIGINT) for a graceful stop: no new request starts, the
    requests in flight finish, and the rows not yet sent end ``cancelled``.
    """

    def __init__(self, client: Client, *, rate: float = DEFAULT_RATE,
                 concurrency: int = DEFAULT_CONCURRENCY, max_retries: int = DEFAULT_MAX_RETRIES,
                 on_outcome: Callable[[Outcome], None], action: Action | None = None,
                 max_failures: int = 0,
                 backoff: Backoff | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._action = action or put
        self._limiter = RateLimiter(rate) if rate > 0 else None
        self._max_rate = rate
        self.lowest_rate = rate
        self._last_cut = -math.inf
        self._max_failures = max_failures
        self.failures = 0
        self._auto = concurrency == AUTO
        self._workers = AUTO_MAX_CONCURRENCY if self._auto else concurrency
        if not self._auto:
            self._slots = concurrency
        else:
            self._slots = AUTO_START_CONCURRENCY if rate > 0 else AUTO_UNLIMITED_CONCURRENCY
        self._gate: anyio.CapacityLimiter | None = None  # made in run(), inside the event loop
        self._latency: float | None = None
        self._max_retries = max_retries
        self._on_outcome = on_outcome
        self._backoff = backoff or Backoff()
        self._clock = clock
        self._debug = log.isEnabledFor(logging.DEBUG)  # checked once: a log call per attempt adds up
        self._stopping: anyio.Event | None = None  # made in run(), inside the event loop
        self.stop_reason = ""
        self.requests = 0
        self.retries = 0
        self.statuses: Counter[int] = Counter()  # attempts by HTTP status; 0: no answer
        self.latencies = array("d")  # seconds, one per attempt
        self.in_flight = 0
        self.started_at: float | None = None
        self.finished_at: float | None = None

    def __repr__(self) -> str:
        return (f"Runner(requests={self.requests}, retries={self.retries}, in_flight={self.in_flight}, "
                f"slots={self.concurrency}, stop_reason={self.stop_reason!r}, limiter={self._limiter!r})")

    @property
    def concurrency(self) -> int:
        """Requests allowed in flight now."""
        return int(self._gate.total_tokens) if self._gate is not None else self._slots

    @property
    def elapsed(self) -> float:
        """Seconds from the first request to the end of the last (0 before any)."""
        if self.started_at is None:
            return 0.0
        return (self.finished_at or self._clock()) - self.started_at

    def stop(self, reason: str = "not sent: the run was stopped") -> None:
        """Start no new request; rows not yet sent end ``cancelled`` with ``reason``."""
        if not self.stop_reason:
            self.stop_reason = reason
            log.info("stopping: %s", reason)
            if self._stopping is not None:
                self._stopping.set()

    async def run(self, jobs: Iterable[Job]) -> None:
        """Send every job; returns when each has an outcome."""
        self._stopping = anyio.Event()
        # With a fixed number, the workers are the slots; auto needs a gate it can resize.
        self._gate = anyio.CapacityLimiter(self._slots) if self._auto else None
        if self.stop_reason:
            self._stopping.set()
        iterator = iter(jobs)
        first = next(iterator, None)
        if first is None:
            return
        self.started_at = self._clock()
        try:
            await self._finish(first)  # alone: bad credentials cost one request, not a thousand
            async with anyio.create_task_group() as group:
                for _ in range(self._workers):
                    group.start_soon(self._worker, iterator)
        finally:
            self.finished_at = self._clock()

    async def _worker(self, jobs: Iterator[Job]) -> None:
        # The workers share one iterator: next() runs to completion before any await, so they
        # never race for it, and rows are read from the spool only as workers are free for them.
        for job in jobs:
            await self._finish(job)

    async def _finish(self, job: Job) -> None:
        started = self._clock()
        outcome = await self._action(self, job)
        if outcome.status != CANCELLED:
            outcome.duration_ms = round((self._clock() - started) * 1000)
        elif not outcome.error_message:
            outcome.error_message = self.stop_reason  # the run stopped while the row waited
        if outcome.status == FAILED:
            self.failures += 1
            if self._max_failures and self.failures >= self._max_failures:
                self.stop(f"not sent: {self.failures} rows failed (--max-failures {self._max_failures})")
        self._on_outcome(outcome)

    def new_outcome(self, job: Job) -> Outcome:
        """A row's outcome before anything was sent: ``cancelled``, in case nothing will be."""
        return Outcome(job.row, job.config_name, job.project_id, CANCELLED, error_code=errors.CANCELLED,
                       body_sha256=job.body_sha256)

    def _adapt_rate(self, throttled: bool) -> None:
        """Halve the rate on throttling (once a second at most); raise it slowly on success."""
        limiter = self._limiter
        if limiter is None:
            return
        if throttled:
            now = self._clock()
            if now - self._last_cut >= 1.0:
                self._last_cut = now
                limiter.rate = max(min(1.0, self._max_rate), limiter.rate / 2)
                self.lowest_rate = min(self.lowest_rate, limiter.rate)
                log.info("throttled by the server: rate lowered to %.3g/s", limiter.rate)
        elif limiter.rate < self._max_rate:
            limiter.rate = min(self._max_rate, limiter.rate + self._max_rate / 20 / limiter.rate)

    def _follow_rate(self, seconds: float) -> None:
        """Auto concurrency: slots for the rate at the latency seen (moving average)."""
        self._latency = seconds if self._latency is None else 0.8 * self._latency + 0.2 * seconds
        if self._limiter is None or self._gate is None:
            return
        wanted = math.ceil(self._limiter.rate * self._latency * 1.5) + 1
        slots = max(1, min(AUTO_MAX_CONCURRENCY, wanted))
        if slots != self._gate.total_tokens:
            self._gate.total_tokens = slots

    async def call(self, job: Job, method: str, *, outcome: Outcome | None = None) -> Answer | None:
        """One request for ``job`` (``PUT`` its body, or ``GET`` its config) within the run's limits,
        retried as CONTRACT.md says. Returns the last answer (a failed attempt with no HTTP answer
        has status 0), or None when the run stopped before it was sent. The attempts are counted
        in ``outcome`` when given: the report's ``attempts`` are the PUT's."""
        attempts = 0
        answer: Answer | None = None
        while True:
            gate = self._gate
            if gate is not None:  # a slot first, then a start: the start is when it is sent
                try:  # anyio's acquire() yields to the loop even when a slot is free: try first
                    gate.acquire_nowait()
                except anyio.WouldBlock:
                    await gate.acquire()
            try:
                if self._limiter is not None and not self.stop_reason:
                    await self._limiter.acquire()
                if self.stop_reason:
                    return answer  # None before the first attempt, else the last failure
                sent_at = self._clock()
                attempts += 1
                if outcome is not None:
                    outcome.attempts += 1
                self.requests += 1
                self.in_flight += 1
                try:
                    if method == "PUT":
                        answer = await self._client.put_config(job.project_id, job.config_name, job.body,
                                                               job.body_sha256 or None)
                    else:
                        answer = await self._client.get_config(job.project_id, job.config_name)
                except TransportError as exc:
                    answer = Answer(0, False, exc.code, str(exc))
                finally:
                    self.in_flight -= 1
            finally:
                if gate is not None:
                    gate.release()
            latency = self._clock() - sent_at
            self.latencies.append(latency)
            self.statuses[answer.status] += 1
            if self._auto:
                self._follow_rate(latency)
            if self._debug:
                log.debug("row %d %s: %s attempt %d: %s %s %s", job.row, job.config_name, method, attempts,
                          answer.status or "-", answer.error_code or "ok", answer.request_id)
            throttled = answer.status == 429 or answer.error_code in THROTTLE_CODES
            if throttled or answer.ok:
                self._adapt_rate(throttled)
            if answer.ok:
                return answer
            if is_auth_failure(answer.status, answer.error_code):
                self.stop(f"not sent: authentication failed on row {job.row} ({answer.error_code}); "
                          "check the credentials")
            if (not is_retryable(answer.status or None, answer.error_code)
                    or attempts > self._max_retries or self.stop_reason):
                return answer
            self.retries += 1
            assert self._stopping is not None
            with anyio.move_on_after(self._backoff.delay(attempts, answer.retry_after)):
                await self._stopping.wait()


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


async def put(runner: Runner, job: Job) -> Outcome:
    """The plain Modify: PUT the row's body."""
    outcome = runner.new_outcome(job)
    return settle(outcome, await runner.call(job, "PUT", outcome=outcome))
