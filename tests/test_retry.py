"""The retry policy: what is retried, the backoff's bounds, ``Retry-After``."""

from __future__ import annotations

import random
from datetime import datetime, timezone

import pytest

from batchcfg.retry import Backoff, RetryPolicy, is_retryable, parse_retry_after


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


def test_the_policy_counts_retries() -> None:
    policy = RetryPolicy(max_retries=2)
    assert policy.retries(1, 503, "") and policy.retries(2, None, "BATCHCFG.TIMEOUT")
    assert not policy.retries(3, 503, ""), "at most max_retries + 1 attempts"
    assert not policy.retries(1, 400, "ModelArts.0104")
    assert RetryPolicy(max_retries=0).retries(1, 503, "") is False
