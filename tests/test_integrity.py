"""Undo only what the run did, record only what happened: answers, files and chains of runs are
checked before they are trusted.

Each test runs the real sandbox behind a middleware that lies as the case needs (a misrouted
answer, a wrongly typed field, a colleague's edit between a read and a write, a config created by
someone else meanwhile, a server that normalises), and checks the configs the server holds
afterwards, not only the exit code.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from batchcfg import Options, apply, plan, rollback
from batchcfg.backup import read_backup
from batchcfg.clock import SYSTEM_CLOCK, Clock
from batchcfg.sandbox import (RunningSandbox, SandboxConfig, SandboxState, create_app, max_starts_in_window,
                              serve)
from batchcfg.sandbox.data import details

from .conftest import (EARLIER_BODY, PROJECT, SANDBOX_AKSK, VALID_CELLS, FakeClock, cli, read_report, sandbox_options, seed,
                       valid_manifest, write_csv)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Lie = Callable[[web.Request, Handler, SandboxState], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def lying(lie: Lie, clock: Clock = SYSTEM_CLOCK, **config: Any) -> AsyncIterator[RunningSandbox]:
    """The sandbox on a free loopback port, each request passing ``lie`` first (an aiohttp
    middleware given the sandbox's state: it may change the request's effect, the answer, or the
    stored configs)."""
    state, settings = SandboxState(), SandboxConfig(**config)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await lie(request, handler, state)

    app = create_app(settings, state, clock)
    app.middlewares.append(middleware)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield RunningSandbox(str(server.make_url("")).rstrip("/"), settings, state)
    finally:
        await server.close()


def name_of(request: web.Request) -> str:
    return request.path.rstrip("/").rsplit("/", 1)[-1]


async def json_of(response: web.StreamResponse) -> dict[str, Any]:
    assert isinstance(response, web.Response) and response.body is not None
    return json.loads(bytes(response.body))  # type: ignore[arg-type]


def answer(data: dict[str, Any], like: web.StreamResponse) -> web.Response:
    return web.json_response(data, status=like.status, headers={"X-Request-Id": like.headers["X-Request-Id"]})


# 1. A read is of the config asked for, or the row fails -----------------------------------------

def test_another_configs_answer_is_refused_and_nothing_is_put_or_backed_up(tmp_path: Path) -> None:
    """A misrouting gateway answers the read of b with a's config: b fails, b keeps its config,
    and the backup holds no wrong "before" for it."""
    async def misroute(request: web.Request, handler: Handler, state: SandboxState) -> web.StreamResponse:
        response = await handler(request)
        if request.method == "GET" and name_of(request) == "b" and response.status == 200:
            return answer({"is_success": True, **details("a", state.configs[(PROJECT, "a")], 0)}, response)
        return response

    manifest = valid_manifest(tmp_path / "m.csv", ["a", "b", "c"])

    async def scenario() -> None:
        async with lying(misroute) as sandbox:
            seed(sandbox, ["a", "b", "c"])
            sandbox.seed("a", {**EARLIER_BODY, "log_url": "/bucket/a-logs/"})
            summary = await apply(manifest, sandbox_options(sandbox, tmp_path / "r.csv", backup=tmp_path / "b.jsonl"))
            assert summary.counts == {"succeeded": 2, "failed": 1} and summary.exit_code == 1
            assert sandbox.state.configs[(PROJECT, "b")] == EARLIER_BODY, "b is as it was"
            assert sorted(name for _, _, name in sandbox.state.puts) == ["a", "c"]
            assert sorted(r["config_name"] for r in read_backup(tmp_path / "b.jsonl")) == ["a", "c"]
            planned = await plan(manifest, sandbox_options(sandbox, tmp_path / "p.csv"))
            assert planned.counts["failed"] == 1

    anyio.run(scenario)
    failed = {r["config_name"]: r for r in read_report(tmp_path / "r.csv")}["b"]
    assert failed["error_code"] == "BATCHCFG.BAD_RESPONSE" and failed["backup"] == ""
    assert "config_name: the answer is for 'a', not 'b'" in failed["error_message"]


@pytest.mark.parametrize("field, value", [("parameter", {"lr": "0.1"}), ("worker_server_num", "2"),
                                          ("data_source", "/bucket/data/"), ("config_desc", 7),
                                          ("parameter", [{"label": "lr", "value": {"x": 1}}])])
def test_a_wrongly_typed_field_fails_its_row_and_the_run_goes_on(field: str, value: Any, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str], aksk_env: None) -> None:
    async def mistyped(request: web.Request, handler: Handler, state: SandboxState) -> web.StreamResponse:
        response = await handler(request)
        if request.method == "GET" and name_of(request) == "c05" and response.status == 200:
            return answer({**await json_of(response), field: value}, response)
        return response

    names = [f"c{i:02d}" for i in range(15)]
    manifest = valid_manifest(tmp_path / "m.csv", names)

    async def scenario() -> int:
        async with lying(mistyped) as sandbox:
            seed(sandbox, names)
            code = await anyio.to_thread.run_sync(cli, "apply", manifest, "--endpoint", sandbox.endpoint,
                                                  "--project-id", PROJECT, "--rate", "0", "--report", tmp_path / "r.csv",
                                                  "--backup", tmp_path / "b.jsonl")
            assert sandbox.state.configs[(PROJECT, "c05")] == EARLIER_BODY
            assert sorted(name for _, _, name in sandbox.state.puts) == [n for n in names if n != "c05"]
            return code

    assert anyio.run(scenario) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    records = {r["config_name"]: r for r in read_report(tmp_path / "r.csv")}
    assert Counter(r["status"] for r in records.values()) == {"succeeded": 14, "failed": 1}
    assert records["c05"]["error_code"] == "BATCHCFG.BAD_RESPONSE" and f"{field}: " in records["c05"]["error_message"]
    assert all(r["error_message"] != "stopped at once: may or may not have been applied" for r in records.values())


def test_an_unexpected_error_ends_its_row_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug met while handling one row (here: laying the row over its config) ends that row with
    BATCHCFG.UNEXPECTED and the exception's message; every other row goes on."""
    from batchcfg import merge

    real = merge.Patch.over

    def over(self: merge.Patch, current: dict[str, Any]) -> dict[str, Any]:
        if current.get("config_desc") == "trips a bug":
            raise KeyError("no such thing")
        return real(self, current)

    monkeypatch.setattr(merge.Patch, "over", over)
    names = [f"c{i}" for i in range(6)]

    async def scenario() -> Any:
        async with serve(SandboxConfig()) as sandbox:
            seed(sandbox, names)
            sandbox.seed("c3", {**EARLIER_BODY, "config_desc": "trips a bug"})
            return await apply(valid_manifest(tmp_path / "m.csv", names), sandbox_options(sandbox, tmp_path / "r.csv"))

    summary = anyio.run(scenario)
    assert summary.counts == {"succeeded": 5, "failed": 1}
    bad = {r["config_name"]: r for r in read_report(tmp_path / "r.csv")}["c3"]
    assert bad["error_code"] == "BATCHCFG.UNEXPECTED"
    assert bad["error_message"] == "unexpected error: KeyError: 'no such thing'; nothing was changed"


