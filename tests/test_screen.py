"""What a person sees: problems on screen, totals, colour on a terminal, the next step, safe re-runs."""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import pty
import re
import select
import signal
import struct
import termios
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from batchcfg import Options, apply, rollback
from batchcfg.sandbox import SandboxConfig, serve

from .conftest import (PROJECT, SANDBOX_AKSK, SANDBOX_ENV, VALID_CELLS, cli, read_report, sandbox_options, seed, valid_manifest,
                       write_csv)


def bad_sheet(path: Path, good: int = 20) -> Path:
    rows = [[f"c{i}", *VALID_CELLS.values()] for i in range(good)]
    rows[3][1] = "2.5"       # BATCHCFG.TYPE
    rows[7][1] = "x"         # BATCHCFG.TYPE
    rows[9][0] = "bad name"  # BATCHCFG.FORMAT
    rows[12][2] = "0"        # BATCHCFG.RANGE
    return write_csv(path, ["config_name", *VALID_CELLS], rows)


def test_validate_shows_the_invalid_rows_grouped_by_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("validate", bad_sheet(tmp_path / "m.csv"), "--report", tmp_path / "r.csv") == 1
    err = capsys.readouterr().err
    assert "batchcfg: 20 rows: 4 invalid, 16 valid" in err
    assert "batchcfg: BATCHCFG.TYPE x2\n    row 5 c3: worker_server_num: '2.5' is not an integer\n" \
           "    row 9 c7: worker_server_num: 'x' is not an integer\n" in err
    assert "    row 11 bad name: config_name: 'bad name' is not 1-64 letters, digits, '_' or '-'" in err
    assert "row 14 c12: spec_id: 0 is not between 1 and" in err


def test_rows_with_errors_are_capped_with_a_count_of_the_rest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [[f"c{i}", "x", "1", "7", "/bucket/d/"] for i in range(40)]
    manifest = write_csv(tmp_path / "m.csv", ["config_name", *VALID_CELLS], rows)
    assert cli("validate", manifest, "--report", tmp_path / "r.csv") == 1
    err = capsys.readouterr().err
    assert err.count("is not an integer") == 3 and "    ... and 37 more\n" in err


@pytest.mark.parametrize("command", ["apply", "plan"])
def test_no_project_at_all_is_one_line_before_any_row_is_read(command: str, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch, clean_env: None) -> None:
    monkeypatch.chdir(tmp_path)
    for name, value in SANDBOX_AKSK.items():
        monkeypatch.setenv(name, value)
    manifest = valid_manifest(tmp_path / "m.csv", [f"c{i}" for i in range(300)])
    assert cli(command, manifest, "--endpoint", "http://127.0.0.1:9") == 2
    err = capsys.readouterr().err
    assert err.splitlines() == ["batchcfg: error: no project id: pass --project-id, set HUAWEICLOUD_SDK_PROJECT_ID, "
                                "or add a project_id column to the manifest"]
    assert not list(tmp_path.glob("batchcfg-report-*"))


