"""The sender against a real loopback server with scripted faults: retries, limits, outcomes.

Time is a fake clock shared by the sender and the server: rates, backoffs, ``Retry-After`` and
latencies are virtual; only transport timeouts (which aiohttp measures) are real."""

from __future__ import annotations

import random

import pytest

from batchcfg.actions import Put
from batchcfg.auth import TokenAuth
from batchcfg.client import Client
from batchcfg.settings import AUTO
from batchcfg.model import CANCELLED, FAILED, SUCCEEDED, Outcome
from batchcfg.retry import Backoff, RetryPolicy
from batchcfg.sender import Sender
from batchcfg.sandbox import max_starts_in_window
from batchcfg.model import Job

from .conftest import PROJECT, FakeClock, ScriptedServer

FAST_BACKOFF = Backoff(base=0.01, cap=0.05, rng=random.Random(7))


def jobs(*names: str) -> list[Job]:
    return [Job(row, PROJECT, name, b'{"worker_server_num":1}') for row, name in enumerate(names, start=2)]


async def run(server: ScriptedServer, job_list: list[Job], *, rate: float = 0, concurrency: int = 4,
              max_retries: int = 5, timeout: float = 5.0,
              backoff: Backoff = FAST_BACKOFF) -> tuple[dict[str, Outcome], Sender]:
    """Send ``job_list`` to ``server`` as PUTs, on a fake clock the server shares."""
    outcomes: dict[str, Outcome] = {}
    clock = server.clock = FakeClock()

    def record(outcome: Outcome) -> None:
        assert outcome.config_name not in outcomes, "a row got two outcomes"
        outcomes[outcome.config_name] = outcome

    async with Client(server.url, TokenAuth("t"), timeout=timeout) as client, clock.running():
        runner = Sender(rate=rate, concurrency=concurrency, retry=RetryPolicy(max_retries, backoff), clock=clock)
        await runner.run(job_list, Put(client), record)
    assert len(outcomes) == len(job_list), "every row ends in exactly one outcome"
    return outcomes, runner


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
async def test_retryable_statuses_are_retried_until_success(scripted: ScriptedServer, status: int) -> None:
    scripted.scripts["a"] = [(status, {"error_code": "X.1", "error_msg": "busy"})] * 2
    outcomes, runner = await run(scripted, jobs("a"))
    assert outcomes["a"].status == SUCCEEDED
    assert outcomes["a"].attempts == 3 == len(scripted.attempts("a"))
    assert runner.stats.retries == 2


@pytest.mark.parametrize("status, code", [(400, "ModelArts.0104"), (401, "APIGW.0301"), (403, "ModelArts.0105"),
                                          (404, "ModelArts.0102"), (409, "ModelArts.0103"),
                                          (413, "APIGW.0201"), (422, "ModelArts.0101")])
async def test_client_errors_are_not_retried(scripted: ScriptedServer, status: int, code: str) -> None:
    scripted.scripts["a"] = [(status, {"is_success": False, "error_code": code, "error_message": "no"})]
    outcomes, _ = await run(scripted, jobs("a"))
    assert (outcomes["a"].status, outcomes["a"].http_status, outcomes["a"].error_code) == (FAILED, status, code)
    assert outcomes["a"].attempts == 1 == len(scripted.attempts("a"))


async def test_retries_stop_after_max_retries(scripted: ScriptedServer) -> None:
    scripted.scripts["a"] = [(503, {"error_code": "ModelArts.0010", "error_message": "down"})] * 10
    outcomes, _ = await run(scripted, jobs("a"), max_retries=3)
    assert outcomes["a"].attempts == 4 == len(scripted.attempts("a"))
    assert (outcomes["a"].status, outcomes["a"].error_code, outcomes["a"].error_message) == (
        FAILED, "ModelArts.0010", "down")


@pytest.mark.parametrize("code", ["APIGW.0308", "APIG.0308", "ModelArts.2799", "ModelArts.4206",
                                  "ModelArts.6101"])
