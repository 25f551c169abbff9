"""Rate limiter and retry policy, on a fake clock: instant and deterministic."""

from __future__ import annotations

import random
from datetime import datetime, timezone

import anyio
import pytest

from batchcfg.ratelimit import RateLimiter
from batchcfg.retry import Backoff, is_retryable, parse_retry_after
from batchcfg.sandbox import max_starts_in_window


class FakeClock:
    """A clock that only moves when something sleeps, plus a little jitter per wake-up."""

    def __init__(self, jitter: float = 0.0, seed: int = 1) -> None:
        self.now = 1000.0
        self.jitter = jitter
        self.rng = random.Random(seed)

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds + self.rng.uniform(0, self.jitter)


async def starts_of(limiter: RateLimiter, clock: FakeClock, count: int, tasks: int = 1) -> list[float]:
    starts: list[float] = []

    async def worker(share: int) -> None:
        for _ in range(share):
            await limiter.acquire()
            starts.append(clock())

    async with anyio.create_task_group() as group:
        for task in range(tasks):
            group.start_soon(worker, count // tasks + (task < count % tasks))
    return sorted(starts)


@pytest.mark.parametrize("rate", [1, 7, 10, 50, 200])
@pytest.mark.parametrize("jitter", [0.0, 0.003])
async def test_no_window_holds_more_than_rate(rate: int, jitter: float) -> None:
    clock = FakeClock(jitter)
    limiter = RateLimiter(rate, clock=clock, sleep=clock.sleep)
    starts = await starts_of(limiter, clock, rate * 10, tasks=4)
    assert max_starts_in_window(starts) <= rate
    assert max_starts_in_window(starts[: rate + 1]) <= rate, "no burst in the first second"
    achieved = (len(starts) - 1) / (starts[-1] - starts[0])
    assert achieved >= 0.97 * rate
    assert limiter.started == rate * 10


async def test_fractional_rate_paces_below_one_per_second() -> None:
    clock = FakeClock(jitter=0.01)
    limiter = RateLimiter(0.5, clock=clock, sleep=clock.sleep)
    starts = await starts_of(limiter, clock, 20, tasks=3)
    assert max_starts_in_window(starts) == 1
    assert 0.97 * 0.5 <= (len(starts) - 1) / (starts[-1] - starts[0]) <= 0.5


async def test_idle_time_saves_no_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock, sleep=clock.sleep)
    await starts_of(limiter, clock, 10)
    clock.now += 60
    starts = await starts_of(limiter, clock, 10)
    assert max_starts_in_window(starts) <= 10
    assert "started=20" in repr(limiter)


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RateLimiter(0)


@pytest.mark.parametrize("retry", [1, 2, 3, 6, 10])
def test_full_jitter_backoff_bounds(retry: int) -> None:
    backoff = Backoff(base=0.5, cap=30.0, rng=random.Random(retry))
    delays = [backoff.delay(retry, None) for _ in range(500)]
    ceiling = min(30.0, 0.5 * 2 ** (retry - 1))
    assert all(0 <= d <= ceiling for d in delays)
    assert max(delays) > 0.8 * ceiling and min(delays) < 0.2 * ceiling, "spread over the whole range"


def test_retry_after_is_a_floor() -> None:
    backoff = Backoff(base=0.5, cap=30.0, rng=random.Random(3))
    assert all(backoff.delay(1, 7.0) >= 7.0 for _ in range(100))


@pytest.mark.parametrize("value, seconds", [
    ("3", 3.0), ("0", 0.0), ("1.5", 1.5), ("-4", 0.0), (None, None), ("", None), ("soon", None),
    ("inf", None), ("nan", None),
    ("Thu, 26 Nov 2026 12:00:30 GMT", 30.0), ("Thu, 26 Nov 2026 11:59:00 GMT", 0.0),
])
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    now = datetime(2026, 11, 26, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after(value, now) == seconds


@pytest.mark.parametrize("status, code, retry", [
    (None, "BATCHCFG.TIMEOUT", True), (None, "BATCHCFG.CONNECTION", True), (408, "", True),
    (429, "", True), (500, "", True), (502, "", True), (503, "", True), (504, "", True),
    (400, "APIGW.0308", True), (200, "ModelArts.4206", True), (400, "ModelArts.0104", False),
    (401, "APIGW.0301", False), (403, "", False), (404, "", False), (409, "", False), (413, "", False),
    (200, "BATCHCFG.BAD_RESPONSE", False), (302, "HTTP.302", False),
])
def test_what_is_retried(status: int | None, code: str, retry: bool) -> None:
    assert is_retryable(status, code) is retry