# 2. The lost-update window: narrow, measured, and changes read back ------------------------------

def test_a_rows_write_follows_its_read_at_once_and_the_rate_holds(tmp_path: Path) -> None:
    """At --rate 10 with 8 rows in flight, each PUT goes out as soon as its read is answered (it
    took its rate slot with the read: it never queues behind other rows' reads), and no window of
    a second sees more than 10 requests at the server. On a fake clock the sandbox shares."""
    names = [f"c{i:02d}" for i in range(40)]
    manifest = valid_manifest(tmp_path / "m.csv", names)

    async def scenario() -> Any:
        clock = FakeClock()
        async with clock.running(), serve(SandboxConfig(latency_ms=30), clock=clock) as sandbox:
            seed(sandbox, names)
            options = Options.of(endpoint=sandbox.endpoint, project_id=PROJECT, env=SANDBOX_AKSK, rate=10,
                                 concurrency=8, clock=clock, no_backup=True, report=tmp_path / "r.csv")
            summary = await apply(manifest, options)
            return summary, sandbox.state.starts

    summary, starts = anyio.run(scenario)
    assert summary.counts == {"succeeded": 40}
    assert summary.window_p99 is not None and summary.window_p99 < 0.01, "no queueing between a read and its write"
    assert max_starts_in_window(starts) <= 10