def test_an_existing_report_or_failed_manifest_is_kept_unless_asked(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    manifest = bad_sheet(tmp_path / "m.csv")
    (tmp_path / "r.csv").write_text("an earlier report\n")
    assert cli("validate", manifest, "--report", tmp_path / "r.csv") == 2
    assert capsys.readouterr().err == (f"batchcfg: error: {tmp_path / 'r.csv'} exists (an earlier run's?): choose "
                                       "another --report, or --overwrite\n")
    assert (tmp_path / "r.csv").read_text() == "an earlier report\n"
    (tmp_path / "f.csv").write_text("rows to fix\n")
    assert cli("validate", manifest, "--report", tmp_path / "r2.csv", "--failed-manifest", tmp_path / "f.csv") == 2
    assert cli("validate", manifest, "--report", tmp_path / "r.csv", "--failed-manifest", tmp_path / "f.csv",
               "--overwrite") == 1
    assert read_report(tmp_path / "r.csv")[0]["config_name"] == "c0"


def test_another_runs_backup_is_never_added_to(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = valid_manifest(tmp_path / "m.csv", ["a"])
    (tmp_path / "b.jsonl").write_text('{"project_id": "p", "config_name": "x", "before": {}, "sent": {}}\n')
    assert cli("apply", manifest, "--sandbox", "--backup", tmp_path / "b.jsonl", "--report", tmp_path / "r.csv") == 2
    assert "is another run's backup" in capsys.readouterr().err
    assert (tmp_path / "b.jsonl").read_text().count("\n") == 1


def test_an_interrupted_apply_prints_the_command_that_resumes_it(tmp_path: Path) -> None:
    names = [f"c{i}" for i in range(40)]
    manifest = valid_manifest(tmp_path / "m.csv", names)

    async def scenario() -> tuple[Any, list[str]]:
        async with serve(SandboxConfig(latency_ms=20)) as sandbox:
            seed(sandbox, names)
            from batchcfg.cli import main

            def run() -> int:
                return main(["apply", str(manifest), "--endpoint", sandbox.endpoint, "--project-id", PROJECT,
                             "--report", str(tmp_path / "r.csv"), "--max-failures", "1", "--rate", "0"])

            sandbox.state.configs.pop((PROJECT, "c5"))  # c5 fails: --max-failures 1 stops the run
            code = await anyio.to_thread.run_sync(run)
            return code, [name for _, _, name in sandbox.state.puts]

    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.MonkeyPatch.context() as patch:
        for name, value in SANDBOX_AKSK.items():
            patch.setenv(name, value)
        code, _ = anyio.run(scenario)
    assert code == 1
    lines = [line for line in err.getvalue().splitlines() if line.startswith("batchcfg: next: to resume: ")]
    assert lines == [f"batchcfg: next: to resume: batchcfg apply {manifest} --endpoint "
                     f"{lines[0].split('--endpoint ')[1].split()[0]} --project-id {PROJECT} --max-failures 1 "
                     f"--rate 0 --resume {tmp_path / 'r.csv'}"]


def test_rollback_takes_several_backups_newest_first_and_plans_with_dry_run(tmp_path: Path) -> None:
    first = write_csv(tmp_path / "1.csv", ["config_name", "worker_server_num"], [["a", "3"], ["b", "3"]])
    second = write_csv(tmp_path / "2.csv", ["config_name", "worker_server_num"], [["a", "4"], ["c", "4"]])

    def options(report: str, **extra: Any) -> Options:
        return sandbox_options(sandbox, tmp_path / report, **extra)

    async def scenario() -> None:
        nonlocal sandbox
        async with serve(SandboxConfig()) as sandbox:
            seed(sandbox, ["a", "b", "c"])
            earlier = {key: dict(body) for key, body in sandbox.state.configs.items()}
            await apply(first, options("r1.csv", backup=tmp_path / "b1.jsonl"))
            await apply(second, options("r2.csv", backup=tmp_path / "b2.jsonl"))
            plan = await rollback([tmp_path / "b1.jsonl", tmp_path / "b2.jsonl"], options("p.csv", dry_run=True))
            assert plan.counts == {"changed": 3} and len(sandbox.state.puts) == 4, "a plan sends nothing"
            assert {r["config_name"]: r["changes"] for r in read_report(tmp_path / "p.csv")}["a"] == \
                "worker_server_num: 4 -> 2"
            summary = await rollback([tmp_path / "b1.jsonl", tmp_path / "b2.jsonl"], options("rb.csv"))
            assert summary.counts == {"succeeded": 3}
            assert all(sandbox.state.configs[key]["worker_server_num"] == body["worker_server_num"]
                       for key, body in earlier.items()), "a back to its state before the older run"

    sandbox: Any = None
    anyio.run(scenario)


def test_a_quoted_glob_of_backups_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    manifest = valid_manifest(tmp_path / "m.csv", ["a", "b"])
    assert cli("apply", manifest, "--sandbox", "--report", "r.csv") == 0
    capsys.readouterr()
    assert cli("rollback", "batchcfg-backup-*.jsonl", "--sandbox", "--dry-run", "--report", "rb.csv") == 1
    assert "missing" not in capsys.readouterr().err
    assert {r["error_code"] for r in read_report(tmp_path / "rb.csv")} == {"ModelArts.0102"}, \
        "read from a new sandbox (the first one is gone): the glob found the backup"


def test_a_file_that_is_not_a_backup_is_refused_and_an_empty_one_has_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli("apply", valid_manifest(tmp_path / "m.csv", ["a"]), "--sandbox", "--report", "r.csv") == 0
    capsys.readouterr()
    assert cli("rollback", "r.csv", "--sandbox", "--yes") == 2, "the report, given by mistake"
    assert capsys.readouterr().err == "batchcfg: error: r.csv: not a batchcfg backup (none of its lines is a backup record)\n"
    (tmp_path / "empty.jsonl").touch()
    assert cli("rollback", "empty.jsonl", "--sandbox", "--yes", "--report", "rb.csv") == 0
    assert read_report(tmp_path / "rb.csv") == []


def test_error_codes_of_as_many_rows_are_listed_in_the_order_of_their_first_rows() -> None:
    """Rows end in any order (concurrency): the summary's order of codes must not follow it."""
    from collections import Counter

    from batchcfg.model import FAILED, INVALID, Job, Outcome, Summary

    ended = [(9, "HTTP.500", FAILED), (3, "BATCHCFG.TYPE", INVALID), (7, "ModelArts.0104", FAILED),
             (8, "HTTP.500", FAILED), (2, "ModelArts.0104", FAILED)]
    orders = []
    for rows in (ended, ended[::-1]):
        summary = Summary(Counter(), Path("r.csv"))
        for row, code, status in rows:
            summary.note(Outcome.of(Job(row, PROJECT, f"c{row}", b""), status, error_code=code))
        orders.append(summary.ranked_codes())
    assert orders[0] == orders[1] == [("ModelArts.0104", 2), ("HTTP.500", 2), ("BATCHCFG.TYPE", 1)]


def test_plan_totals_per_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [[f"c{i}", "4", "1", "7", "/bucket/data/"] for i in range(40)]
    manifest = write_csv(tmp_path / "m.csv", ["config_name", *VALID_CELLS], rows)
    assert cli("plan", manifest, "--sandbox", "--report", tmp_path / "p.csv") == 0
    err = capsys.readouterr().err
    assert ("batchcfg: plan: 0 to create, 27 to change, 13 unchanged, 0 missing, 0 invalid, 0 in conflict; "
            "0 rows to change lose a value\n") in err
    assert "batchcfg: 40 rows: 13 unchanged, 27 changed\n" in err  # the sandbox's earlier states: every third as is
    assert "batchcfg: changes by field:\n    worker_server_num: changed x27\n        3 -> 4  x27\n" in err
    assert "row 2 c0:" not in err, "27 changed rows: totals, not 27 diffs"


@pytest.mark.parametrize("no_color", [False, True])
def test_colour_on_a_terminal_unless_no_color(no_color: bool, tmp_path: Path) -> None:
    manifest = bad_sheet(tmp_path / "m.csv")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "PYTHONPATH": os.getcwd(), "TERM": "xterm"}
    if no_color:
        env["NO_COLOR"] = "1"
    shown, _ = answer_in_terminal(["validate", str(manifest), "--report", str(tmp_path / "r.csv")], env, tmp_path, "")
    assert "BATCHCFG.TYPE x2" in shown
    assert ("\x1b[31m" in shown) is not no_color


def test_no_colour_when_piped(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "batchcfg", "validate", str(bad_sheet(tmp_path / "m.csv")),
                             "--report", str(tmp_path / "r.csv")], capture_output=True, text=True, timeout=60,
                            env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.getcwd()})
    assert "BATCHCFG.TYPE x2" in result.stderr and "\x1b[" not in result.stderr


