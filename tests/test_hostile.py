"""Hardening: no output may destroy an input, and no server answer may hang, bloat or hijack a run.

Each test attacks one class of defect through the CLI (or the library), against a hostile loopback
server of the test's own (aiohttp's TestServer) or the sandbox."""

from __future__ import annotations

import json
import os
import sys
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from batchcfg import Options, apply
from batchcfg.sandbox import SandboxConfig, serve

from .conftest import PROJECT, VALID_CELLS, cli, listing, read_report, seed, valid_manifest, write_csv
from .perf.measure import measured

TOKEN_ENV = {"BATCHCFG_IAM_TOKEN": "t"}


class Hostile:
    """A loopback server whose every answer (GET and PUT) comes from ``answer(request)``."""

    def __init__(self, answer: Callable[[web.Request], Any]) -> None:
        self.answer = answer
        self.requests = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        return await self.answer(request)


async def hostile_server(answer: Callable[[web.Request], Any]) -> AsyncIterator[tuple[str, Hostile]]:
    server = Hostile(answer)
    app = web.Application()
    app.router.add_route("*", "/v1/{project}/training-job-configs/{name}", server.handle)
    app.router.add_get("/v1/{project}/training-job-configs", listing)  # the preflight's read: honest
    async with TestServer(app, host="127.0.0.1") as test_server:
        yield str(test_server.make_url("")).rstrip("/"), server


def run_against(answer: Callable[[web.Request], Any], manifest: Path, report: Path, **options: Any) -> Any:
    async def scenario() -> Any:
        with anyio.fail_after(60):  # a run that hangs fails the test instead
            async for url, _ in hostile_server(answer):
                opts = Options.of(endpoint=url, project_id=PROJECT, rate=0, report=report, env=TOKEN_ENV, **options)
                return await apply(manifest, opts)
    return anyio.run(scenario)


# A config as read: with 5 workers, so that the manifest's rows (1 worker) change it and are sent.
CONFIG = {"is_success": True, **{k: int(v) if v.isdigit() else v for k, v in VALID_CELLS.items()},
          "worker_server_num": 5}


