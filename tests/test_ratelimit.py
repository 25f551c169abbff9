"""The rate limiter, the adaptive rate and auto concurrency, on a fake clock: instant and
deterministic."""

from __future__ import annotations

import anyio
import pytest

from batchcfg.ratelimit import AdaptiveRate, AutoConcurrency, RateLimiter
from batchcfg.sandbox import max_starts_in_window

from .conftest import FakeClock


async def starts_of(limiter: RateLimiter, clock: FakeClock, count: int, tasks: int = 1) -> list[float]:
    starts: list[float] = []

    async def worker(share: int) -> None:
        for _ in range(share):
            await limiter.acquire()
            starts.append(clock.now())

    async with clock.running(), anyio.create_task_group() as group:
        for task in range(tasks):
            group.start_soon(worker, count // tasks + (task < count % tasks))
    return sorted(starts)


@pytest.mark.parametrize("rate", [1, 7, 10, 50, 200])
@pytest.mark.parametrize("jitter", [0.0, 0.003])
async def test_no_window_holds_more_than_rate(rate: int, jitter: float) -> None:
    clock = FakeClock(jitter)
    limiter = RateLimiter(rate, clock=clock)
    starts = await starts_of(limiter, clock, rate * 10, tasks=4)
    assert max_starts_in_window(starts) <= rate
    assert max_starts_in_window(starts[: rate + 1]) <= rate, "no burst in the first second"
    achieved = (len(starts) - 1) / (starts[-1] - starts[0])
    assert achieved >= 0.97 * rate
    assert limiter.started == rate * 10


@pytest.mark.parametrize("writes", [0, 1])
async def test_a_read_that_holds_its_write_paces_one_step_and_its_write_another(writes: int) -> None:
    """A read takes two starts (its row's PUT is held): the PUT is paced when it goes, so a row
    that needs no PUT took one step, not two. Unchanged rows read at the rate (less the one place
    in the window a read keeps for its PUT: 48 of 50 at 1.02 s), not at half of it."""
    clock = FakeClock()
    limiter = RateLimiter(50, clock=clock)
    starts: list[float] = []

    async def rows() -> None:
        for _ in range(50):
            await limiter.acquire(2)
            starts.append(clock.now())
            await clock.sleep(0.002)  # the read's answer
            if writes:
                limiter.use()
                starts.append(clock.now())
            else:
                limiter.release()

    async with clock.running(), anyio.create_task_group() as group:
        for _ in range(4):  # rows in flight: they queue at the limiter while the others' reads are out
            group.start_soon(rows)
    starts.sort()
    assert max_starts_in_window(starts) <= 50
    achieved = (len(starts) - 1) / (starts[-1] - starts[0])
    assert 0.93 * 50 <= achieved <= 50, achieved


async def test_fractional_rate_paces_below_one_per_second() -> None:
    clock = FakeClock(jitter=0.01)
    limiter = RateLimiter(0.5, clock=clock)
    starts = await starts_of(limiter, clock, 20, tasks=3)
    assert max_starts_in_window(starts) == 1
    assert 0.97 * 0.5 <= (len(starts) - 1) / (starts[-1] - starts[0]) <= 0.5


async def test_idle_time_saves_no_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock)
    await starts_of(limiter, clock, 10)
    clock.advance(60)
    starts = await starts_of(limiter, clock, 10)
    assert max_starts_in_window(starts) <= 10
    assert "started=20" in repr(limiter)


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RateLimiter(0)




def test_throttling_halves_the_rate_once_a_second_and_successes_bring_it_back() -> None:
    clock = FakeClock()
    limiter = RateLimiter(80, clock=clock)
    adaptive = AdaptiveRate(limiter, clock)
    adaptive.throttled()
    adaptive.throttled()  # within the same second: one cut
    assert limiter.rate == 40
    for _ in range(6):
        clock.advance(1.0)
        adaptive.throttled()
    assert limiter.rate == 1 and adaptive.lowest == 1, "never below 1/s"
    for _ in range(10_000):
        adaptive.succeeded()
    assert limiter.rate == 80, "back to the rate asked for, never above"
    assert adaptive.lowest == 1


def test_throttling_never_raises_a_rate_below_one() -> None:
    limiter = RateLimiter(0.5)
    AdaptiveRate(limiter).throttled()
    assert limiter.rate == 0.5


@pytest.mark.parametrize("rate, latency, slots", [(10, 0.3, 6), (50, 0.3, 24), (100, 0.001, 2),
                                                  (200, 5.0, 256), (1, 0.05, 2)])
def test_auto_concurrency_follows_rate_times_latency(rate: float, latency: float, slots: int) -> None:
    auto = AutoConcurrency(RateLimiter(rate))
    assert auto.observe(latency) == slots


def test_auto_concurrency_follows_a_moving_average() -> None:
    auto = AutoConcurrency(RateLimiter(100))
    auto.observe(0.1)
    assert auto.observe(1.0) == 44, "0.8 x 0.1 + 0.2 x 1.0 = 0.28 s: 100 x 0.28 x 1.5 + 1"