def test_plan_detailed_exitcode_says_changes_are_pending(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    pending = valid_manifest(tmp_path / "m.csv", ["a", "b"])  # row 2 changes; row 3 is already as wanted
    assert cli("plan", pending, "--sandbox", "--detailed-exitcode", "--report", "1.csv") == 3
    assert cli("plan", pending, "--sandbox", "--report", "2.csv") == 0, "opt-in"
    nothing = valid_manifest(tmp_path / "n.csv", ["skip", "b"])  # row 3 only: unchanged
    write_csv(nothing, ["config_name", *VALID_CELLS], [["x", "y", "1", "7", "/bucket/d/"], ["b", *VALID_CELLS.values()]])
    assert cli("plan", nothing, "--sandbox", "--detailed-exitcode", "--report", "3.csv") == 1, "an invalid row wins"


def test_a_mistyped_command_gets_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("aply", "m.csv") == 2
    assert "no command 'aply' (did you mean 'apply'?)" in capsys.readouterr().err


def test_apply_asks_at_a_terminal_and_yes_skips_it(tmp_path: Path) -> None:
    from .conftest import SandboxProcess, seed_file

    sandbox = SandboxProcess("--seed", str(seed_file(tmp_path / "seed.jsonl", ["a", "b"])))
    try:
        manifest = valid_manifest(tmp_path / "m.csv", ["a", "b"])
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "PYTHONPATH": os.getcwd(), "TERM": "xterm",
               **SANDBOX_AKSK, "HUAWEICLOUD_SDK_PROJECT_ID": PROJECT}
        argv = ["apply", str(manifest), "--endpoint", sandbox.endpoint, "--no-progress"]
        shown, code = answer_in_terminal([*argv, "--report", str(tmp_path / "1.csv")], env, tmp_path, "n\n")
        assert "Go ahead? [y/N]" in shown and code == 2 and "not confirmed: nothing was sent" in shown
        assert sandbox.get("/_sandbox/stats")["operations"] == {"list": 1}, "only the preflight's read"
        shown, code = answer_in_terminal([*argv, "--report", str(tmp_path / "2.csv")], env, tmp_path, "y\n")
        assert code == 0 and sandbox.get("/_sandbox/stats")["methods"].get("PUT") == 2
        shown, code = answer_in_terminal([*argv, "--yes", "--report", str(tmp_path / "3.csv")], env, tmp_path, "")
        assert code == 0 and "Go ahead?" not in shown
    finally:
        sandbox.close()


