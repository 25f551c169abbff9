"""The command line end to end: the samples against the sandbox, reports, exit codes, bad input."""

from __future__ import annotations

import csv
import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import openpyxl
import pytest

from batchcfg.cli import main
from batchcfg.report import COLUMNS
from batchcfg.sandbox import SandboxConfig

from .conftest import PROJECT, SANDBOX_AKSK, VALID_CELLS, cli, read_report, seed, valid_manifest, write_csv

SAMPLES = Path(__file__).parent.parent / "samples"
CLEAN_ENV = {"PATH": os.environ.get("PATH", ""), "HOME": "/nonexistent", "BATCHCFG_METADATA_URL": "off"}


pytestmark = pytest.mark.usefixtures("clean_env")


def run_cli(*argv: str | Path) -> int:
    return main([str(arg) for arg in argv])


@pytest.mark.parametrize("sample", ["training_job_configs.csv", "training_job_configs.xlsx"])
def test_samples_against_the_sandbox(sample: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "report.csv"
    assert run_cli("apply", SAMPLES / sample, "--sandbox", "--rate", "0", "--report", report) == 1
    rows = read_report(report)
    assert list(rows[0]) == list(COLUMNS)
    assert [int(r["row"]) for r in rows] == sorted(int(r["row"]) for r in rows)
    by_status: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_status.setdefault(row["status"], []).append(row)
    # the sandbox holds an earlier state of each config: every third as the manifest has it already
    assert (len(by_status["succeeded"]), len(by_status["skipped"]), len(by_status["invalid"])) == (8, 4, 3)
    assert set(by_status) == {"succeeded", "skipped", "invalid"}
    assert {r["error_message"] for r in by_status["skipped"]} == {"unchanged"}
    for row in by_status["succeeded"]:
        assert (row["http_status"], row["attempts"], row["project_id"]) == ("200", "1", PROJECT)
        assert len(row["request_id"]) == 32 and row["error_code"] == ""
    codes = {r["config_name"]: r["error_code"] for r in by_status["invalid"]}
    assert codes == {"efficientnet-b0-broken": "BATCHCFG.CONFLICT", "detr-missing-spec": "BATCHCFG.RANGE",
                     "densenet-two-sources": "BATCHCFG.TYPE"}
    assert all(r["attempts"] == "0" for r in by_status["invalid"])
    out, err = capsys.readouterr()
    assert out.strip() == str(report)
    assert "15 rows: 8 succeeded, 3 invalid, 4 skipped" in err and "Traceback" not in err


def test_the_sandbox_holds_what_was_sent(tmp_path: Path) -> None:
    """Bodies as sent: integers as JSON integers, parameter values as strings, empty cells left out."""
    import anyio

    from batchcfg import Options, apply
    from batchcfg.sandbox import serve

    manifest = write_csv(tmp_path / "m.csv",
                         ["config_name", "worker_server_num", "spec_id", "model_id", "data_url",
                          "config_desc", "parameter", "param.Batch_Size", "train_url"],
                         [["a", "3.0", "01", "7", "/bucket/data/", "NA", '[{"label":"lr","value":0.010}]',
                           "064", ""]])

    async def scenario() -> dict[str, object]:
        async with serve(SandboxConfig()) as sandbox:
            seed(sandbox, ["a"])
            options = Options.of(endpoint=sandbox.endpoint, project_id=PROJECT, report=tmp_path / "r.csv",
                              env=SANDBOX_AKSK)
            summary = await apply(manifest, options)
            assert summary.exit_code == 0
            return sandbox.state.configs[(PROJECT, "a")]

    assert anyio.run(scenario) == {
        "config_desc": "NA", "worker_server_num": 3, "model_id": 7,
        "parameter": [{"label": "lr", "value": "0.010"}, {"label": "Batch_Size", "value": "064"}],
        "spec_id": 1, "data_url": "/bucket/data/", "engine_id": 1}  # engine_id: the config's, as read


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".xlsx"])
def test_report_formats(suffix: str, tmp_path: Path) -> None:
    manifest = write_csv(tmp_path / "m.csv", ["config_name", *VALID_CELLS],
                         [["ok", *VALID_CELLS.values()], ["=HYPERLINK(\"x\")", *VALID_CELLS.values()]])
    report = tmp_path / f"report{suffix}"
    assert run_cli("apply", manifest, "--sandbox", "--report", report) == 1
    if suffix == ".xlsx":
        sheet = openpyxl.load_workbook(report).active
        rows = [[cell.value for cell in row] for row in sheet.iter_rows()]
        assert tuple(rows[0]) == COLUMNS
        assert rows[1][COLUMNS.index("status")] == "succeeded"
        assert rows[2][COLUMNS.index("config_name")] == "'=HYPERLINK(\"x\")"
        return
    records = read_report(report)
    assert [r["status"] for r in records] == ["succeeded", "invalid"]
    expected_name = "=HYPERLINK(\"x\")" if suffix == ".jsonl" else "'=HYPERLINK(\"x\")"
    assert records[1]["config_name"] == expected_name, "CSV is defused for spreadsheets; JSONL stays raw"
    if suffix == ".jsonl":
        assert records[0]["http_status"] == 200 and records[0]["attempts"] == 1


