"""Time, injected: the system's clock, or a test's fake one.

Everything that waits (the rate limiter, retry backoff) or measures (latency, elapsed time) takes
a :class:`Clock`, so that tests move a fake clock instead of sleeping::

    clock = SystemClock()
    started = clock.now()
    await clock.sleep(0.5)
"""

from __future__ import annotations

import time
from typing import Protocol

import anyio


class Clock(Protocol):
    """Monotonic seconds, and a way to wait for them to pass."""

    def now(self) -> float:
        ...

    async def sleep(self, seconds: float) -> None:
        ...


class SystemClock:
    """``time.monotonic`` and ``anyio.sleep``."""

    def __repr__(self) -> str:
        return "SystemClock()"

    now = staticmethod(time.monotonic)

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


SYSTEM_CLOCK = SystemClock()
