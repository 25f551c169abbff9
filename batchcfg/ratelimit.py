"""A rate limiter that never lets more than ``rate`` requests start in any one-second window.

Two rules work together. Pacing spaces starts evenly, so that there is never a burst, not even in
the first second. A log of the last ``rate`` start times is the hard guarantee: the next start
waits until the oldest of them is a window old. Both run 2 % slow (a window of 1.02 s), so that
jitter between here and the server does not push a window over as the server counts it.

>>> limiter = RateLimiter(10)          # no event loop needed until the first acquire()
>>> async def send_one():
...     await limiter.acquire()        # returns when this request may start
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

import anyio

PACING_SLACK = 1.02  # a margin for jitter on the way to the server; costs 2 % of throughput
WINDOW_SECONDS = 1.0


class RateLimiter:
    """At most ``rate`` starts in any window of ``window`` seconds, evenly paced.

    ``clock`` and ``sleep`` are injectable so that tests can move a fake clock instead of waiting.
    ``rate`` may be fractional: 0.5 means one start every two seconds.
    """

    def __init__(self, rate: float, *, window: float = WINDOW_SECONDS,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[object]] = anyio.sleep) -> None:
        self.window = window
        self._starts: deque[float] = deque()
        self.rate = rate
        self._next = -math.inf
        self._clock = clock
        self._sleep = sleep
        self._lock: anyio.Lock | None = None  # made on first use, inside the event loop
        self.started = 0

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
        return (f"RateLimiter(rate={self.rate:g}, started={self.started}, "
                f"in_last_window={self._in_last_window()})")

    def _in_last_window(self) -> int:
        now = self._clock()
        return sum(1 for start in self._starts if now - start < self.window)

    async def acquire(self) -> None:
        """Wait until one more request may start, and count it as started."""
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            while True:
                now = self._clock()
                wait = self._next - now
                if len(self._starts) == self._starts.maxlen:
                    wait = max(wait, self._starts[0] + self.window * PACING_SLACK - now)
                if wait <= 0:
                    break
                await self._sleep(wait)
            self._starts.append(now)
            # The next slot follows this one's slot, not its (a little late) wake-up, so that
            # oversleeping does not lower the average; after idling, no credit is saved up.
            late = now - self._next
            self._next = (self._next if late < self._interval else now) + self._interval
            self.started += 1