def test_an_edit_between_the_read_and_the_write_is_overwritten_as_documented(tmp_path: Path) -> None:
    """The API has no conditional PUT: a colleague's edit landing between a row's read and its PUT
    is lost (recovery.md says so); the window is reported and the read-back shows what was sent."""
    async def colleague(request: web.Request, handler: Handler, state: SandboxState) -> web.StreamResponse:
        response = await handler(request)
        if request.method == "GET" and name_of(request) == "b" and not state.puts:
            state.configs[(PROJECT, "b")] = {**state.configs[(PROJECT, "b")], "log_url": "/bucket/colleague/"}
        return response

    async def run() -> tuple[Any, dict[str, Any]]:
        async with lying(colleague) as sandbox:
            seed(sandbox, ["a", "b"])
            summary = await apply(valid_manifest(tmp_path / "m.csv", ["a", "b"]),
                                  sandbox_options(sandbox, tmp_path / "r.csv", verify=True, concurrency=1))
            return summary, sandbox.state.configs[(PROJECT, "b")]

    summary, stored = anyio.run(run)
    assert summary.counts == {"succeeded": 2} and summary.verified == 2
    assert "log_url" not in stored, "the colleague's edit between the read and the PUT is overwritten"
    assert summary.window_p50 is not None and summary.window_p99 is not None


# 4. Rollback deletes only what this run created, and only if nobody touched it -------------------

def test_a_post_answered_already_exists_is_never_deleted_by_rollback(tmp_path: Path) -> None:
    """Between the run's read (404) and its POST, someone else creates "theirs": the POST is
    answered "already exists", the row fails, nothing of it goes into the backup, and
    rollback --force deletes only the config the run created."""
    async def someone_else(request: web.Request, handler: Handler, state: SandboxState) -> web.StreamResponse:
        if request.method == "POST":
            body = await request.json()
            if body.get("config_name") == "theirs":
                state.configs[(PROJECT, "theirs")] = {**EARLIER_BODY, "config_desc": "someone else's"}
        return await handler(request)

    manifest = valid_manifest(tmp_path / "m.csv", ["mine", "theirs"])

    async def scenario() -> Any:
        async with lying(someone_else) as sandbox:
            summary = await apply(manifest, sandbox_options(sandbox, tmp_path / "r.csv", create_missing=True,
                                                            backup=tmp_path / "b.jsonl"))
            assert summary.counts == {"created": 1, "failed": 1}
            records = list(read_backup(tmp_path / "b.jsonl"))
            assert [r["config_name"] for r in records] == ["mine"] and records[0]["created"]["config_name"] == "mine"
            undo = await rollback(tmp_path / "b.jsonl", sandbox_options(sandbox, tmp_path / "rb.csv", force=True))
            return undo, dict(sandbox.state.configs)

    undo, configs = anyio.run(scenario)
    assert undo.counts == {"succeeded": 1}
    assert set(configs) == {(PROJECT, "theirs")} and configs[(PROJECT, "theirs")]["config_desc"] == "someone else's"
    failed = {r["config_name"]: r for r in read_report(tmp_path / "r.csv")}["theirs"]
    assert failed["error_code"] == "ModelArts.0103" and failed["backup"] == ""


def test_a_recreated_config_differing_only_in_white_space_is_not_deleted_even_with_force(tmp_path: Path) -> None:
    async def scenario() -> Any:
        async with serve(SandboxConfig()) as sandbox:
            await apply(valid_manifest(tmp_path / "m.csv", ["c"]),
                        sandbox_options(sandbox, tmp_path / "r.csv", create_missing=True, backup=tmp_path / "b.jsonl"))
            # deleted and created again by someone else, with one trailing space more
            sandbox.seed("c", {**sandbox.state.configs[(PROJECT, "c")], "data_url": "/bucket/data/ "})
            undo = await rollback(tmp_path / "b.jsonl", sandbox_options(sandbox, tmp_path / "rb.csv", force=True))
            return undo, sandbox.state

    undo, state = anyio.run(scenario)
    assert undo.counts == {"conflict": 1} and (PROJECT, "c") in state.configs and not state.deletes
    message = read_report(tmp_path / "rb.csv")[0]["error_message"]
    assert "changed since the run created it: data_url" in message and "even with --force" in message