def test_default_report_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    manifest = valid_manifest(tmp_path / "m.csv", ["a", "b"])
    assert run_cli("validate", manifest) == 0
    reports = list(tmp_path.glob("batchcfg-report-*.csv"))
    assert len(reports) == 1 and len(reports[0].name) == len("batchcfg-report-20261126T191345Z.csv")
    assert capsys.readouterr().out.strip() == reports[0].name


def test_validate_and_dry_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = valid_manifest(tmp_path / "m.csv", ["a", "b"])
    assert run_cli("validate", manifest, "--report", tmp_path / "v.csv") == 0
    assert [r["status"] for r in read_report(tmp_path / "v.csv")] == ["valid", "valid"]
    # a dry run checks the credentials too: all but sending
    assert run_cli("apply", manifest, "--dry-run", "--region", "cn-north-4", "--project-id", PROJECT) == 2
    monkeypatch.setenv("BATCHCFG_IAM_TOKEN", "t")
    assert run_cli("apply", manifest, "--dry-run", "--region", "cn-north-4", "--project-id", PROJECT,
                   "--report", tmp_path / "d.csv") == 0
    assert [r["status"] for r in read_report(tmp_path / "d.csv")] == ["valid", "valid"]
    assert run_cli("validate", SAMPLES / "training_job_configs.csv", "--report", tmp_path / "s.csv") == 1


def test_duplicate_names_for_one_project_are_all_invalid(tmp_path: Path) -> None:
    other = "a" * 32
    manifest = write_csv(tmp_path / "m.csv", ["config_name", "project_id", *VALID_CELLS],
                         [["x", "", *VALID_CELLS.values()], ["y", "", *VALID_CELLS.values()],
                          ["x", other, *VALID_CELLS.values()], ["x", "", *VALID_CELLS.values()]])
    assert run_cli("validate", manifest, "--project-id", PROJECT, "--report", tmp_path / "r.csv") == 1
    rows = read_report(tmp_path / "r.csv")
    assert [(r["row"], r["status"], r["error_code"]) for r in rows] == [
        ("2", "invalid", "BATCHCFG.DUPLICATE"), ("3", "valid", ""), ("4", "valid", ""),
        ("5", "invalid", "BATCHCFG.DUPLICATE")]
    assert "row 5" in rows[0]["error_message"] and "row 2" in rows[3]["error_message"]


def test_failed_rows_keep_their_own_results(tmp_path: Path) -> None:
    """Invalid rows between valid ones: each row's result stays its own, sorted by row."""
    header = ["config_name", *VALID_CELLS]
    rows = [[f"c{i}", *VALID_CELLS.values()] if i % 3 else [f"c{i}", "0", "1", "7", "/bucket/d/"]
            for i in range(30)]
    manifest = write_csv(tmp_path / "m.csv", header, rows)
    assert run_cli("apply", manifest, "--sandbox", "--rate", "0", "--report", tmp_path / "r.jsonl") == 1
    records = read_report(tmp_path / "r.jsonl")
    assert [r["row"] for r in records] == list(range(2, 32))
    for record in records:
        index = int(record["config_name"][1:])
        assert record["row"] == index + 2
        # the sandbox holds every third config as the manifest has it already: unchanged, not sent
        expected = ("skipped" if record["row"] % 3 == 0 else "succeeded") if index % 3 else "invalid"
        assert record["status"] == expected