def answer_in_terminal(argv: list[str], env: dict[str, str], cwd: Path, answer: str,
                       interrupt: Callable[[str], bool] | None = None) -> tuple[str, int]:
    """The command on a pseudo-terminal (stdin and stderr), answering its question, and sent a
    SIGINT (Ctrl-C) once ``interrupt`` says yes to what the terminal shows; what the terminal
    showed, and the exit code (-9 when it was still running after a minute)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
    process = subprocess.Popen([sys.executable, "-m", "batchcfg", *argv], stdin=follower, stdout=subprocess.DEVNULL,
                               stderr=follower, env=env, cwd=cwd)
    os.close(follower)
    shown = b""
    answered = not answer
    deadline = time.monotonic() + 60
    while True:
        if not select.select([leader], [], [], max(0.0, deadline - time.monotonic()))[0]:
            process.kill()  # stuck (waiting for a line that will not come): the test fails, it does not hang
            break
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
        if not answered and b"[y/N]" in shown:
            os.write(leader, answer.encode())
            answered = True
        if interrupt is not None and interrupt(shown.decode(errors="replace")):
            process.send_signal(signal.SIGINT)
            interrupt = None
    code = process.wait(timeout=60)
    os.close(leader)
    return shown.decode(errors="replace"), code


def test_help_is_grouped_with_examples_and_completion_is_offered(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("apply", "--help") == 0
    shown = capsys.readouterr().out
    for group in ("input:", "outputs:", "connection:", "sending:", "what apply does:", "examples:"):
        assert f"\n{group}\n" in shown, group
    assert cli("completion", "bash") == 0
    script = capsys.readouterr().out
    assert "batchcfg" in script and "--create-missing" in script and "export" in script
    assert cli("--help") == 0
    shown = capsys.readouterr().out
    assert "\nexamples:\n  batchcfg apply samples/training_job_configs.csv --sandbox " in shown
    assert "--lock /run/batchcfg.lock --lock-wait 600" in shown and "batchcfg COMMAND --help" in shown


def test_a_saved_plan_is_applied_exactly_and_refuses_what_changed_since(tmp_path: Path) -> None:
    names = [f"c{i}" for i in range(6)]
    manifest = write_csv(tmp_path / "m.csv", ["config_name", "worker_server_num", "log_url"],
                         [[name, "4", "/bucket/new-log/"] for name in names])

    def options(report: str, **extra: Any) -> Options:
        return sandbox_options(sandbox, tmp_path / report, **extra)

    async def scenario() -> None:
        nonlocal sandbox
        async with serve(SandboxConfig()) as sandbox:
            seed(sandbox, names)
            from batchcfg import plan

            summary = await plan(manifest, options("plan.csv", plan_out=tmp_path / "plan.jsonl"))
            assert summary.counts == {"changed": 6} and summary.saved_plan == tmp_path / "plan.jsonl"
            sandbox.seed("c2", {**sandbox.state.configs[(PROJECT, "c2")], "spec_id": 3})  # behind its back
            summary = await apply(tmp_path / "plan.jsonl", options("dry.csv", dry_run=True))
            assert summary.counts == {"valid": 6} and not sandbox.state.puts, "a dry run of a plan sends nothing"
            summary = await apply(tmp_path / "plan.jsonl", options("apply.csv"))
            assert summary.counts == {"succeeded": 5, "conflict": 1} and summary.exit_code == 1
            refused = [r for r in read_report(tmp_path / "apply.csv") if r["status"] == "conflict"]
            assert [r["config_name"] for r in refused] == ["c2"]
            assert "changed since it was planned (spec_id: 1 -> 3)" in refused[0]["error_message"]
            assert sorted(name for _, _, name in sandbox.state.puts) == ["c0", "c1", "c3", "c4", "c5"]
            assert sandbox.state.configs[(PROJECT, "c0")]["log_url"] == "/bucket/new-log/"
            assert sandbox.state.configs[(PROJECT, "c2")]["spec_id"] == 3, "not overwritten"

    sandbox: Any = None
    anyio.run(scenario)


def test_the_progress_bar_moves_from_the_start_and_counts_as_the_summary(tmp_path: Path) -> None:
    """On a pseudo-terminal: the bar reaches every row, and names the statuses the summary names."""
    from .conftest import SandboxProcess, seed_file

    names = [f"c{i}" for i in range(30)]
    sandbox = SandboxProcess("--latency-ms", "20", "--seed", str(seed_file(tmp_path / "seed.jsonl", names[:-3])))
    try:
        manifest = valid_manifest(tmp_path / "m.csv", names)  # the last three do not exist: failed
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "PYTHONPATH": os.getcwd(), "TERM": "xterm",
               **SANDBOX_AKSK, "HUAWEICLOUD_SDK_PROJECT_ID": PROJECT}
        shown, code = answer_in_terminal(["apply", str(manifest), "--endpoint", sandbox.endpoint, "--yes",
                                          "--rate", "100", "--report", str(tmp_path / "r.csv")], env, tmp_path, "")
    finally:
        sandbox.close()
    assert code == 1
    assert "30/30" in shown and "failed=3" in shown, shown[-600:]
    assert "batchcfg: 30 rows: 27 succeeded, 3 failed" in shown


def terminal_env(tmp_path: Path, credentials: bool = True) -> dict[str, str]:
    env = {**SANDBOX_ENV, "HOME": str(tmp_path), "TERM": "xterm"}
    return env if credentials else {name: value for name, value in env.items() if name not in SANDBOX_AKSK}


# The question comes before any row is read: with --no-preflight, before any request at all, so
# that these tests need no server (a closed port: anything sent would fail the run).
CLOSED_PORT = "http://127.0.0.1:9"


def test_no_bar_before_the_question(tmp_path: Path) -> None:
    shown, code = answer_in_terminal(["apply", str(valid_manifest(tmp_path / "m.csv", ["a", "b"])), "--endpoint",
                                      CLOSED_PORT, "--no-preflight"], terminal_env(tmp_path), tmp_path, "n\n")
    assert code == 2 and shown.startswith("batchcfg: apply: 2 rows, to change configs at ")
    assert "not confirmed: nothing was sent" in shown and "row/s" not in shown and "/2 " not in shown, shown


def test_the_bar_comes_after_the_answer(tmp_path: Path) -> None:
    from .conftest import SandboxProcess, seed_file

    sandbox = SandboxProcess("--seed", str(seed_file(tmp_path / "seed.jsonl", ["a", "b"])))
    try:
        shown, code = answer_in_terminal(["apply", str(valid_manifest(tmp_path / "m.csv", ["a", "b"])), "--endpoint",
                                          sandbox.endpoint], terminal_env(tmp_path), tmp_path, "y\n")
    finally:
        sandbox.close()
    assert code == 0 and shown.index("Go ahead? [y/N]") < shown.index("2/2"), shown


def test_ctrl_c_at_the_question_ends_the_run_at_once(tmp_path: Path) -> None:
    """Without waiting for Enter (the run's own SIGINT handling waits for its event loop, which
    is the one reading the answer), and without a bar."""
    asked = time.monotonic()
    shown, code = answer_in_terminal(["apply", str(valid_manifest(tmp_path / "m.csv", ["a", "b"])), "--endpoint",
                                      CLOSED_PORT, "--no-preflight"], terminal_env(tmp_path), tmp_path, "",
                                     interrupt=lambda shown: "[y/N]" in shown)
    assert code == 130 and "batchcfg: error: not confirmed (interrupted): nothing was sent" in shown, shown
    assert "stopping" not in shown, "one line: nothing was running to stop"
    assert time.monotonic() - asked < 10 and "row/s" not in shown


def test_no_bar_before_an_error_that_stops_the_run(tmp_path: Path) -> None:
    shown, code = answer_in_terminal(["apply", str(valid_manifest(tmp_path / "m.csv", ["a"])), "--endpoint",
                                      CLOSED_PORT, "--yes"], terminal_env(tmp_path, credentials=False),
                                     tmp_path, "")
    assert code == 2 and shown.startswith("batchcfg: error: no credentials") and "row" not in shown, shown


def test_after_ctrl_c_the_bar_counts_the_rows_that_really_ended(tmp_path: Path) -> None:
    """Not 200/200: the rows cancelled unsent are named beside the bar, not counted in it."""
    from .conftest import SandboxProcess, seed_file

    names = [f"c{i}" for i in range(200)]
    sandbox = SandboxProcess("--latency-ms", "20", "--seed", str(seed_file(tmp_path / "seed.jsonl", names)))

    def some_ended(shown: str) -> bool:
        counts = re.findall(r"(\d+)/200\b", shown)
        return bool(counts) and int(counts[-1]) >= 10

    try:
        shown, code = answer_in_terminal(["apply", str(valid_manifest(tmp_path / "m.csv", names)), "--endpoint",
                                          sandbox.endpoint, "--yes", "--rate", "40", "--report", str(tmp_path / "r.csv")],
                                         terminal_env(tmp_path), tmp_path, "", interrupt=some_ended)
    finally:
        sandbox.close()
    assert code == 130, shown[-800:]
    statuses = [row["status"] for row in read_report(tmp_path / "r.csv")]
    ended = sum(status != "cancelled" for status in statuses)
    assert 10 <= ended < 200 and statuses.count("cancelled") == 200 - ended
    bar = shown[:shown.index("batchcfg: 200 rows:")]
    assert int(re.findall(r"(\d+)/200\b", bar)[-1]) == ended, bar[-400:]
    assert f"cancelled={200 - ended}" in bar and "200/200" not in bar