def test_a_create_the_server_normalises_is_still_the_runs_own_to_delete(tmp_path: Path) -> None:
    """The server keeps numeric-looking parameter values as numbers: what it shows after the POST
    is not what was sent, byte for byte. The backup records it as shown, so rollback deletes the
    run's own config, and says "changed since the run" only of a real change."""
    async def numbers(request: web.Request, handler: Handler, state: SandboxState) -> web.StreamResponse:
        response = await handler(request)
        if request.method == "POST" and response.status == 200:
            for key, body in state.configs.items():
                body["parameter"] = [{**p, "value": int(p["value"])} for p in body.get("parameter") or []]
        return response

    manifest = write_csv(tmp_path / "m.csv", ["config_name", *VALID_CELLS, "param.epochs"],
                         [[name, *VALID_CELLS.values(), "5"] for name in ("same", "touched")])

    async def scenario() -> Any:
        async with lying(numbers) as sandbox:
            made = await apply(manifest, sandbox_options(sandbox, tmp_path / "r.csv", create_missing=True,
                                                         backup=tmp_path / "b.jsonl"))
            assert made.counts == {"created": 2} and made.verified == 2
            assert [r["created"]["parameter"] for r in read_backup(tmp_path / "b.jsonl")] == \
                [[{"label": "epochs", "value": 5}]] * 2, "recorded as the server shows it"
            sandbox.state.configs[(PROJECT, "touched")]["worker_server_num"] = 9
            undo = await rollback(tmp_path / "b.jsonl", sandbox_options(sandbox, tmp_path / "rb.csv"))
            return undo, sandbox.state

    undo, state = anyio.run(scenario)
    assert undo.counts == {"succeeded": 1, "conflict": 1}
    assert set(state.configs) == {(PROJECT, "touched")}
    records = {r["config_name"]: r for r in read_report(tmp_path / "rb.csv")}
    assert "changed since the run created it: worker_server_num" in records["touched"]["error_message"]


# 2. (continued) The canary: a server that does not keep a change harms at most 20 configs --------

def test_the_canary_stops_a_run_whose_clears_the_server_ignores(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                 aksk_env: None) -> None:
    """batchcfg sandbox --put-semantics ignore-empty: a run that clears log_url on 100 configs
    stops after the canary, with one line, having changed at most 20 configs."""
    names = [f"c{i:03d}" for i in range(100)]
    manifest = write_csv(tmp_path / "m.csv", ["config_name", "unset"], [[name, "log_url"] for name in names])

    async def scenario() -> tuple[int, SandboxState]:
        async with serve(SandboxConfig(put_semantics="ignore-empty")) as sandbox:
            for name in names:
                sandbox.seed(name, {**EARLIER_BODY, "log_url": "/bucket/logs/"})
            code = await anyio.to_thread.run_sync(cli, "apply", manifest, "--endpoint", sandbox.endpoint,
                                                  "--project-id", PROJECT, "--rate", "0", "--report", tmp_path / "r.csv")
            return code, sandbox.state

    code, state = anyio.run(scenario)
    err = capsys.readouterr().err
    assert code == 1 and len(state.puts) <= 20
    assert all(body["log_url"] == "/bucket/logs/" for body in state.configs.values()), "the server kept them all"
    stops = [line for line in err.splitlines() if line.startswith("batchcfg: stopped early:")]
    assert len(stops) == 1 and stops[0].startswith("batchcfg: stopped early: not sent: the server did not keep "
                                                   "the change of row "), err
    records = read_report(tmp_path / "r.csv")
    statuses = Counter(r["status"] for r in records)
    assert statuses["failed"] == len(state.puts) and statuses["cancelled"] == 100 - len(state.puts)
    failed = [r for r in records if r["status"] == "failed"]
    assert {r["error_code"] for r in failed} == {"BATCHCFG.NOT_APPLIED"} and {r["verified"] for r in failed} == {"yes"}
    assert 'log_url sent (unset), the server holds "/bucket/logs/"' in failed[0]["error_message"]
    rows = f"{len(failed)} row{'' if len(failed) == 1 else 's'}"
    assert (f"batchcfg: read back after the change: {rows}; {len(failed)} not as sent "
            "(BATCHCFG.NOT_APPLIED)\n") in err, "never 'as sent'"