def test_credentials_from_the_environment_and_a_token_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """apply against a sandbox started separately, as a user would with `batchcfg sandbox`."""
    import anyio

    from batchcfg.sandbox import serve

    manifest = valid_manifest(tmp_path / "m.csv", ["a"])
    token_file = tmp_path / "token"
    token_file.write_text(SandboxConfig.token + "\n")

    async def scenario() -> tuple[int, int, int]:
        async with serve(SandboxConfig()) as sandbox:
            seed(sandbox, ["a"])
            monkeypatch.setenv("HUAWEICLOUD_SDK_AK", SandboxConfig.ak)
            monkeypatch.setenv("HUAWEICLOUD_SDK_SK", SandboxConfig.sk)
            monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", PROJECT)
            signed = await anyio.to_thread.run_sync(run_cli, "apply", manifest, "--endpoint", sandbox.endpoint,
                                                    "--report", tmp_path / "1.csv")
            with_token = await anyio.to_thread.run_sync(run_cli, "apply", manifest, "--endpoint",
                                                        sandbox.endpoint, "--token-file", token_file,
                                                        "--report", tmp_path / "2.csv")
            monkeypatch.setenv("HUAWEICLOUD_SDK_SK", "wrong")
            wrong = await anyio.to_thread.run_sync(run_cli, "apply", manifest, "--endpoint", sandbox.endpoint,
                                                   "--report", tmp_path / "3.csv")
            return signed, with_token, wrong

    assert anyio.run(scenario) == (0, 0, 2), "a wrong SK: the preflight's one read, one line, exit 2"
    assert not (tmp_path / "3.csv").exists()


