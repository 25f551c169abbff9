"""Never lose a row: journal, kill -9 and resume, graceful stop, stopping before harm, fix and re-run."""

from __future__ import annotations

import csv
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

from batchcfg import Options, apply, validate
from batchcfg.errors import UsageError
from batchcfg.cli import main
from batchcfg.files import read_records
from batchcfg.sandbox import SandboxConfig, max_starts_in_window, serve

from .conftest import (KILL_TEST_NAMES, PROJECT, SANDBOX_AKSK, SANDBOX_ENV, VALID_CELLS, FakeClock, SandboxProcess, cli,
                       read_report, seed, seed_file,
                       valid_manifest, write_csv)

def apply_process(manifest: Path, endpoint: str, report: Path, *flags: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "batchcfg", "apply", str(manifest), "--endpoint", endpoint,
                             "--report", str(report), "--no-progress", *flags],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=SANDBOX_ENV)


def expected_bodies(names: list[str]) -> dict[str, dict[str, Any]]:
    # the body sent is whole: what the row names laid over the config as read (engine_id 1, the
    # API's default, as the Details answer shows it)
    return {name: {"worker_server_num": 1, "model_id": 7, "spec_id": 1, "data_url": "/bucket/data/", "engine_id": 1}
            for name in names}


def test_kill_9_at_random_moments_then_resume(tmp_path: Path, sandbox_process: SandboxProcess) -> None:
    names = KILL_TEST_NAMES
    manifest = valid_manifest(tmp_path / "m.csv", names)
    rng = random.Random(20261126)
    resume_from: Path | None = None
    kills = 0
    succeeded_by_run: list[tuple[float, set[str]]] = []  # (kill time, rows that run recorded succeeded)
    for attempt in range(60):
        report = tmp_path / f"run-{attempt:02d}.csv"
        final = kills >= 22
        # Killed runs send at 200 requests/s (a GET and a PUT a row), so that a kill lands in
        # the middle of sending; the last run, which is not killed, sends the rest at full speed.
        flags = ["--rate", "0" if final else "200", *(["--resume", str(resume_from)] if resume_from else [])]
        process = apply_process(manifest, sandbox_process.endpoint, report, *flags)
        try:
            process.wait(timeout=60 if final else rng.uniform(0.3, 0.9))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        killed_at = time.time()
        stderr = process.stderr.read() if process.stderr else ""
        if process.stderr:
            process.stderr.close()
        journal = report.with_name(report.stem + ".journal.jsonl")
        if process.returncode == -signal.SIGKILL:
            kills += 1
            if journal.exists():
                records = list(read_records(journal))
                succeeded_by_run.append((killed_at, {r["config_name"] for r in records if r.get("status") == "succeeded"}))
                resume_from = journal
            continue
        assert process.returncode == 0, stderr
        assert not journal.exists(), "a finished run removes its journal"
        records = read_report(report)
        succeeded_by_run.append((killed_at, {r["config_name"] for r in records if r.get("status") == "succeeded"}))
        break
    else:
        pytest.fail("the run never finished")

    assert kills >= 20
    assert sorted(r["config_name"] for r in records) == names
    assert {r["status"] for r in records} <= {"succeeded", "skipped"}
    recorded = Counter(name for _, names_done in succeeded_by_run for name in names_done)
    assert set(recorded.values()) == {1}, "no row is recorded succeeded twice"
    # A kill can land after a PUT was answered and before its row was journalled: a later run reads
    # that config, finds it already as the row asks, and skips it as unchanged (a later resume then
    # says it succeeded in an earlier run). Such a row is skipped, never sent again.
    assert all(r["status"] == "skipped" for r in records if r["config_name"] not in recorded)
    puts = sandbox_process.get("/_sandbox/puts")
    assert set(Counter(put["config_name"] for put in puts).values()) == {1}, "each config PUT exactly once"
    stored = {put["config_name"]: put["body"] for put in puts}
    assert stored == expected_bodies(names)
    for killed_at, names_done in succeeded_by_run[:-1]:
        late = [p for p in puts if p["config_name"] in names_done and p["time"] > killed_at]
        assert not late, f"sent again after it was recorded succeeded: {late[:3]}"


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_graceful_stop_on_a_signal(tmp_path: Path, signum: int, code: int) -> None:
    names = [f"c{i}" for i in range(200)]
    sandbox = SandboxProcess("--latency-ms", "200", "--seed", str(seed_file(tmp_path / "seed.jsonl", names)))
    try:
        manifest = valid_manifest(tmp_path / "m.csv", names)
        report = tmp_path / "r.csv"
        process = apply_process(manifest, sandbox.endpoint, report, "--rate", "20", "--concurrency", "4")
        journal = tmp_path / "r.journal.jsonl"  # the signal comes once some rows succeeded, however slow the start
        wait_for(lambda: journal.exists() and journal.read_text().count('"succeeded"') >= 3)
        process.send_signal(signum)
        process.wait(timeout=30)
        stderr = process.stderr.read() if process.stderr else ""
        if process.stderr:
            process.stderr.close()
        assert process.returncode == code, stderr
        assert "Traceback" not in stderr and "stopping" in stderr
        records = read_report(report)
        assert [r["config_name"] for r in records] == names, "a complete report"
        put = {p["config_name"] for p in sandbox.get("/_sandbox/puts")}
        statuses = Counter(r["status"] for r in records)
        assert statuses["succeeded"] > 0 and statuses["cancelled"] > 0
        assert set(statuses) == {"succeeded", "cancelled"}
        for record in records:
            assert (record["status"] == "succeeded") == (record["config_name"] in put), \
                "no row both sent and cancelled"
            if record["status"] == "cancelled":
                assert record["error_code"] == "BATCHCFG.CANCELLED" and record["attempts"] == "0"
                assert record["error_message"] == "not sent: the run was interrupted"
    finally:
        sandbox.close()