async def test_throttle_codes_are_retried_whatever_the_status(scripted: ScriptedServer, code: str) -> None:
    scripted.scripts["a"] = [(400, {"is_success": False, "error_code": code, "error_message": "slow down"})]
    outcomes, _ = await run(scripted, jobs("a"))
    assert (outcomes["a"].status, outcomes["a"].attempts) == (SUCCEEDED, 2)


async def test_timeouts_are_retried_then_reported(scripted: ScriptedServer) -> None:
    scripted.scripts["slow"] = [("sleep", 2.0)] * 3
    scripted.scripts["once"] = [("sleep", 2.0)]
    outcomes, _ = await run(scripted, jobs("slow", "once"), timeout=0.1, max_retries=2)
    assert (outcomes["slow"].status, outcomes["slow"].error_code, outcomes["slow"].attempts) == (
        FAILED, "BATCHCFG.TIMEOUT", 3)
    assert outcomes["slow"].http_status is None
    assert (outcomes["once"].status, outcomes["once"].attempts) == (SUCCEEDED, 2)


async def test_reset_connections_are_retried_then_reported(scripted: ScriptedServer) -> None:
    scripted.scripts["gone"] = ["reset"] * 3
    scripted.scripts["once"] = ["reset"]
    outcomes, _ = await run(scripted, jobs("gone", "once"), max_retries=2)
    assert (outcomes["gone"].status, outcomes["gone"].error_code, outcomes["gone"].attempts) == (
        FAILED, "BATCHCFG.CONNECTION", 3)
    assert (outcomes["once"].status, outcomes["once"].attempts) == (SUCCEEDED, 2)


async def test_refused_connection_is_a_connection_failure() -> None:
    server = ScriptedServer(url="http://127.0.0.1:9")  # discard port: nothing listens
    outcomes, _ = await run(server, jobs("a"), max_retries=1)
    assert (outcomes["a"].status, outcomes["a"].error_code, outcomes["a"].attempts) == (
        FAILED, "BATCHCFG.CONNECTION", 2)
    assert "cannot connect" in outcomes["a"].error_message


async def test_success_false_in_a_200_is_a_failure(scripted: ScriptedServer) -> None:
    scripted.scripts["a"] = [(200, {"is_success": False, "error_code": "ModelArts.0105",
                                    "error_message": "operation not allowed"})]
    outcomes, _ = await run(scripted, jobs("a"))
    assert (outcomes["a"].status, outcomes["a"].http_status, outcomes["a"].error_code,
            outcomes["a"].error_message, outcomes["a"].attempts) == (
        FAILED, 200, "ModelArts.0105", "operation not allowed", 1)


async def test_error_msg_and_missing_code_and_request_id(scripted: ScriptedServer) -> None:
    scripted.scripts["gw"] = [(400, {"error_code": "APIGW.0201", "error_msg": "API request error.",
                                     "request_id": "in-body"})]
    scripted.scripts["bare"] = [(400, {"is_success": False})]
    scripted.scripts["html"] = [("raw", 404, "<html>Not  Found</html>")]
    scripted.scripts["junk"] = [("raw", 200, "OK")]
    outcomes, _ = await run(scripted, jobs("gw", "bare", "html", "junk"))
    assert (outcomes["gw"].error_code, outcomes["gw"].error_message) == ("APIGW.0201", "API request error.")
    assert outcomes["gw"].request_id.startswith("req-"), "the X-Request-Id header wins over the body"
    assert outcomes["bare"].error_code == "HTTP.400"
    assert (outcomes["html"].error_code, outcomes["html"].error_message) == ("HTTP.404", "<html>Not Found</html>")
    assert (outcomes["junk"].status, outcomes["junk"].error_code) == (FAILED, "BATCHCFG.BAD_RESPONSE")


async def test_redirects_are_not_followed(scripted: ScriptedServer) -> None:
    scripted.scripts["a"] = [(302, {}, {"Location": "https://elsewhere.example/steal"})]
    outcomes, _ = await run(scripted, jobs("a"))
    assert (outcomes["a"].status, outcomes["a"].error_code) == (FAILED, "HTTP.302")
    assert len(scripted.seen) == 1


