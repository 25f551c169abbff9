"""Failing fast: the first read of a run (List, one config, counted in the rate) says in one line,
with exit 2 and nothing of the rows read or sent, that the endpoint cannot be reached, the
credentials are refused or the project is unknown; within --timeout and a few seconds. And a
rate set too high costs time, never rows.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest
import trustme
from aiohttp import web
from aiohttp.test_utils import TestServer

from batchcfg import Options, apply
from batchcfg.sandbox import SandboxConfig, serve

from .conftest import PROJECT, SANDBOX_AKSK, FakeClock, cli, read_report, seed, valid_manifest

TIMEOUT = 2.0


def run(tmp_path: Path, capsys: pytest.CaptureFixture[str], endpoint: str, *flags: Any) -> tuple[int, str, float]:
    """``apply`` through the CLI in a thread (a test's server runs in this loop): exit code,
    stderr, seconds."""
    started = time.monotonic()
    code = cli("apply", valid_manifest(tmp_path / "m.csv", ["a", "b"]), "--endpoint", endpoint, "--timeout",
               TIMEOUT, "--report", tmp_path / "r.csv", *flags)
    return code, capsys.readouterr().err, time.monotonic() - started


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("batchcfg: error: ") and "Traceback" not in err
    return lines[0]


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch, aksk_env: None) -> None:
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", PROJECT)


def test_a_refused_port(tmp_path: Path, capsys: pytest.CaptureFixture[str], credentials: None) -> None:
    code, err, took = run(tmp_path, capsys, "http://127.0.0.1:9")
    assert code == 2 and took < TIMEOUT + 5
    assert one_line(err) == ("batchcfg: error: cannot reach http://127.0.0.1:9: cannot connect to 127.0.0.1:9 "
                             "(Connect call failed ('127.0.0.1', 9)); nothing was sent")
    assert not (tmp_path / "r.csv").exists() and not list(tmp_path.glob("batchcfg-backup-*"))


def test_a_name_that_does_not_resolve(tmp_path: Path, capsys: pytest.CaptureFixture[str], credentials: None) -> None:
    code, err, took = run(tmp_path, capsys, "https://modelarts.nowhere.invalid")  # .invalid never resolves (RFC 6761)
    assert code == 2 and took < TIMEOUT + 5
    line = one_line(err)
    assert line.startswith("batchcfg: error: cannot reach https://modelarts.nowhere.invalid: cannot connect to "
                           "modelarts.nowhere.invalid:443"), line


def test_a_tls_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str], credentials: None) -> None:
    async def scenario() -> tuple[int, str, float]:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        trustme.CA().issue_cert("127.0.0.1").configure_cert(context)  # a CA nobody trusts
        server = TestServer(web.Application(), host="127.0.0.1")
        await server.start_server(ssl=context)
        try:
            return await anyio.to_thread.run_sync(run, tmp_path, capsys, f"https://127.0.0.1:{server.port}")
        finally:
            await server.close()

    code, err, took = anyio.run(scenario)
    assert code == 2 and took < TIMEOUT + 5
    assert "certificate verify failed" in one_line(err) and "nothing was sent" in err


def test_a_server_that_never_answers(tmp_path: Path, capsys: pytest.CaptureFixture[str], credentials: None) -> None:
    async def silent(request: web.Request) -> web.Response:
        await asyncio.sleep(60)
        return web.json_response({})

    async def scenario() -> tuple[int, str, float]:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", silent)
        async with TestServer(app, host="127.0.0.1") as server:
            return await anyio.to_thread.run_sync(run, tmp_path, capsys, str(server.make_url("")).rstrip("/"))

    code, err, took = anyio.run(scenario)
    assert code == 2 and TIMEOUT <= took < TIMEOUT + 5, took
    assert f"no answer within {TIMEOUT:g} s" in one_line(err)


@pytest.mark.parametrize("env, says", [
    ({"HUAWEICLOUD_SDK_SK": "not-the-secret"}, "refused the credentials (APIGW.0301: Incorrect IAM authentication "
                                               "information: verify aksk signature fail): check the AK/SK in "
                                               "HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK"),
    ({"HUAWEICLOUD_SDK_AK": "", "HUAWEICLOUD_SDK_SK": "", "BATCHCFG_IAM_TOKEN": "expired"},
     "refused the credentials (APIGW.0301: Incorrect IAM authentication information: decrypt token fail): "
     "check the IAM token in BATCHCFG_IAM_TOKEN"),
    ({"HUAWEICLOUD_SDK_PROJECT_ID": "0" * 32}, f"does not know project {'0' * 32} (from environment "
                                               "HUAWEICLOUD_SDK_PROJECT_ID) "
                                               "(APIGW.0302: The IAM user is not authorized to access the API: wrong "
                                               "project): check the project id"),
])
def test_refused_credentials_and_an_unknown_project(env: dict[str, str], says: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str], credentials: None,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    async def scenario() -> tuple[int, str, float, Counter[str]]:
        async with serve(SandboxConfig()) as sandbox:
            seed(sandbox, ["a", "b"])
            code, err, took = await anyio.to_thread.run_sync(run, tmp_path, capsys, sandbox.endpoint)
            return code, err, took, sandbox.state.methods

    code, err, took, methods = anyio.run(scenario)
    assert code == 2 and took < TIMEOUT + 5 and methods == {"GET": 1}, "one read, of the list"
    line = one_line(err)
    assert says in line and line.endswith("; nothing was sent (--no-preflight skips this check)"), line


def test_a_rate_too_high_costs_time_not_rows(tmp_path: Path) -> None:
    """--rate 100000 against a gateway that allows 30 requests a second: throttled answers wait
    and are sent again while the adaptive rate comes down; they are not the row's retries. On a
    fake clock the sandbox shares, so the waits take no time."""
    names = [f"c{i:03d}" for i in range(300)]

    async def scenario() -> Any:
        clock = FakeClock()
        async with clock.running():
            async with serve(SandboxConfig(throttle_rps=30), clock=clock) as sandbox:
                seed(sandbox, names)
                options = Options.of(endpoint=sandbox.endpoint, project_id=PROJECT, env=SANDBOX_AKSK, rate=100_000,
                                     max_retries=2, report=tmp_path / "r.csv", clock=clock, no_backup=True)
                return await apply(valid_manifest(tmp_path / "m.csv", names), options), sandbox.state

    summary, state = anyio.run(scenario)
    assert summary.counts == {"succeeded": 300}, Counter(r["error_code"] for r in read_report(tmp_path / "r.csv"))
    assert state.statuses[429] > 0 and summary.lowest_rate < 100_000, "it was throttled, and came down"
    assert summary.exit_code == 0
