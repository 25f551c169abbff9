"""Request rates: a limiter that never lets more than ``rate`` requests start in any one-second
window, the adaptive rate that follows throttling, and auto concurrency that follows the rate.

Two rules work together in the limiter. Pacing spaces starts evenly, so that there is never a burst, not even in
the first second. A log of the last ``rate`` start times is the hard guarantee: the next start
waits until the oldest of them is a window old. Both run 2 % slow (a window of 1.02 s), so that
jitter between here and the server does not push a window over as the server counts it.

A row that reads a config and then writes it takes both starts at once (``acquire(2)``): the
second is *held* for the write (:meth:`RateLimiter.use`, or :meth:`RateLimiter.release` when the
row writes nothing), so that the write never queues behind other rows' reads. A held start takes
its place in the window the moment it is held and is logged when it is used, so the guarantee
holds for what the server sees. Below 2 starts a window (``--rate`` under 2) nothing is held.

Throttling answers (429 and the throttle codes) halve the rate at once, at most once a second;
successes raise it again by ``rate / 20`` per second, never above the rate asked for
(:class:`AdaptiveRate`). ``--concurrency auto`` keeps rate x latency x 1.5 requests in flight
(Little's law, with room for jitter), between 1 and 256 (:class:`AutoConcurrency`).

>>> limiter = RateLimiter(10)          # no event loop needed until the first acquire()
>>> adaptive = AdaptiveRate(limiter, SYSTEM_CLOCK)
>>> adaptive.throttled(); limiter.rate
5.0
>>> AutoConcurrency(RateLimiter(10)).observe(0.3)  # 10/s at 300 ms a request: 4.5 + 1
6
"""

from __future__ import annotations

import logging
import math
from collections import deque

import anyio

from .clock import SYSTEM_CLOCK, Clock
from .settings import AUTO_MAX_CONCURRENCY

log = logging.getLogger(__name__)
PACING_SLACK = 1.02  # a margin for jitter on the way to the server; costs 2 % of throughput
WINDOW_SECONDS = 1.0


class RateLimiter:
    """At most ``rate`` starts in any window of ``window`` seconds, evenly paced.

    ``clock`` is injectable so that tests can move a fake clock instead of waiting. ``rate`` may
    be fractional: 0.5 means one start every two seconds.
    """

    def __init__(self, rate: float, *, window: float = WINDOW_SECONDS, clock: Clock = SYSTEM_CLOCK) -> None:
        self.window = window
        self._starts: deque[float] = deque()
        self.rate = rate
        self._next = -math.inf
        self._clock = clock
        self._lock: anyio.Lock | None = None  # made on first use, inside the event loop
        self._freed: anyio.Event | None = None  # set when a held start is used or released
        self.started = 0
        self.held = 0  # starts taken for a row's next request, not yet used

    @property
    def rate(self) -> float:
        """Starts allowed per window; may be changed while running (adaptive throttling)."""
        return self._rate

    @rate.setter
    def rate(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._rate = rate
        self._interval = self.window * PACING_SLACK / rate
        # Keep the most recent starts: the cap holds across the change.
        self._starts = deque(self._starts, maxlen=max(1, math.floor(rate * self.window + 1e-9)))

    def __repr__(self) -> str:
        return (f"RateLimiter(rate={self.rate:g}, started={self.started}, held={self.held}, "
                f"in_last_window={self._in_last_window()})")

    def _in_last_window(self) -> int:
        now = self._clock.now()
        return sum(1 for start in self._starts if now - start < self.window)

    async def acquire(self, count: int = 1) -> int:
        """Wait until one more request may start, and count it as started; with ``count`` 2, hold
        a second start for the same row's next request (when a window has room for two). Returns
        how many starts were taken."""
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            while True:
                capacity = self._starts.maxlen or 1
                count = min(count, capacity)
                room = capacity - self.held - count  # earlier starts that may stay in the window
                if room < 0:  # the window is taken by held starts: wait for one to be used or freed
                    self._freed = self._freed or anyio.Event()
                    await self._freed.wait()
                    continue
                now = self._clock.now()
                wait = self._next - now
                if len(self._starts) > room:
                    wait = max(wait, self._starts[len(self._starts) - room - 1] + self.window * PACING_SLACK - now)
                if wait <= 0:
                    break
                await self._clock.sleep(wait)
            self._start(now)
            self.held += count - 1
        return count

    def _start(self, now: float) -> None:
        self._starts.append(now)
        self.started += 1
        # The next slot follows this one's slot, not its (a little late) wake-up, so that
        # oversleeping does not lower the average; after idling, no credit is saved up. A held
        # start is paced when it is used: a row that needs no write takes one step, not two.
        late = now - self._next
        self._next = (self._next if late < self._interval else now) + self._interval

    def use(self) -> None:
        """A held start begins now."""
        self.held -= 1
        self._start(self._clock.now())
        self._wake()

    def release(self) -> None:
        """A held start is not needed (the row writes nothing, or its read is retried later)."""
        self.held -= 1
        self._wake()

    def _wake(self) -> None:
        if self._freed is not None:
            self._freed.set()
            self._freed = None


class AdaptiveRate:
    """Follows the server's throttling: :meth:`throttled` halves the limiter's rate at once (at
    most once a second, down to 1/s, or the rate asked for when that is lower); :meth:`succeeded`
    raises it by ``rate / 20`` per second of successes, never above the rate asked for."""

    def __init__(self, limiter: RateLimiter, clock: Clock = SYSTEM_CLOCK) -> None:
        self.limiter = limiter
        self.ceiling = limiter.rate
        self.lowest = limiter.rate  # the lowest rate reached, for the summary
        self.changes: list[tuple[float, float]] = []  # (clock time, rate): cuts, and recovery once a second
        self._clock = clock
        self._last_cut = self._last_noted = -math.inf

    def __repr__(self) -> str:
        return f"AdaptiveRate(rate={self.limiter.rate:g}, ceiling={self.ceiling:g}, lowest={self.lowest:g})"

    def throttled(self) -> None:
        now = self._clock.now()
        if now - self._last_cut >= 1.0:
            self._last_cut = now
            limiter = self.limiter
            limiter.rate = max(min(1.0, self.ceiling), limiter.rate / 2)
            self.lowest = min(self.lowest, limiter.rate)
            self.changes.append((now, limiter.rate))
            self._last_noted = now
            log.info("throttled by the server: rate lowered to %.3g/s", limiter.rate)

    def succeeded(self) -> None:
        limiter = self.limiter
        if limiter.rate < self.ceiling:
            limiter.rate = min(self.ceiling, limiter.rate + self.ceiling / 20 / limiter.rate)
            now = self._clock.now()
            if now - self._last_noted >= 1.0 or limiter.rate == self.ceiling:
                self.changes.append((now, limiter.rate))
                self._last_noted = now


class AutoConcurrency:
    """``--concurrency auto``: the requests to keep in flight for the limiter's rate at the latency
    seen (a moving average), x 1.5 for jitter, plus one; between 1 and 256."""

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter
        self.latency: float | None = None

    def __repr__(self) -> str:
        return f"AutoConcurrency(rate={self.limiter.rate:g}, latency={self.latency})"

    def observe(self, seconds: float) -> int:
        """Take one request's latency into account; returns the slots wanted now."""
        self.latency = seconds if self.latency is None else 0.8 * self.latency + 0.2 * seconds
        wanted = math.ceil(self.limiter.rate * self.latency * 1.5) + 1
        return max(1, min(AUTO_MAX_CONCURRENCY, wanted))