def _bad_files(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    ok = valid_manifest(tmp_path / "ok.csv", ["a"])
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    gbk = tmp_path / "gbk.csv"
    gbk.write_bytes("config_name,config_desc\nx,中文描述\n".encode("gbk"))
    text = tmp_path / "m.txt"
    text.write_text("config_name\n")
    unknown = write_csv(tmp_path / "unknown.csv", ["config_name", "worker_num"], [["a", "1"]])
    repeated = write_csv(tmp_path / "repeated.csv", ["config_name", "spec_id", " SPEC_ID "], [["a", "1", "1"]])
    extra = tmp_path / "extra.csv"
    extra.write_text("config_name,spec_id\na,1\nb,1,9\n")
    return {
        "missing file": (["validate", str(tmp_path / "nope.csv")], "no such file"),
        "empty file": (["validate", str(empty)], "empty"),
        "undecodable": (["validate", str(gbk)], "--encoding"),
        "unsupported": (["validate", str(text)], "unsupported file type"),
        "unknown column": (["validate", str(unknown)], "'worker_num'"),
        "repeated column": (["validate", str(repeated)], "'spec_id' appears twice"),
        "more cells than the header": (["validate", str(extra)], "malformed CSV"),
        "no endpoint": (["apply", str(ok), "--project-id", PROJECT], "no endpoint"),
        "no credentials": (["apply", str(ok), "--region", "cn-north-4", "--project-id", PROJECT],
                           "no credentials"),
        "bad region": (["apply", str(ok), "--region", "moon", "--project-id", PROJECT], "--region"),
        "bad endpoint": (["apply", str(ok), "--endpoint", "ftp://x", "--project-id", PROJECT], "https://"),
        "bad project id": (["apply", str(ok), "--sandbox", "--project-id", "../etc"], "project id"),
        "bad rate": (["apply", str(ok), "--sandbox", "--rate", "-1"], "--rate"),
        "bad concurrency": (["apply", str(ok), "--sandbox", "--concurrency", "0"], "--concurrency"),
        "bad report type": (["validate", str(ok), "--report", str(tmp_path / "r.txt")], ".jsonl"),
        "unknown sheet": (["validate", str(SAMPLES / "training_job_configs.xlsx"), "--sheet", "nope"], "nope"),
        "no command": ([], "required"),
    }


@pytest.mark.parametrize("case", list(_bad_files(Path("/tmp"))))
def test_bad_input_is_one_line_and_exit_2(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    argv, expected = _bad_files(tmp_path)[case]
    assert run_cli(*argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("batchcfg: error: "), err
    assert expected in err
    assert not list(tmp_path.glob("batchcfg-report-*")), "nothing written when the run cannot start"


def test_unknown_column_names_the_nearest_known_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write_csv(tmp_path / "m.csv", ["config_name", "spec_idd"], [["a", "1"]])
    assert run_cli("validate", manifest) == 2
    assert "did you mean 'spec_id'" in capsys.readouterr().err


def test_python_dash_m_runs_the_same_cli(tmp_path: Path) -> None:
    manifest = valid_manifest(tmp_path / "m.csv", ["a", "b"])
    result = subprocess.run([sys.executable, "-m", "batchcfg", "apply", str(manifest), "--sandbox",
                             "--report", str(tmp_path / "r.csv"), "--no-progress"],
                            capture_output=True, text=True, env={**CLEAN_ENV, "PYTHONPATH": os.getcwd()},
                            cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "2 rows: 1 succeeded, 1 skipped" in result.stderr and "\r" not in result.stderr
    with open(tmp_path / "r.csv", newline="") as handle:
        assert [r["status"] for r in csv.DictReader(handle)] == ["succeeded", "skipped"]  # row 3: unchanged


def test_sandbox_command_prints_how_to_use_it(tmp_path: Path) -> None:
    with subprocess.Popen([sys.executable, "-m", "batchcfg", "sandbox", "--port", "0"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env={**CLEAN_ENV, "PYTHONPATH": os.getcwd()}) as process:
        assert process.stdout is not None and process.stderr is not None
        first = process.stdout.readline()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
        assert "Traceback" not in process.stderr.read()
    assert first.startswith("batchcfg sandbox: http://127.0.0.1:") and PROJECT in first


def test_summary_counts_json_serialisable(tmp_path: Path) -> None:
    from batchcfg import validate
    from batchcfg.options import Options

    summary = validate(valid_manifest(tmp_path / "m.csv", ["a"]), Options.of(report=tmp_path / "r.csv"))
    assert json.loads(json.dumps(summary.counts)) == {"valid": 1}


def test_help_and_an_offline_validate_do_not_import_what_only_sending_needs(tmp_path: Path) -> None:
    """Fast start: ``--help`` imports neither pandas nor aiohttp; ``validate`` needs pandas only."""
    manifest = valid_manifest(tmp_path / "m.csv", ["a", "b"])
    script = """
import sys
from batchcfg.cli import main
argv = sys.argv[1:]
try:
    main(argv)
except SystemExit:
    pass
print(sorted(name for name in ("aiohttp", "pandas", "yarl") if name in sys.modules), file=sys.stderr)
"""
    seen = {}
    for argv in (["--help"], ["validate", str(manifest), "--report", str(tmp_path / "r.csv")]):
        result = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, timeout=60,
                                env={**CLEAN_ENV, "PYTHONPATH": os.getcwd()})
        seen[argv[0]] = result.stderr.strip().splitlines()[-1]
    assert seen == {"--help": "[]", "validate": "['pandas']"}


@pytest.mark.parametrize("suffix", [".csv", ".xlsx", ".jsonl"])
def test_a_report_that_cannot_be_written_is_one_line_and_exit_74(
        suffix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / f"r{suffix}"
    (tmp_path / f".{report.name}.{os.getpid()}.tmp").mkdir()  # where the report is written first
    assert cli("validate", valid_manifest(tmp_path / "m.csv", ["a"]), "--report", report) == 74
    err = capsys.readouterr().err
    assert err.splitlines() == [f"batchcfg: error: cannot write {report} (Is a directory)"]


def test_a_backup_or_journal_that_cannot_be_opened_stops_before_sending(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = valid_manifest(tmp_path / "m.csv", ["a"])
    backup = tmp_path / "missing" / "b.jsonl"
    assert cli("apply", manifest, "--sandbox", "--backup", backup, "--report", tmp_path / "r.csv") == 2
    assert capsys.readouterr().err.splitlines() == [
        f"batchcfg: error: cannot write {backup} (No such file or directory)"]
    journal = tmp_path / "r2.journal.jsonl"
    journal.mkdir()  # resumed from, so it is continued; but it is no file
    assert cli("apply", manifest, "--sandbox", "--resume", journal, "--report", tmp_path / "r2.csv") == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith("batchcfg: error: ")


@pytest.mark.parametrize("argv, code", [(["--help"], 0), (["--version"], 0), (["apply", "--help"], 0), ([], 2),
                                        (["nonsense"], 2), (["apply"], 2), (["apply", "m.csv", "--rate", "x"], 2)])
def test_main_returns_the_exit_code_and_never_raises(argv: list[str], code: int,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == code
    if code:
        assert capsys.readouterr().err.startswith("batchcfg: error: ")


@pytest.mark.parametrize("unbuffered", [False, True])
@pytest.mark.parametrize("reader", ["| head -2 >/dev/null", "| true", ">&-"])
@pytest.mark.parametrize("command", ["regions", "completion bash", "--help"])
def test_a_reader_that_stops_early_ends_the_output_quietly(command: str, reader: str, unbuffered: bool) -> None:
    """`batchcfg regions | head -2`: exit 0 and nothing on stderr, through a real pipe (``true``
    leaves before the first line is written, ``head -2`` after two), or no stdout at all."""
    env = {**CLEAN_ENV, "PYTHONPATH": os.getcwd(), **({"PYTHONUNBUFFERED": "1"} if unbuffered else {})}
    result = subprocess.run(["bash", "-c", f'"$0" -m batchcfg {command} {reader}; exit "${{PIPESTATUS[0]}}"',
                             sys.executable], capture_output=True, text=True, env=env, timeout=60)
    assert (result.returncode, result.stderr) == (0, "")


@pytest.mark.parametrize("pipe", ["| true", "2>&1 | head -1 >/dev/null", ">&- 2>&-"])
def test_a_run_whose_output_is_closed_early_still_ends_as_the_run_did(pipe: str, tmp_path: Path) -> None:
    """The report path (and the summary) go nowhere; the report, the metrics and the exit code stay.
    Closed from the start (``>&- 2>&-``), the report never takes the place of stderr either."""
    manifest = valid_manifest(tmp_path / "m.csv", ["a", "b"])
    command = (f'"$0" -m batchcfg apply {manifest} --sandbox --rate 0 --report {tmp_path / "r.csv"} '
               f'--metrics-file {tmp_path / "m.prom"} {pipe}; exit "${{PIPESTATUS[0]}}"')
    result = subprocess.run(["bash", "-c", command, sys.executable], capture_output=True, text=True, timeout=60,
                            env={**CLEAN_ENV, "PYTHONPATH": os.getcwd(), "PYTHONUNBUFFERED": "1"}, cwd=tmp_path)
    assert result.returncode == 0 and "Traceback" not in result.stderr and "Broken" not in result.stderr
    assert [row["status"] for row in read_report(tmp_path / "r.csv")] == ["succeeded", "skipped"]
    assert 'batchcfg_exit_code{command="apply"} 0' in (tmp_path / "m.prom").read_text()
    assert "batchcfg:" not in (tmp_path / "r.csv").read_text()


def test_completion_offers_regions_and_the_config_files_profiles(tmp_path: Path) -> None:
    """Through bash itself: the script batchcfg prints, sourced, completing --region and --profile
    (whose names it asks ``batchcfg config profiles`` for, as it completes)."""
    (tmp_path / "batchcfg.toml").write_text('[profiles.prod]\nrate = 1\n\n[profiles.staging-2]\nrate = 2\n\n'
                                            '[profiles."$(touch pwned)"]\nrate = 3\n')
    env = {**CLEAN_ENV, "PATH": f"{Path(sys.executable).parent}:{CLEAN_ENV['PATH']}", "PYTHONPATH": os.getcwd()}
    script = subprocess.run([sys.executable, "-m", "batchcfg", "completion", "bash"], capture_output=True, text=True,
                            env=env, timeout=60, check=True).stdout
    (tmp_path / "batchcfg.bash").write_text(script)

    def complete(*words: str) -> list[str]:
        line = (f"source batchcfg.bash; COMP_WORDS=({' '.join(shlex.quote(word) for word in words)}); "
                f'COMP_CWORD={len(words) - 1}; _shtab_batchcfg; printf "%s\\n" "${{COMPREPLY[@]}}"')
        result = subprocess.run(["bash", "-c", line], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    assert complete("batchcfg", "apply", "m.csv", "--region", "cn-north-") == [
        "cn-north-1", "cn-north-2", "cn-north-4", "cn-north-9", "cn-north-11", "cn-north-12"]
    assert complete("batchcfg", "plan", "m.csv", "--profile", "") == ["prod", "staging-2"]
    assert complete("batchcfg", "config", "show", "--profile", "st") == ["staging-2"]
    assert not (tmp_path / "pwned").exists(), "a profile name is never run by the shell"
    for shell in ("zsh", "tcsh"):
        script = subprocess.run([sys.executable, "-m", "batchcfg", "completion", shell], capture_output=True, text=True,
                                env=env, timeout=60, check=True).stdout
        assert "cn-north-4 cn-north-9" in script and "batchcfg config profiles" in script


def test_config_profiles_lists_the_profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert run_cli("config", "profiles") == 0 and capsys.readouterr().out == "", "no config file: none"
    config = tmp_path / "other.toml"
    config.write_text("[profiles.b]\nrate = 1\n\n[profiles.a]\nrate = 2\n")
    assert run_cli("config", "profiles", "--config", config) == 0 and capsys.readouterr().out == "a\nb\n"
    config.write_text("[prod]\nrate = 1\n")
    assert run_cli("config", "profiles", "--config", config) == 2
    assert capsys.readouterr().err == f"batchcfg: error: {config}: line 1: unknown key 'prod'; settings go in " \
                                      "[profiles.NAME] tables\n"