def test_verify_against_a_merging_server_fails_exactly_the_rows_whose_change_it_dropped(tmp_path: Path) -> None:
    """--put-semantics merge keeps what a body leaves out: a cleared model_id (an integer has no
    empty value, so it is left out) survives. With --verify every row is read back: the rows that
    switch to their own code fail BATCHCFG.NOT_APPLIED, the others succeed, after a canary of
    worker-count rows that the server keeps."""
    workers = [[f"w{i:02d}", "3", "", ""] for i in range(25)]
    switch = [[f"s{i}", "", "/bucket/code/", "/bucket/code/train.py"] for i in range(5)]
    manifest = write_csv(tmp_path / "m.csv", ["config_name", "worker_server_num", "app_url", "boot_file_url"],
                         workers + switch)

    async def scenario() -> tuple[Any, SandboxState]:
        async with serve(SandboxConfig(put_semantics="merge")) as sandbox:
            for row in workers + switch:
                sandbox.seed(row[0], EARLIER_BODY)
            return await apply(manifest, sandbox_options(sandbox, tmp_path / "r.csv", verify=True)), sandbox.state

    summary, state = anyio.run(scenario)
    assert summary.counts == {"succeeded": 25, "failed": 5} and summary.verified == 30 and not summary.stop_reason
    records = {r["config_name"]: r for r in read_report(tmp_path / "r.csv")}
    for name, *_ in switch:
        assert records[name]["error_code"] == "BATCHCFG.NOT_APPLIED"
        assert records[name]["error_message"].startswith("the server did not keep the change: ")
        assert "model_id sent (unset), the server holds 7" in records[name]["error_message"]
        assert state.configs[(PROJECT, name)]["model_id"] == 7 and state.configs[(PROJECT, name)]["app_url"]
    assert all(records[row[0]]["status"] == "succeeded" and records[row[0]]["verified"] == "yes" for row in workers)


# 3. Resume chains cannot cross or double --------------------------------------------------------

def test_two_resumes_of_one_chain_at_once_send_each_config_at_most_once(tmp_path: Path) -> None:
    import subprocess
    import sys

    from .conftest import SANDBOX_ENV, SandboxProcess, seed_file

    names = [f"c{i:02d}" for i in range(40)]
    sandbox = SandboxProcess("--latency-ms", "20", "--seed", str(seed_file(tmp_path / "seed.jsonl", names)))
    manifest = valid_manifest(tmp_path / "m.csv", names)

    def run(report: str, *flags: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "batchcfg", "apply", str(manifest), "--endpoint",
                                 sandbox.endpoint, "--report", str(tmp_path / report), "--no-progress", "--rate", "40",
                                 "--backup", str(tmp_path / "b.jsonl"), *flags],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=SANDBOX_ENV)
    try:
        first = run("r1.csv", "--deadline", "0.5")  # ends early, its rest cancelled: a chain to resume
        assert first.wait(timeout=60) == 1
        resumes = [run(f"r2{side}.csv", "--resume", str(tmp_path / "r1.csv")) for side in "ab"]
        outcomes = [(process.wait(timeout=60), process.stderr.read() if process.stderr else "") for process in resumes]
        puts = Counter(put["config_name"] for put in sandbox.get("/_sandbox/puts"))
    finally:
        for process in [first, *resumes]:
            if process.stderr:
                process.stderr.close()
        sandbox.close()
    assert sorted(code for code, _ in outcomes) == [0, 2], outcomes
    refused = next(err for code, err in outcomes if code == 2)
    assert "r1.csv is in use by a batchcfg run that is still going (process " in refused
    assert set(puts) == set(names) and set(puts.values()) == {1}, "each config sent once, across the chain"
    backup = [json.loads(line) for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    records = [r for r in backup if "before" in r]
    assert sorted(r["config_name"] for r in records) == names, "one well-formed backup, each config once"


# 7. Bidi controls from a server or a manifest are escaped on screen and in the report ----------

def test_bidi_controls_are_written_out_on_screen_and_in_the_report(tmp_path: Path, aksk_env: None,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    flipped = "safe\u202etxt.exe\u2066"

    async def says(request: web.Request, handler: Handler, state: SandboxState) -> web.StreamResponse:
        if request.method == "PUT" and name_of(request) == "b":
            return web.json_response({"is_success": False, "error_code": "ModelArts.0104",
                                      "error_message": f"bad {flipped}"}, status=400)
        return await handler(request)

    manifest = write_csv(tmp_path / "m.csv", ["config_name", "config_desc"], [["a", flipped], ["b", "x"], [flipped, "x"]])

    async def scenario() -> int:
        async with lying(says) as sandbox:
            seed(sandbox, ["a", "b"])
            return await anyio.to_thread.run_sync(cli, "apply", manifest, "--endpoint", sandbox.endpoint, "--project-id",
                                                  PROJECT, "--report", tmp_path / "r.csv")

    assert anyio.run(scenario) == 1
    err = capsys.readouterr().err
    records = {r["config_name"]: r for r in read_report(tmp_path / "r.csv")}
    for shown in (err, records["a"]["changes"], records["b"]["error_message"], "".join(records)):  # names too
        assert not any(c in shown for c in "\u202e\u2066") and "\\u202e" in shown
    assert "row 4 safe\\u202etxt.exe\\u2066: " in err, "an invalid row's name, on its error line"
