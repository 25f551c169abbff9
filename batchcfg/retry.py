"""When to try a request again, and how long to wait first.

Retried: no answer (timeouts, connection errors), HTTP 408, 429, 500, 502, 503, 504, and the
throttling codes of docs/api.md whatever their status. Nothing else: a 400 or 401 fails the same way
every time, and five bad signatures in a row lock the AK.

Waits are exponential with full jitter (uniform in ``[0, min(cap, base * 2**n)]``), and never
shorter than what the server's ``Retry-After`` asks. The waiting itself is the caller's, on its
injected clock (:mod:`batchcfg.sender`), so that a stop can cut it short and tests need not wait.

>>> policy = RetryPolicy(max_retries=5)
>>> policy.retries(attempts=1, status=503, error_code="ModelArts.0010"), policy.retries(1, 400, "X")
(True, False)
>>> 0 <= policy.backoff.delay(retry=3, retry_after=None) <= 2.0
True
>>> policy.backoff.delay(retry=1, retry_after=10.0) >= 10.0
True
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from .errors import TIMEOUT
from .settings import DEFAULT_MAX_RETRIES

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
THROTTLE_CODES = frozenset({"APIGW.0308", "APIG.0308", "ModelArts.2799", "ModelArts.4206",
                            "ModelArts.6101"})
DEFAULT_BASE = 0.5
DEFAULT_CAP = 30.0


def is_throttled(status: int | None, error_code: str | None) -> bool:
    """Whether an answer says the caller is going too fast: 429, or a throttling code."""
    return status == 429 or error_code in THROTTLE_CODES


def is_retryable(status: int | None, error_code: str | None) -> bool:
    """Whether an attempt that ended this way may succeed if repeated. ``status`` is None when
    there was no HTTP answer at all (timeout, connection error)."""
    if error_code in THROTTLE_CODES:
        return True
    return status is None or status in RETRY_STATUSES


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter. ``rng`` is injectable for deterministic tests."""

    base: float = DEFAULT_BASE
    cap: float = DEFAULT_CAP
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def delay(self, retry: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry)."""
        ceiling = min(self.cap, self.base * 2 ** (retry - 1))
        return max(self.rng.uniform(0, ceiling), retry_after or 0.0)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and after how long a failed attempt is tried again: at most ``max_retries``
    more attempts, for what :func:`is_retryable` allows, after :class:`Backoff` delays; an
    attempt that timed out only when ``timeouts`` (it already took a whole ``--timeout``)."""

    max_retries: int = DEFAULT_MAX_RETRIES
    backoff: Backoff = field(default_factory=Backoff)
    timeouts: bool = True

    def retries(self, attempts: int, status: int | None, error_code: str | None) -> bool:
        """Whether to try again after ``attempts`` attempts, the last of which ended this way
        (``status`` None or 0: no HTTP answer)."""
        if not self.timeouts and error_code == TIMEOUT:
            return False
        return attempts <= self.max_retries and is_retryable(status or None, error_code)


# The preflight's: a moment's hiccup is tried again, a dead endpoint is said within seconds.
BRIEF = RetryPolicy(max_retries=2, backoff=Backoff(base=0.25, cap=1.0), timeouts=False)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds from now: a number of seconds, or an HTTP date. None if absent
    or unreadable; never negative."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())
