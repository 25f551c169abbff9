"""Cron-ready: no-TTY runs with JSON logs and progress lines, metrics, locking, profiles,
regions, and the online preflight."""

from __future__ import annotations

import dataclasses

import fcntl
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

from batchcfg import Options, apply
from batchcfg.commands import validate
from batchcfg.errors import UsageError
from batchcfg.sandbox import SandboxConfig, serve
from batchcfg.settings import resolve

from .conftest import (PROJECT, SANDBOX_AKSK, SandboxProcess, cli, read_report, seed, seed_file, valid_manifest,
                       write_csv)

CRON_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "PYTHONPATH": os.getcwd(),
            "HUAWEICLOUD_SDK_AK": SandboxConfig.ak, "HUAWEICLOUD_SDK_SK": SandboxConfig.sk,
            "HUAWEICLOUD_SDK_PROJECT_ID": PROJECT}


@pytest.fixture(autouse=True)
def in_tmp_path(clean_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)


def test_a_cron_run_logs_json_lines_and_progress_without_a_bar(tmp_path: Path) -> None:
    names = [f"c{i}" for i in range(40)]
    manifest = valid_manifest(tmp_path / "m.csv", names)
    sandbox = SandboxProcess("--latency-ms", "100", "--seed", str(seed_file(tmp_path / "seed.jsonl", names)))
    try:
        result = subprocess.run(
            ["env", "-i", *(f"{k}={v}" for k, v in CRON_ENV.items()), sys.executable, "-m", "batchcfg",
             "apply", str(manifest), "--endpoint", sandbox.endpoint, "--rate", "40", "--log-format", "json",
             "--progress-interval", "0.3", "--report", str(tmp_path / "r.csv")],
            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    finally:
        sandbox.close()
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr and "\x1b" not in result.stderr, "no progress-bar artefacts"
    lines = [json.loads(line) for line in result.stderr.splitlines()]  # every line parses
    progress = [line for line in lines if line["message"].startswith("progress: ")]
    assert len(progress) >= 2 and all({"time", "level", "done", "total"} <= set(p) for p in progress)
    assert progress[-1]["total"] == 40 and progress[0]["done"] <= progress[-1]["done"]
    assert any(line["message"] == "40 rows: 40 succeeded" for line in lines)


def json_lines_of(stderr: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in stderr.splitlines()]  # every line of stderr parses
    assert lines and all({"time", "level", "message"} <= set(line) for line in lines)
    return lines


def test_json_logs_of_a_failing_run_and_a_fatal_one(tmp_path: Path) -> None:
    """A run that stops early with failed and invalid rows: every stderr line is JSON; the rows'
    errors are warnings, the stop an error; one summary event, whose counts are the report's.
    A run that cannot start: one JSON line, level error, with its exit code."""
    names = [f"c{i:02d}" for i in range(30)]
    manifest = write_csv(tmp_path / "m.csv", ["config_name", "worker_server_num"],
                         [[name, "0" if name == "c03" else "3"] for name in names])
    sandbox = SandboxProcess("--seed", str(seed_file(tmp_path / "seed.jsonl", names[:20])))  # the rest do not exist
    try:
        argv = [sys.executable, "-m", "batchcfg", "apply", str(manifest), "--endpoint", sandbox.endpoint, "--rate",
                "0", "--concurrency", "1", "--max-failures", "4", "--log-format", "json"]
        failing = subprocess.run([*argv, "--report", str(tmp_path / "r.csv")], capture_output=True, text=True,
                                 env=CRON_ENV, timeout=120)
        fatal = subprocess.run([*argv, "--report", str(tmp_path / "r.csv")], capture_output=True, text=True,
                               env=CRON_ENV, timeout=120)  # the report exists: cannot start
    finally:
        sandbox.close()
    assert failing.returncode == 1
    lines = json_lines_of(failing.stderr)
    summaries = [line for line in lines if line.get("event") == "summary"]
    assert len(summaries) == 1 and summaries[0]["level"] == "error", "stopped early: an error"
    records = read_report(tmp_path / "r.csv")
    assert summaries[0]["counts"] == dict(Counter(r["status"] for r in records))
    assert summaries[0]["exit_code"] == 1 and summaries[0]["files"]["report"] == str(tmp_path / "r.csv")
    assert {"requests", "retries", "rate", "duration_s"} <= set(summaries[0])
    errors = {line["error_code"]: line for line in lines if line.get("event") == "error_rows"}
    assert {code: line["level"] for code, line in errors.items()} == {"BATCHCFG.RANGE": "warning",
                                                                       "ModelArts.0102": "warning"}
    assert errors["ModelArts.0102"]["rows"] == 4 and errors["BATCHCFG.RANGE"]["first"][0]["row"] == 5
    assert [line["level"] for line in lines if line.get("event") == "stopped"] == ["error"]
    assert fatal.returncode == 2
    (only,) = json_lines_of(fatal.stderr)
    assert (only["level"], only["event"], only["exit_code"]) == ("error", "error", 2)
    assert "exists (an earlier run's?)" in only["message"]


def test_metrics_keep_the_last_success_through_a_failing_run(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    metrics = tmp_path / "batchcfg.prom"
    good = valid_manifest(tmp_path / "good.csv", ["a", "b"])
    assert cli("apply", good, "--sandbox", "--rate", "0", "--metrics-file", metrics) == 0
    assert f"batchcfg: metrics: {metrics}\n" in capsys.readouterr().err, "named with the files"
    first = metrics.read_text()
    # the sandbox holds b (row 3) as the manifest has it already: read, not sent
    assert 'batchcfg_rows{command="apply",status="succeeded"} 1' in first
    assert 'batchcfg_rows{command="apply",status="skipped"} 1' in first
    assert 'batchcfg_requests{command="apply",http_status="200"} 5' in first  # the preflight, a GET a row, a PUT, its read-back
    assert 'batchcfg_exit_code{command="apply"} 0' in first
    success = re.search(r"^batchcfg_last_success_timestamp_seconds (\S+)$", first, re.M)
    assert success is not None
    bad = write_csv(tmp_path / "bad.csv", ["config_name", "worker_server_num"], [["a", "0"]])
    assert cli("apply", bad, "--sandbox", "--metrics-file", metrics) == 1
    second = metrics.read_text()
    assert 'batchcfg_rows{command="apply",status="invalid"} 1' in second
    assert 'batchcfg_exit_code{command="apply"} 1' in second
    assert f"batchcfg_last_success_timestamp_seconds {success.group(1)}\n" in second, "kept from the success"
    last_run = re.search(r"^batchcfg_last_run_timestamp_seconds (\S+)$", second, re.M)
    assert last_run is not None and float(last_run.group(1)) >= float(success.group(1))
    assert not list(tmp_path.glob(".batchcfg.prom.*")), "written through a temporary file"


def test_a_second_run_on_the_same_lock_exits_75_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lock = tmp_path / "batchcfg.lock"
    manifest = valid_manifest(tmp_path / "m.csv", ["a"])
    with lock.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the first run
        assert cli("apply", manifest, "--sandbox", "--lock", lock, "--report", tmp_path / "r.csv") == 75
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "holds the lock" in err
        assert not (tmp_path / "r.csv").exists() and not list(tmp_path.glob("batchcfg-*"))
    assert cli("apply", manifest, "--sandbox", "--lock", lock, "--report", tmp_path / "r.csv") == 0


CONFIG = """
[profiles.default]
rate = 5

[profiles.prod]
region = "cn-north-4"
project_id = "{project}"
rate = 20
concurrency = 16
report_dir = "{reports}"
"""


def test_profile_precedence_flags_then_environment_then_profile_then_defaults(tmp_path: Path) -> None:
    config = tmp_path / "batchcfg.toml"
    config.write_text(CONFIG.format(project=PROJECT, reports=tmp_path / "reports"))
    defaults = resolve({}, {}, config, None)  # the default profile
    assert (defaults["rate"].value, defaults["timeout"].value) == (5.0, 30.0)
    assert defaults["timeout"].source == "default" and "profile" in defaults["rate"].source
    prod = resolve({}, {}, config, "prod")
    assert (prod["rate"].value, prod["concurrency"].value, prod["region"].value) == (20.0, 16, "cn-north-4")
    env = {"BATCHCFG_RATE": "7", "BATCHCFG_PROFILE": "prod"}
    from_env = resolve({}, env, config, None)
    assert (from_env["rate"].value, from_env["rate"].source) == (7.0, "environment BATCHCFG_RATE")
    assert from_env["concurrency"].value == 16, "BATCHCFG_PROFILE picks the profile"
    flagged = resolve({"rate": 3.0, "endpoint": "https://x.example.com"}, env, config, None)
    assert (flagged["rate"].value, flagged["rate"].source) == (3.0, "command line")
    assert flagged["region"].value is None, "an --endpoint flag overrides the profile's region"


@pytest.mark.parametrize("content, message", [
    ('[profiles.prod]\nrate = 20\nrte = 3\n', "line 3: unknown key 'rte' in [profiles.prod] (did you mean 'rate'?)"),
    ('[profiles.prod]\nrate = "fast"\n', "line 2: rate must be a number"),
    ('[profiles.prod]\nrate = \n', "Invalid value (at line 2, column 8)"),
    ('[prod]\nrate = 1\n', "line 1: unknown key 'prod'"),
    ('[profiles.prod]\nsk = "secret"\n', "line 2: unknown key 'sk'"),
    ('[profiles.prod]\ntimeout = 0\n', "line 2: timeout must be above 0"),
])
def test_a_bad_config_file_is_one_line_naming_file_line_and_key(tmp_path: Path, content: str, message: str,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(content)
    manifest = valid_manifest(tmp_path / "m.csv", ["a"])
    assert cli("apply", manifest, "--sandbox", "--config", config, "--profile", "prod") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(config) in err and message in err
    assert "secret" not in err


def test_config_show_gives_each_source_and_masks_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "batchcfg.toml"
    config.write_text(CONFIG.format(project=PROJECT, reports=tmp_path / "reports"))
    monkeypatch.setenv("HUAWEICLOUD_SDK_AK", "AKSHOWME1234567890")
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", "the-secret-key-never-shown")
    monkeypatch.setenv("HUAWEICLOUD_SDK_SECURITY_TOKEN", "the-security-token")
    monkeypatch.setenv("BATCHCFG_TIMEOUT", "12")
    assert cli("config", "show", "--profile", "prod", "--rate", "2") == 0
    out = capsys.readouterr().out
    assert "rate         = 2.0  (command line)" in out
    assert "timeout      = 12.0  (environment BATCHCFG_TIMEOUT)" in out
    assert f"region       = cn-north-4  (profile in {config.name})" in out
    assert "max_retries  = 5  (default)" in out
    assert "credentials  = Signer(ak=AKS***, temporary=True)" in out
    for secret in ("AKSHOWME1234567890", "the-secret-key-never-shown", "the-security-token"):
        assert secret not in out


def test_a_profile_sets_the_run(tmp_path: Path) -> None:
    """A cron line as short as `batchcfg apply m.csv --profile prod`: the report lands in report_dir."""
    (tmp_path / "reports").mkdir()
    config = tmp_path / "batchcfg.toml"
    config.write_text(CONFIG.format(project=PROJECT, reports=tmp_path / "reports"))
    manifest = valid_manifest(tmp_path / "m.csv", ["a"])
    assert cli("apply", manifest, "--profile", "prod", "--dry-run", "--token-file", _token(tmp_path)) == 0
    reports = list((tmp_path / "reports").glob("batchcfg-report-*.csv"))
    assert len(reports) == 1 and read_report(reports[0])[0]["project_id"] == PROJECT


def _token(tmp_path: Path) -> Path:
    token = tmp_path / "token"
    token.write_text("t")
    token.chmod(0o600)
    return token


def test_regions(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli("regions") == 0
    out = capsys.readouterr().out
    assert "cn-north-4       https://modelarts.cn-north-4.myhuaweicloud.com" in out
    assert "ap-southeast-1   https://modelarts.ap-southeast-1.myhuaweicloud.cn" in out
    manifest = valid_manifest(tmp_path / "m.csv", ["a"])
    assert cli("apply", manifest, "--region", "cn-nort-4", "--project-id", PROJECT) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean cn-north-4?" in err and "--endpoint" in err


PREFLIGHT_ROWS = [
    ["fine", "2", "3", "4", "/bucket/app/", "/bucket/app/t.py", "/bucket/data/"],
    ["bad-spec", "1", "99", "1", "/bucket/app/", "/bucket/app/t.py", "/bucket/data/"],
    ["too-many-workers", "5", "2", "1", "/bucket/app/", "/bucket/app/t.py", "/bucket/data/"],
    ["bad-engine", "1", "1", "42", "/bucket/app/", "/bucket/app/t.py", "/bucket/data/"],
]


def test_preflight_catches_spec_workers_and_engine_without_any_put(tmp_path: Path) -> None:
    manifest = write_csv(tmp_path / "m.csv", ["config_name", "worker_server_num", "spec_id", "engine_id",
                                              "app_url", "boot_file_url", "data_url"], PREFLIGHT_ROWS)
    env = SANDBOX_AKSK

    async def scenario() -> tuple[Any, Any, list[str], Any]:
        async with serve(SandboxConfig()) as sandbox:
            seed(sandbox, [row[0] for row in PREFLIGHT_ROWS])
            online = Options.of(endpoint=sandbox.endpoint, project_id=PROJECT, env=env, online=True,
                             report=tmp_path / "v.csv")
            checked = await anyio.to_thread.run_sync(validate, manifest, online)
            puts_after_validate = len(sandbox.state.puts)
            await apply(manifest, Options.of(endpoint=sandbox.endpoint, project_id=PROJECT, env=env,
                                                    preflight=True, rate=0, report=tmp_path / "a.csv"))
            return checked, puts_after_validate, [name for _, _, name in sandbox.state.puts], sandbox.state.methods

    checked, puts_after_validate, put_names, methods = anyio.run(scenario)
    assert puts_after_validate == 0
    records = {r["config_name"]: r for r in read_report(tmp_path / "v.csv")}
    assert records["fine"]["status"] == "valid"
    assert (records["bad-spec"]["status"], records["bad-spec"]["error_code"]) == ("invalid", "BATCHCFG.SPEC")
    assert (records["too-many-workers"]["error_code"], "spec 2 allows (4)" in records["too-many-workers"]["error_message"]) == (
        "BATCHCFG.RANGE", True)
    assert records["bad-engine"]["error_code"] == "BATCHCFG.ENGINE"
    assert checked.counts == {"valid": 1, "invalid": 3}
    assert put_names == ["fine"], "only the row that fits is sent"
    assert {r["config_name"]: r["status"] for r in read_report(tmp_path / "a.csv")} == {
        "fine": "succeeded", "bad-spec": "invalid", "too-many-workers": "invalid", "bad-engine": "invalid"}


def test_an_unreadable_catalog_stops_before_sending(tmp_path: Path) -> None:
    manifest = valid_manifest(tmp_path / "m.csv", ["a"])
    options = Options.of(endpoint="http://127.0.0.1:9", project_id=PROJECT, online=True, max_retries=0,
                         env={"BATCHCFG_IAM_TOKEN": "t"}, report=tmp_path / "r.csv", no_preflight=True)
    with pytest.raises(UsageError, match="preflight: cannot read"):
        validate(manifest, options)
    with pytest.raises(UsageError, match="cannot reach http://127.0.0.1:9: cannot connect"):  # the first read says it
        validate(manifest, dataclasses.replace(options, no_preflight=False))


@pytest.mark.parametrize("where", ["flag", "environment", "profile"])
def test_a_zero_timeout_is_refused_wherever_it_comes_from(where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """aiohttp reads a 0 timeout as no timeout at all: every source refuses it alike."""
    manifest = valid_manifest(tmp_path / "m.csv", ["a"])
    config = tmp_path / "c.toml"
    config.write_text("[profiles.default]\ntimeout = 0\n" if where == "profile" else "")
    if where == "environment":
        monkeypatch.setenv("BATCHCFG_TIMEOUT", "0")
    flags = ["--timeout", "0"] if where == "flag" else []
    assert cli("apply", manifest, "--sandbox", "--config", config, *flags) == 2
    assert "must be above 0" in capsys.readouterr().err


def test_the_region_table_matches_the_sdks() -> None:
    """Every region of Huawei's own ModelArts SDK, with the same endpoint, and no other."""
    from huaweicloudsdkmodelarts.v1.region.modelarts_region import ModelArtsRegion

    from batchcfg.endpoints import REGIONS, region_endpoint

    sdk = {region_id: region.endpoints[0] for region_id, region in ModelArtsRegion.static_fields.items()}
    assert {region: region_endpoint(region) for region in REGIONS} == sdk