class Kept:
    """The honest part of a hostile server: a GET answers the config asked for, and a PUT's body
    is kept (so that a run's read-back finds what it sent)."""

    def __init__(self) -> None:
        self.stored: dict[str, dict[str, Any]] = {}

    async def answer(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if request.method == "PUT":
            self.stored[name] = await request.json()
            return web.json_response({"is_success": True})
        return web.json_response({**CONFIG, **self.stored.get(name, {}), "config_name": name})


# 1. An output can overwrite an input or another output -------------------------------------------

@pytest.mark.parametrize("flags", [["--report", "m.csv"], ["--report", "./link.csv"], ["--failed-manifest", "m.csv"],
                                   ["--backup", "m.csv"], ["--metrics-file", "m.csv"], ["--log-file", "m.csv"],
                                   ["--backup", "o.jsonl", "--report", "o.jsonl"],
                                   ["--report", "r.csv", "--failed-manifest", "sub/../r.csv"]],
                         ids=lambda flags: " ".join(flags))
def test_no_output_may_be_an_input_or_another_output(flags: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    manifest = valid_manifest(tmp_path / "m.csv", ["a"])
    (tmp_path / "link.csv").symlink_to(manifest)
    before = manifest.read_bytes()
    assert cli("apply", "m.csv", "--sandbox", *flags) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "choose another file" in err
    assert manifest.read_bytes() == before, "the manifest is untouched"


@pytest.mark.parametrize("flag", ["--log-file", "--report"])
def test_an_output_that_cannot_be_written_is_a_one_line_usage_error(
        flag: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    valid_manifest(tmp_path / "m.csv", ["a"])
    (tmp_path / "adir").mkdir()
    assert cli("validate", "m.csv", flag, "adir") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("batchcfg: error: ") and "adir" in err, err


# 2. Two runs can share one default backup --------------------------------------------------------

def test_two_runs_in_the_same_second_never_share_a_default_backup(tmp_path: Path) -> None:
    from batchcfg.backup import Backup
    from batchcfg.errors import UsageError
    from batchcfg.report import default_backup_path, default_report_path

    first = default_report_path(tmp_path)
    first.write_text("taken")
    second = default_report_path(tmp_path)
    assert second != first and second.name.endswith("-2.csv")
    backup = default_backup_path(first)
    backup.write_text("")
    assert default_backup_path(first).name.endswith("-2.jsonl")
    with pytest.raises(UsageError, match="another run's backup"):
        Backup(backup, new=True)  # created exclusively: another run's file is never added to


# 3. Resuming from a journal a live run is writing -------------------------------------------------

def test_a_journal_in_use_cannot_be_resumed_from(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from batchcfg.journal import Journal

    manifest = valid_manifest(tmp_path / "m.csv", ["a"])
    with Journal(tmp_path / "live.journal.jsonl"):  # as a running apply holds it
        assert cli("apply", manifest, "--sandbox", "--resume", tmp_path / "live.journal.jsonl",
                   "--report", tmp_path / "r.csv") == 2
        err = capsys.readouterr().err
        assert f"still going (process {os.getpid()})" in err and "--resume" not in err.split("process")[1]
        assert cli("apply", manifest, "--sandbox", "--report", tmp_path / "live.csv") == 2, "nor written beside"
    assert cli("apply", manifest, "--sandbox", "--resume", tmp_path / "live.journal.jsonl",
               "--report", tmp_path / "r.csv") == 0, "once that run is gone"


# 4. The failed-row manifest must be the rows that were read ----------------------------------------

def test_a_manifest_edited_during_the_run_gives_no_misleading_rows_to_fix(tmp_path: Path) -> None:
    manifest = write_csv(tmp_path / "m.csv", ["config_name", *VALID_CELLS],
                         [["a", *VALID_CELLS.values()], ["b", "x", "1", "7", "/bucket/d/"]])

    def edit(outcome: Any) -> None:
        manifest.write_text("config_name,worker_server_num\nsomething,else\nentirely,different\n")

    async def scenario() -> Any:
        async with serve(SandboxConfig()) as sandbox:
            seed(sandbox, ["a"])
            opts = Options.of(endpoint=sandbox.endpoint, project_id=PROJECT, rate=0, report=tmp_path / "r.csv",
                              failed_manifest=tmp_path / "f.csv", env={"BATCHCFG_IAM_TOKEN": sandbox.config.token})
            return await apply(manifest, opts, on_outcome=edit)

    summary = anyio.run(scenario)
    assert not (tmp_path / "f.csv").exists() and summary.failed_manifest is None
    assert any("changed during the run" in note for note in summary.notes)
    assert {r["config_name"] for r in read_report(tmp_path / "r.csv")} == {"a", "b"}, "the report has every row"


# 5. Retry-After is unbounded; a run may have a deadline --------------------------------------------

@pytest.mark.parametrize("value", ["999999999", "1e300", "Fri, 31 Dec 9999 23:59:59 GMT"])
def test_a_retry_after_beyond_the_cap_fails_the_row_at_once(value: str, tmp_path: Path) -> None:
    kept = Kept()

    async def answer(request: web.Request) -> web.Response:
        if request.match_info["name"] == "slow":
            return web.json_response({"error_code": "APIGW.0308", "error_msg": "later"}, status=429,
                                     headers={"Retry-After": value})
        return await kept.answer(request)

    manifest = valid_manifest(tmp_path / "m.csv", ["slow", "fine"])
    summary = run_against(answer, manifest, tmp_path / "r.csv", no_backup=True)
    records = {r["config_name"]: r for r in read_report(tmp_path / "r.csv")}
    assert records["slow"]["status"] == "failed" and "more than the 300 s a run waits" in records["slow"]["error_message"]
    assert records["fine"]["status"] == "succeeded" and summary.exit_code == 1


def test_a_deadline_cancels_what_is_left_and_says_how_to_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    manifest = valid_manifest(tmp_path / "m.csv", [f"c{i}" for i in range(40)])
    assert cli("apply", manifest, "--sandbox", "--rate", "20", "--deadline", "0.5", "--report", "r.csv") == 1
    err = capsys.readouterr().err
    counts = {r["status"] for r in read_report(tmp_path / "r.csv")}
    assert "cancelled" in counts and "--deadline of 0.5 s passed" in err and "--resume r.csv" in err


# 6. A decompression bomb under the size limit -------------------------------------------------------

def gzip_bomb(decoded: int = 2**30) -> bytes:
    """About a megabyte of gzip that inflates to ``decoded`` bytes of spaces (valid JSON padding).
    A megabyte of spaces is compressed once, after a full flush, and its bytes repeated: each
    repeat inflates the same way (the trailer's checksum is wrong; no reader gets that far)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    start = packer.compress(b'{"is_success": true,') + packer.flush(zlib.Z_FULL_FLUSH)
    block = packer.compress(b" " * 2**20) + packer.flush(zlib.Z_FULL_FLUSH)
    return start + block * (decoded // 2**20) + packer.compress(b"}") + packer.flush()


def test_a_decompression_bomb_is_cut_off_in_bounded_memory(tmp_path: Path) -> None:
    bomb = gzip_bomb()
    assert len(bomb) < 2 * 2**20

    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=bomb, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})

    manifest = valid_manifest(tmp_path / "m.csv", ["a", "b"])

    async def scenario() -> Any:
        async for url, _ in hostile_server(answer):
            env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.getcwd(), **TOKEN_ENV,
                   "BATCHCFG_METADATA_URL": "off"}
            argv = [sys.executable, "-m", "batchcfg", "apply", str(manifest), "--endpoint", url, "--project-id",
                    PROJECT, "--rate", "0", "--max-retries", "0", "--no-backup", "--report", str(tmp_path / "r.csv")]
            return await anyio.to_thread.run_sync(lambda: measured(argv, env, timeout=120))

    result = anyio.run(scenario)
    assert result.code == 1, result.stderr
    assert result.rss_mib < 150, f"peak RSS {result.rss_mib:.0f} MiB"
    assert {r["error_code"] for r in read_report(tmp_path / "r.csv")} == {"BATCHCFG.BAD_RESPONSE"}
    print(f"gzip bomb of 1 GiB decoded: peak RSS {result.rss_mib:.0f} MiB, {result.seconds:.1f} s")


# 7. Flags without upper bounds -----------------------------------------------------------------------

@pytest.mark.parametrize("flags, env", [(["--rate", "1e19"], {}), (["--concurrency", "1000000"], {}),
                                        (["--concurrency", "1e20"], {}), (["--timeout", "1e9"], {}),
                                        ([], {"BATCHCFG_RATE": "1e19"}), ([], {"BATCHCFG_CONCURRENCY": "5000"})])
def test_every_number_has_an_upper_bound(flags: list[str], env: dict[str, str], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cli("apply", valid_manifest(tmp_path / "m.csv", ["a"]), "--sandbox", *flags) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "must be" in err and "Traceback" not in err


def test_never_more_workers_than_rows() -> None:
    from batchcfg.sender import Sender

    sender = Sender(rate=0, concurrency=1024)

    async def nothing(sender: Sender, job: Any) -> Any:
        from batchcfg.model import Outcome
        return Outcome.of(job, "succeeded")

    from batchcfg.model import Job

    anyio.run(sender.run, [Job(2, PROJECT, "a", b"{}")], nothing, lambda outcome: None, 1)
    assert sender._workers == 1


# 8. A manifest with a million (empty) columns ----------------------------------------------------

def test_a_million_columns_are_refused_before_pandas_reads_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_bytes(b"config_name" + b"," * 1_000_000 + b"\na\n")
    assert cli("validate", manifest, "--report", tmp_path / "r.csv") == 2
    assert "header" in capsys.readouterr().err


# 9. Too many open files, and 10. a dead service ----------------------------------------------------

def test_a_low_open_file_limit_caps_the_connections(tmp_path: Path) -> None:
    """At --concurrency 1024 under ulimit -n 256 every row succeeds, and the report is written
    (the sandbox in a process of its own, as a real endpoint is)."""
    import subprocess

    from .conftest import SANDBOX_ENV, SandboxProcess, seed_file

    names = [f"c{i}" for i in range(300)]
    manifest = valid_manifest(tmp_path / "m.csv", names)
    sandbox = SandboxProcess("--seed", str(seed_file(tmp_path / "seed.jsonl", names)))
    script = f"""
import resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
from batchcfg.cli import main
sys.exit(main(["apply", {str(manifest)!r}, "--endpoint", {sandbox.endpoint!r}, "--rate", "0", "--concurrency",
               "1024", "--report", {str(tmp_path / 'r.csv')!r}]))
"""
    try:
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                                env=SANDBOX_ENV, cwd=tmp_path)
    finally:
        sandbox.close()
    assert result.returncode == 0, result.stderr[-2000:]
    assert "more open files than the limit" in result.stderr
    assert len(read_report(tmp_path / "r.csv")) == 300


def test_a_dead_service_stops_the_run_by_default(tmp_path: Path) -> None:
    """A service that dies after the run started (--no-preflight: one dead from the start stops
    the run at its first read, exit 2)."""
    manifest = valid_manifest(tmp_path / "m.csv", [f"c{i}" for i in range(200)])

    async def scenario() -> Any:
        async with serve(SandboxConfig(fail_rate=1.0)) as sandbox:
            opts = Options.of(endpoint=sandbox.endpoint, project_id=PROJECT, rate=0, max_retries=0, concurrency=1,
                              report=tmp_path / "r.csv", env={"BATCHCFG_IAM_TOKEN": sandbox.config.token},
                              no_preflight=True)
            return await apply(manifest, opts), len(sandbox.state.starts)

    summary, requests = anyio.run(scenario)
    assert summary.counts["failed"] == 20 and summary.counts["cancelled"] == 180
    assert "the service looks unavailable" in summary.stop_reason and requests == 20


# 11. Terminal injection; 12. is_success that is not a boolean; 13. server strings stored whole --------

ESCAPES = "\x1b[2J\x1b]0;pwned\x07\x1b]8;;http://evil\x07link\x9b"


def test_escape_sequences_from_a_server_never_reach_the_terminal_raw(tmp_path: Path) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"is_success": False, "error_code": "X" + ESCAPES, "error_message": ESCAPES,
                                  "request_id": "id" + ESCAPES}, status=400)

    manifest = valid_manifest(tmp_path / "m.csv", ["a"])

    async def scenario() -> Any:
        async for url, _ in hostile_server(answer):
            import subprocess

            env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.getcwd(), **TOKEN_ENV,
                   "BATCHCFG_METADATA_URL": "off"}
            argv = [sys.executable, "-m", "batchcfg", "apply", str(manifest), "--endpoint", url, "--project-id",
                    PROJECT, "-vv", "--no-backup", "--report", str(tmp_path / "r.csv")]
            return await anyio.to_thread.run_sync(lambda: subprocess.run(argv, capture_output=True, text=True,
                                                                         env=env, timeout=60))

    result = anyio.run(scenario)
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr and "\x9b" not in result.stderr
    assert "\\x1b[2J" in result.stderr, "shown, written out"
    record = read_report(tmp_path / "r.csv")[0]
    assert "\x1b" not in json.dumps(record)


def test_a_plan_shows_escape_sequences_in_a_configs_fields_written_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async def scenario() -> Any:
        async with serve(SandboxConfig()) as sandbox:
            sandbox.seed("a", {**{k: int(v) if v.isdigit() else v for k, v in VALID_CELLS.items()},
                               "config_desc": "old" + ESCAPES})
            from batchcfg import plan

            manifest = write_csv(tmp_path / "m.csv", ["config_name", "config_desc"], [["a", "new"]])
            opts = Options.of(endpoint=sandbox.endpoint, project_id=PROJECT, report=tmp_path / "p.csv",
                              env={"BATCHCFG_IAM_TOKEN": sandbox.config.token})
            return await plan(manifest, opts)

    anyio.run(scenario)
    change = read_report(tmp_path / "p.csv")[0]["changes"]
    assert "\x1b" not in change and change.startswith('config_desc: "old\\u001b[2J')


@pytest.mark.parametrize("body", [{"is_success": "false", "error_code": "ModelArts.0104"},
                                  {"is_success": 0, "error_code": "ModelArts.0104"},
                                  {"error_code": "ModelArts.0104", "error_message": "no"},
                                  {"is_success": "false"}, {"is_success": None, "error_code": "E"}])
def test_a_200_is_a_success_only_when_is_success_is_true_or_absent_without_a_code(body: dict[str, Any], tmp_path: Path) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response({**CONFIG, "config_name": "a"} if request.method == "GET" else body)

    summary = run_against(answer, valid_manifest(tmp_path / "m.csv", ["a"]), tmp_path / "r.csv")
    assert summary.counts == {"failed": 1} and summary.exit_code == 1
    assert read_report(tmp_path / "r.csv")[0]["error_code"] in ("ModelArts.0104", "E", "BATCHCFG.BAD_RESPONSE")


def test_server_strings_are_kept_within_bounds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"is_success": False, "error_code": "C" * 300_000, "error_message": "m" * 600_000},
                                 status=400, headers={"X-Request-Id": "r" * 5000})

    manifest = valid_manifest(tmp_path / "m.csv", [f"c{i}" for i in range(20)])
    run_against(answer, manifest, tmp_path / "r.csv", no_backup=True)
    assert (tmp_path / "r.csv").stat().st_size < 20 * 2000
    record = read_report(tmp_path / "r.csv")[0]
    assert record["error_message"].endswith("… (cut)") and len(record["error_message"]) <= 1100  # and our prefix
    assert len(record["error_code"]) <= 100 and len(record["request_id"]) <= 128