def wait_for(condition: Any, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def run_in_thread(*argv: Any) -> int:
    return main([str(a) for a in argv])


def test_a_wrong_sk_costs_one_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = valid_manifest(tmp_path / "m.csv", [f"c{i}" for i in range(1000)])

    async def scenario() -> tuple[int, int]:
        async with serve(SandboxConfig()) as sandbox:
            monkeypatch.setenv("HUAWEICLOUD_SDK_AK", SandboxConfig.ak)
            monkeypatch.setenv("HUAWEICLOUD_SDK_SK", "not-the-secret")
            code = await anyio.to_thread.run_sync(run_in_thread, "apply", manifest, "--endpoint", sandbox.endpoint,
                                                  "--project-id", PROJECT, "--rate", "0", "--report",
                                                  tmp_path / "r.csv")
            return code, len(sandbox.state.starts)

    assert anyio.run(scenario) == (2, 1), "the preflight's one read, then one line and exit 2"
    assert not (tmp_path / "r.csv").exists(), "no row was read or sent"


def test_a_429_storm_adapts_the_rate_and_loses_nothing(tmp_path: Path) -> None:
    """On a fake clock that the sandbox and the sender share: throttling windows, Retry-After
    waits and the rate's halving and recovery are virtual, and take no real time."""
    names = [f"c{i}" for i in range(50)]
    manifest = valid_manifest(tmp_path / "m.csv", names)

    async def scenario() -> Any:
        clock = FakeClock()
        async with clock.running(), serve(SandboxConfig(throttle_rps=10), clock=clock) as sandbox:
            seed(sandbox, names)
            options = Options.of(endpoint=sandbox.endpoint, project_id=PROJECT, rate=80, report=tmp_path / "r.csv",
                                 clock=clock, env={"HUAWEICLOUD_SDK_AK": SandboxConfig.ak,
                                                   "HUAWEICLOUD_SDK_SK": SandboxConfig.sk})
            summary = await apply(manifest, options)
            return summary, sandbox.state

    summary, state = anyio.run(scenario)
    assert summary.counts == {"succeeded": 50}
    assert summary.retries > 0 and state.statuses[429] > 0
    assert summary.lowest_rate <= 10, "the rate came down to what the server takes"
    assert sorted(name for _, _, name in state.puts) == sorted(names)
    assert max_starts_in_window([start for start in state.starts]) <= 80


def test_max_failures_stops_the_run(tmp_path: Path) -> None:
    manifest = valid_manifest(tmp_path / "m.csv", [f"c{i}" for i in range(50)])

    async def scenario() -> Any:
        async with serve(SandboxConfig(fail_rate=1.0)) as sandbox:
            options = Options.of(endpoint=sandbox.endpoint, project_id=PROJECT, rate=0, max_retries=0,
                                 max_failures=3, concurrency=1, report=tmp_path / "r.csv", env=SANDBOX_AKSK,
                                 no_preflight=True)  # failing since the run started
            return await apply(manifest, options)

    summary = anyio.run(scenario)
    assert summary.counts == {"failed": 3, "cancelled": 47}
    assert "--max-failures 3" in summary.stop_reason and summary.exit_code == 1


def test_the_server_going_away(tmp_path: Path) -> None:
    """Gone after the run started (--no-preflight: gone before, the run stops at its first read)."""
    manifest = valid_manifest(tmp_path / "m.csv", [f"c{i}" for i in range(5)])
    options = Options.of(endpoint="http://127.0.0.1:9", project_id=PROJECT, rate=0, max_retries=1, no_backup=True,
                         report=tmp_path / "r.csv", env={"HUAWEICLOUD_SDK_AK": "a", "HUAWEICLOUD_SDK_SK": "b"},
                         no_preflight=True)
    summary = anyio.run(apply, manifest, options)
    records = read_report(tmp_path / "r.csv")
    assert summary.exit_code == 1 and len(records) == 5
    assert {(r["status"], r["error_code"], r["attempts"]) for r in records} == {("failed", "BATCHCFG.CONNECTION", "2")}


def test_resume_matches_on_body_and_refuses_another_manifest(tmp_path: Path) -> None:
    """A row edited since is sent again, and a row added at the end is sent; a manifest whose rows
    name other configs at the report's row numbers (moved rows) is refused before anything is sent."""
    env = SANDBOX_AKSK
    first = valid_manifest(tmp_path / "first.csv", ["a", "b", "c"])
    header = ["config_name", *VALID_CELLS]
    second = write_csv(tmp_path / "second.csv", header, [
        ["a", *VALID_CELLS.values()],
        ["b", "2", *list(VALID_CELLS.values())[1:]],    # edited: 2 workers
        ["c", *VALID_CELLS.values()],
        ["d", *VALID_CELLS.values()],                   # new
    ])
    moved = write_csv(tmp_path / "moved.csv", header, [["c", *VALID_CELLS.values()], ["b", *VALID_CELLS.values()],
                                                       ["a", *VALID_CELLS.values()]])

    async def scenario() -> Any:
        async with serve(SandboxConfig()) as sandbox:
            seed(sandbox, ["a", "b", "c", "d"])
            options = Options.of(endpoint=sandbox.endpoint, project_id=PROJECT, env=env, report=tmp_path / "1.csv")
            await apply(first, options)
            options = Options.of(endpoint=sandbox.endpoint, project_id=PROJECT, env=env, report=tmp_path / "2.jsonl",
                                 resume=tmp_path / "1.csv")
            await apply(second, options)
            options = Options.of(endpoint=sandbox.endpoint, project_id=PROJECT, env=env, report=tmp_path / "3.xlsx",
                                 resume=tmp_path / "2.jsonl")
            summary = await apply(second, options)
            sent = len(sandbox.state.starts)
            options = Options.of(endpoint=sandbox.endpoint, project_id=PROJECT, env=env, report=tmp_path / "4.csv",
                                 resume=tmp_path / "1.csv")
            with pytest.raises(UsageError, match="the report of another manifest .row 2 is 'a' there and 'c' here"):
                await apply(moved, options)
            assert len(sandbox.state.starts) == sent, "nothing sent"
            return summary, [name for _, _, name in sandbox.state.puts]

    summary, puts = anyio.run(scenario)
    assert {r["config_name"]: r["status"] for r in read_report(tmp_path / "2.jsonl")} == {
        "a": "skipped", "b": "succeeded", "c": "skipped", "d": "succeeded"}
    assert summary.counts == {"skipped": 4} and summary.exit_code == 0, "skipped rows count as done"
    assert sorted(puts) == ["a", "b", "b", "c", "d"]
    assert not (tmp_path / "4.csv").exists()


def test_an_interrupted_runs_journal_is_never_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = valid_manifest(tmp_path / "m.csv", ["a"])
    (tmp_path / "r.journal.jsonl").write_text('{"row": 2}\n')
    assert main(["apply", str(manifest), "--sandbox", "--report", str(tmp_path / "r.csv")]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["apply", str(manifest), "--sandbox", "--report", str(tmp_path / "r.csv"),
                 "--resume", str(tmp_path / "r.journal.jsonl")]) == 0
    assert not (tmp_path / "r.journal.jsonl").exists()


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_failed_manifest_can_be_fixed_and_fed_back(tmp_path: Path, suffix: str) -> None:
    samples = Path(__file__).parent.parent / "samples" / "training_job_configs.csv"
    failed = tmp_path / f"failed{suffix}"
    summary = validate(samples, Options.of(report=tmp_path / "r.csv", failed_manifest=failed))
    assert summary.counts["invalid"] == 3
    fixed = tmp_path / "fixed.csv"
    if suffix == ".xlsx":
        import openpyxl

        rows = [[c.value if c.value is not None else "" for c in row]
                for row in openpyxl.load_workbook(failed).active.iter_rows()]
    else:
        rows = list(csv.reader(io.StringIO(failed.read_text(encoding="utf-8"))))
    header, body = rows[0], rows[1:]
    assert header[-2:] == ["#status", "#error"] and len(body) == 3
    assert {r[header.index("#status")] for r in body} == {"invalid"}
    column = {name: i for i, name in enumerate(header)}
    for row in body:  # the fixes a user would make
        row[column["boot_file_url"]] = row[column["app_url"]] + "main.py" if row[column["app_url"]] else ""
        row[column["spec_id"]] = "1"
        row[column["worker_server_num"]] = "2"
        row[column["dataset_id"]] = row[column["dataset_version_id"]] = ""
    write_csv(fixed, header, body)
    assert validate(fixed, Options.of(report=tmp_path / "v.csv")).exit_code == 0


def test_failed_manifest_cells_are_defused_and_read_back(tmp_path: Path) -> None:
    manifest = write_csv(tmp_path / "m.csv", ["config_name", "config_desc", "#note", *VALID_CELLS],
                         [["bad name", "=1+2", "-x", *VALID_CELLS.values()]])
    failed = tmp_path / "failed.csv"
    validate(manifest, Options.of(report=tmp_path / "r.csv", failed_manifest=failed))
    text = failed.read_text(encoding="utf-8")
    assert "'=1+2" in text and "'-x" in text
    again = tmp_path / "again.csv"
    summary = validate(failed, Options.of(report=tmp_path / "r2.csv", failed_manifest=again))
    assert summary.counts == {"invalid": 1}
    assert again.read_text(encoding="utf-8") == text, "a failed manifest fed back gives the same file"


def test_resuming_from_a_run_that_died_before_any_row_ended(tmp_path: Path) -> None:
    """Its journal holds only where it resumed from: a resume from it still skips what was done."""
    env = SANDBOX_AKSK
    manifest = valid_manifest(tmp_path / "m.csv", ["a", "b"])

    async def scenario() -> list[str]:
        async with serve(SandboxConfig()) as sandbox:
            seed(sandbox, ["a", "b"])
            await apply(manifest, Options.of(endpoint=sandbox.endpoint, project_id=PROJECT, env=env,
                                          report=tmp_path / "1.csv"))
            died = tmp_path / "2.journal.jsonl"  # as a killed run leaves it
            died.write_text(json.dumps({"resume": str(tmp_path / "1.csv")}) + "\n")
            summary = await apply(manifest, Options.of(endpoint=sandbox.endpoint, project_id=PROJECT, env=env,
                                                    report=tmp_path / "3.csv", resume=died))
            assert summary.counts == {"skipped": 2} and summary.backup == next(tmp_path.glob("batchcfg-backup-*"))
            return [name for _, _, name in sandbox.state.puts]

    assert anyio.run(scenario) == ["a", "b"], "nothing sent twice"


@pytest.mark.parametrize("command", ["apply", "rollback"])
def test_a_hard_stop_still_gives_each_row_one_record(tmp_path: Path, command: str) -> None:
    """A second Ctrl-C abandons the requests in flight; every row still ends exactly once."""
    from batchcfg.commands import rollback

    env = SANDBOX_AKSK
    names = [f"c{i}" for i in range(40)]
    manifest = valid_manifest(tmp_path / "m.csv", names)

    async def scenario() -> Any:
        clock = FakeClock()  # the sandbox's 200 ms and the waits below: virtual
        async with clock.running(), serve(SandboxConfig(latency_ms=200), clock=clock) as sandbox:
            seed(sandbox, names)
            backup = tmp_path / "b.jsonl"
            if command == "rollback":
                await apply(manifest, Options.of(endpoint=sandbox.endpoint, project_id=PROJECT, env=env, rate=0,
                                              backup=backup, report=tmp_path / "first.csv", clock=clock))
            stop, stop_now = anyio.Event(), anyio.Event()
            written = len(sandbox.state.puts)
            ended_rows: list[Any] = []

            async def stop_while_a_write_is_in_flight() -> None:
                state = sandbox.state  # a PUT counted on arrival, stored 200 ms later
                while not (ended_rows and state.methods["PUT"] > len(state.puts)):
                    await clock.sleep(0.002)
                stop.set()
                stop_now.set()

            options = Options.of(endpoint=sandbox.endpoint, project_id=PROJECT, env=env, rate=0, concurrency=4,
                                 report=tmp_path / "r.csv", clock=clock)
            run = apply if command == "apply" else rollback
            async with anyio.create_task_group() as group:
                group.start_soon(stop_while_a_write_is_in_flight)
                summary = await run(manifest if command == "apply" else backup, options, on_outcome=ended_rows.append,
                                    stop=stop, stop_now=stop_now)
            await clock.sleep(0.3)  # the abandoned PUTs reach the store
            return summary, {name for _, _, name in sandbox.state.puts[written:]}

    summary, put = anyio.run(scenario)
    records = read_report(tmp_path / "r.csv")
    assert sorted(r["config_name"] for r in records) == sorted(names), "each row exactly once"
    assert summary.interrupted and summary.counts["cancelled"] >= 30
    cut_off = {r["config_name"] for r in records if r["error_message"] == "stopped at once: may or may not have been applied"}
    assert cut_off, "a row cut off during its write says so"
    for record in records:  # a row that says it was not sent was not
        if record["status"] == "cancelled" and record["config_name"] not in cut_off:
            assert record["error_message"].startswith("not sent") and record["config_name"] not in put


def test_a_line_cut_off_by_a_kill_swallows_no_later_record(tmp_path: Path) -> None:
    """A journal or backup whose last line a kill cut off: the next record starts on a line of its own."""
    from batchcfg.backup import Backup, read_backup
    from batchcfg.files import json_lines
    from batchcfg.journal import Journal
    from batchcfg.model import Job, Outcome

    journal, backup = tmp_path / "r.journal.jsonl", tmp_path / "backup.jsonl"
    journal.write_text('{"row": 2, "config_name": "a", "status": "succeeded"}\n{"row": 3, "config_na')
    backup.write_text('{"project_id": "p", "config_name": "a", "before": {}, "sent": {}}\n{"project_id": "p", "co')
    with Journal(journal) as writer:
        writer.write(Outcome(4, "c", PROJECT, "succeeded"))
    assert [r["row"] for r in json_lines(journal) if "row" in r] == [2, 4]  # (and this run's header line)

    async def save() -> None:
        with Backup(backup) as saver:
            await saver.save(Job(5, PROJECT, "c", b"{}"), {"spec_id": 1}, {})

    anyio.run(save)
    assert [r["config_name"] for r in read_backup(backup)] == ["a", "c"]


def test_a_short_write_is_finished_or_raises(tmp_path: Path) -> None:
    """Near a full disk one write() may write only part of a group of lines: the rest is written,
    or OSError is raised, never a silent half (here a file size limit plays the full disk)."""
    script = f"""
import resource, signal, sys
from pathlib import Path
from batchcfg.files import open_lines, write_all
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
handle = open_lines(Path({str(tmp_path / "lines.jsonl")!r}))
write_all(handle, b"x" * 900 + b"\\n")
try:
    write_all(handle, b"y" * 300 + b"\\n")
except OSError as exc:
    print("OSError", exc.errno)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["OSError", "27"]  # EFBIG, after the first 99 bytes went in
    assert (tmp_path / "lines.jsonl").stat().st_size == 1000


def test_a_full_disk_under_the_journal_stops_the_run_with_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The disk fills after the journal's third write: sending stops, the error is one line
    (exit 74, no traceback), and the journal keeps the rows written before, for --resume."""
    import errno

    import batchcfg.journal

    names = [f"c{i:03d}" for i in range(400)]
    manifest = valid_manifest(tmp_path / "m.csv", names)
    real_write_all, writes = batchcfg.journal.write_all, []

    def filling_disk(handle: Any, data: bytes) -> None:  # fault injection at the write() call
        writes.append(len(data))
        if len(writes) > 4:  # the journal's header, then three groups of rows
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write_all(handle, data)

    monkeypatch.setattr(batchcfg.journal, "write_all", filling_disk)

    async def scenario() -> tuple[int, int]:
        async with serve(SandboxConfig(latency_ms=5)) as sandbox:
            seed(sandbox, names)
            monkeypatch.setenv("HUAWEICLOUD_SDK_AK", SandboxConfig.ak)
            monkeypatch.setenv("HUAWEICLOUD_SDK_SK", SandboxConfig.sk)
            code = await anyio.to_thread.run_sync(cli, "apply", manifest, "--endpoint", sandbox.endpoint,
                                                  "--project-id", PROJECT, "--rate", "0", "--concurrency", "4",
                                                  "--no-backup", "--report", tmp_path / "r.csv")
            return code, len(sandbox.state.puts)

    code, puts = anyio.run(scenario)
    err = capsys.readouterr().err
    assert code == 74 and "Traceback" not in err and "Exception" not in err
    assert [line for line in err.splitlines() if "error" in line] == [
        f"batchcfg: error: cannot write the journal {tmp_path / 'r.journal.jsonl'} (No space left on device), so "
        "the run stopped. It holds the rows that ended before; once there is room, "
        f"--resume {tmp_path / 'r.journal.jsonl'} sends the others (again)"]
    assert puts < len(names) / 2, "sending stopped soon after the journal failed"
    journaled = [r for r in read_records(tmp_path / "r.journal.jsonl") if "status" in r]
    assert journaled and all(r["status"] == "succeeded" for r in journaled)
    assert not (tmp_path / "r.csv").exists()