async def test_retry_after_is_honoured(scripted: ScriptedServer) -> None:
    scripted.scripts["a"] = [(429, {"error_code": "APIGW.0308", "error_msg": "throttled"}, {"Retry-After": "1"})]
    outcomes, _ = await run(scripted, jobs("a"))
    first, second = scripted.attempts("a")
    assert outcomes["a"].status == SUCCEEDED
    assert second.at - first.at >= 1.0


async def test_an_authentication_failure_stops_the_run(scripted: ScriptedServer) -> None:
    names = [f"c{i}" for i in range(50)]
    scripted.scripts["c0"] = [(401, {"error_code": "APIGW.0301", "error_msg": "verify aksk signature fail"})]
    outcomes, runner = await run(scripted, jobs(*names), concurrency=8)
    assert len(scripted.seen) == 1, "the first request goes alone; nothing follows a 401"
    assert (outcomes["c0"].status, outcomes["c0"].error_code) == (FAILED, "APIGW.0301")
    cancelled = [o for o in outcomes.values() if o.status == CANCELLED]
    assert len(cancelled) == 49
    assert all(o.error_code == "BATCHCFG.CANCELLED" and "authentication failed on row 2" in o.error_message
               for o in cancelled)
    assert "authentication" in runner.stop_reason


async def test_concurrency_cap_is_held_at_the_server(scripted: ScriptedServer) -> None:
    scripted.latency = 0.05
    outcomes, _ = await run(scripted, jobs(*[f"c{i}" for i in range(40)]), concurrency=5)
    assert all(o.status == SUCCEEDED for o in outcomes.values())
    assert scripted.max_in_flight == 5


async def test_rate_limit_is_held_at_the_server(scripted: ScriptedServer) -> None:
    # Retries count: every third row is answered 503 once.
    for i in range(0, 45, 3):
        scripted.scripts[f"c{i}"] = [(503, {"error_code": "X"})]
    outcomes, runner = await run(scripted, jobs(*[f"c{i}" for i in range(45)]), rate=20, concurrency=8)
    starts = sorted(s.at for s in scripted.seen)
    assert len(starts) == 60 == runner.stats.requests
    assert max_starts_in_window(starts) <= 20
    assert max_starts_in_window(starts[:25]) <= 20, "no burst in the first second"
    assert starts[-1] - starts[0] >= 2.0  # 60 starts at 20/s span at least 59/20 s... minus jitter
    assert all(o.status == SUCCEEDED for o in outcomes.values())


async def test_stop_cancels_unsent_rows_and_lets_in_flight_finish(scripted: ScriptedServer) -> None:
    scripted.latency = 0.2
    outcomes: dict[str, Outcome] = {}
    clock = scripted.clock = FakeClock()
    async with Client(scripted.url, TokenAuth("t"), timeout=5) as client, clock.running():
        def record(outcome: Outcome) -> None:
            outcomes[outcome.config_name] = outcome
            if len(outcomes) == 1:
                runner.stop()

        runner = Sender(rate=0, concurrency=3, retry=RetryPolicy(0), clock=clock)
        await runner.run(jobs(*[f"c{i}" for i in range(20)]), Put(client), record)
    sent = {s.name for s in scripted.seen}
    assert len(outcomes) == 20
    for name, outcome in outcomes.items():
        assert (outcome.status == SUCCEEDED) == (name in sent), "no row both sent and cancelled"
    assert sum(o.status == CANCELLED for o in outcomes.values()) == 20 - len(sent)
    assert len(sent) <= 4


async def test_auto_concurrency_follows_the_rate_at_the_latency_seen(scripted: ScriptedServer) -> None:
    """At 300 ms a request, 50/s needs about 15 in flight: more than auto starts with (8)."""
    scripted.latency = 0.3
    outcomes, runner = await run(scripted, jobs(*[f"c{i}" for i in range(120)]), rate=50, concurrency=AUTO)
    starts = sorted(s.at for s in scripted.seen)
    achieved = (len(starts) - 2) / (starts[-1] - starts[1])  # the first request goes alone
    assert all(o.status == SUCCEEDED for o in outcomes.values())
    assert achieved >= 45, achieved
    assert 8 < scripted.max_in_flight <= runner.concurrency + 1 <= 40
    assert max_starts_in_window(starts) <= 50
