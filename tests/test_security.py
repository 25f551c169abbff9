"""Security: transport, paths, secrets, spreadsheet-safe output, hostile files. Driven through the CLI."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import anyio
import openpyxl
import pytest
import trustme
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchcfg.endpoints import endpoint_for
from batchcfg.errors import UsageError
from batchcfg.files import spreadsheet_safe
from batchcfg.sandbox import SandboxConfig, serve
from batchcfg.text import printable

from .conftest import (PROJECT, SANDBOX_AKSK, VALID_CELLS, ScriptedServer, cli, read_report, seed, valid_manifest,
                       write_csv)
from .perf.measure import measured

SECRETS = {"ak": "AKSECRETQ7Q2M4X9T0B1", "sk": "sk-9f8e7d6c5b4a-very-secret", "token": "iam-token-0123-secret",
           "security_token": "sts-temporary-secret-token"}
CHILD_ENV = {"PATH": os.environ.get("PATH", ""), "HOME": "/nonexistent", "PYTHONPATH": os.getcwd(),
             "BATCHCFG_METADATA_URL": "off"}


pytestmark = pytest.mark.usefixtures("clean_env")


# -- transport ---------------------------------------------------------------------------------

@pytest.mark.parametrize("endpoint", ["http://modelarts.cn-north-4.myhuaweicloud.com", "http://192.0.2.10:8080"])
def test_plain_http_beyond_loopback_is_refused(endpoint: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    manifest = valid_manifest(tmp_path / "m.csv", ["a"])
    assert cli("apply", manifest, "--endpoint", endpoint, "--project-id", PROJECT) == 2
    err = capsys.readouterr().err
    assert err.startswith("batchcfg: error: ") and "--allow-http" in err and err.count("\n") == 1
    assert endpoint_for(endpoint, None, allow_http=True) == endpoint  # allowed when asked for


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:8765", "http://127.8.9.10", "http://localhost:1",
                                      "http://[::1]:8765"])
def test_plain_http_on_loopback_is_allowed(endpoint: str) -> None:
    assert endpoint_for(endpoint, None) == endpoint


@pytest.fixture(scope="module")
def certificate_authority() -> trustme.CA:
    return trustme.CA()


async def test_tls_is_verified_and_a_private_ca_can_be_added(tmp_path: Path, certificate_authority: trustme.CA,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("127.0.0.1").configure_cert(server_context)
    bundle = tmp_path / "ca.pem"
    certificate_authority.cert_pem.write_to_path(str(bundle))
    seen: list[str] = []
    stored = {"worker_server_num": 2}

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.path)
        if request.method == "PUT":
            stored.update(await request.json())
            return web.json_response({"is_success": True})
        return web.json_response({"is_success": True, "config_name": "a", **stored})

    app = web.Application()
    app.router.add_route("*", "/v1/{project}/training-job-configs/{name}", handle)
    app.router.add_get("/v1/{project}/training-job-configs", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(ssl=server_context)
    monkeypatch.setenv("BATCHCFG_IAM_TOKEN", SECRETS["token"])
    manifest = valid_manifest(tmp_path / "m.csv", ["a"])
    endpoint = f"https://127.0.0.1:{server.port}"
    try:
        unverified = await anyio.to_thread.run_sync(cli, "apply", manifest, "--endpoint", endpoint, "--project-id",
                                                    PROJECT, "--max-retries", "0", "--report", tmp_path / "1.csv")
        verified = await anyio.to_thread.run_sync(cli, "apply", manifest, "--endpoint", endpoint, "--project-id",
                                                  PROJECT, "--ca-bundle", bundle, "--report", tmp_path / "2.csv")
    finally:
        await server.close()
    assert unverified == 2 and not (tmp_path / "1.csv").exists(), "refused at the preflight: one line, exit 2"
    assert verified == 0 and seen == [f"/v1/{PROJECT}/training-job-configs", *[f"/v1/{PROJECT}/training-job-configs/a"] * 3]
    # the preflight's List, then the GET, the PUT and the read-back


# -- paths ---------------------------------------------------------------------------------------

HOSTILE_NAMES = ["../x", "a/b", "%2e%2e", "x?y=1", "x#y", "with space", "tab\tname", "ctl\x01", "名前",
                 "caf\u00e9", "a" * 65, "..", ".", "a%2Fb"]


def test_hostile_names_are_invalid_and_never_sent(tmp_path: Path) -> None:
    rows = [[name, *VALID_CELLS.values()] for name in HOSTILE_NAMES] + [["fine", *VALID_CELLS.values()]]
    manifest = write_csv(tmp_path / "m.csv", ["config_name", *VALID_CELLS], rows)

    async def scenario() -> list[str]:
        async with serve(SandboxConfig()) as sandbox:
            seed(sandbox, ["fine"])
            env = SANDBOX_AKSK
            from batchcfg import Options, apply

            await apply(manifest, Options.of(endpoint=sandbox.endpoint, project_id=PROJECT, env=env,
                                          report=tmp_path / "r.jsonl"))
            return [name for _, _, name in sandbox.state.puts]

    assert anyio.run(scenario) == ["fine"]
    records = read_report(tmp_path / "r.jsonl")
    assert [r["status"] for r in records] == ["invalid"] * len(HOSTILE_NAMES) + ["succeeded"]
    assert {r["error_code"] for r in records[:-1]} == {"BATCHCFG.FORMAT"}
    assert [r["config_name"] for r in records[:-1]] == [printable(name) for name in HOSTILE_NAMES], \
        "control characters written out, as on screen"


@pytest.mark.parametrize("project", ["../" + "a" * 29, "A" * 32, "a" * 31, "a" * 32 + "/x", "%2e" * 10 + "aa"])
def test_hostile_project_ids(project: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write_csv(tmp_path / "m.csv", ["config_name", "project_id", *VALID_CELLS],
                         [["a", project, *VALID_CELLS.values()]])
    assert cli("apply", manifest, "--sandbox", "--report", tmp_path / "r.csv") == 1
    record = read_report(tmp_path / "r.csv")[0]
    assert (record["status"], record["error_code"], record["attempts"]) == ("invalid", "BATCHCFG.FORMAT", "0")
    capsys.readouterr()
    assert cli("apply", valid_manifest(tmp_path / "ok.csv", ["a"]), "--sandbox", "--project-id", project) == 2
    assert "project id" in capsys.readouterr().err


# -- secrets -----------------------------------------------------------------------------------

def test_no_secret_reaches_any_output_or_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Every command, at the highest verbosity, with secrets in the environment and in files."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    credentials = work / "credentials"
    credentials.write_text(f"[basic]\nak = {SECRETS['ak']}\nsk = {SECRETS['sk']}\nproject_id = {PROJECT}\n")
    token_file = work / "token"
    token_file.write_text(SECRETS["token"])
    samples = Path(__file__).parent.parent / "samples" / "training_job_configs.csv"
    manifest = work / "m.csv"
    manifest.write_text(samples.read_text())
    config = SandboxConfig(ak=SECRETS["ak"], sk=SECRETS["sk"], token=SECRETS["token"])
    codes = []

    async def scenario() -> None:
        async with serve(config) as sandbox:
            runs = [
                ({"HUAWEICLOUD_SDK_AK": SECRETS["ak"], "HUAWEICLOUD_SDK_SK": SECRETS["sk"],
                  "HUAWEICLOUD_SDK_SECURITY_TOKEN": SECRETS["security_token"],
                  "HUAWEICLOUD_SDK_PROJECT_ID": PROJECT}, ["--report", "1.csv", "--failed-manifest", "f1.xlsx"]),
                ({"HUAWEICLOUD_SDK_CREDENTIALS_FILE": str(credentials)}, ["--report", "2.xlsx"]),
                ({"BATCHCFG_IAM_TOKEN": SECRETS["token"], "HUAWEICLOUD_SDK_PROJECT_ID": PROJECT},
                 ["--report", "3.jsonl", "--failed-manifest", "f3.csv"]),
                ({}, ["--token-file", str(token_file), "--project-id", PROJECT, "--report", "4.csv"]),
                ({"HUAWEICLOUD_SDK_AK": SECRETS["ak"], "HUAWEICLOUD_SDK_SK": "wrong" + SECRETS["sk"]},
                 ["--project-id", PROJECT, "--report", "5.csv"]),  # refused at the preflight: exit 2
                ({"HUAWEICLOUD_SDK_AK": SECRETS["ak"]}, ["--project-id", PROJECT]),  # half a pair: exit 2
            ]
            for env, flags in runs:
                for name in list(os.environ):
                    if name.startswith(("HUAWEICLOUD_SDK_", "BATCHCFG_")):
                        monkeypatch.delenv(name)
                for name, value in env.items():
                    monkeypatch.setenv(name, value)
                codes.append(await anyio.to_thread.run_sync(
                    cli, "apply", manifest, "--endpoint", sandbox.endpoint, "--rate", "0", "-vv", *flags))
            codes.append(await anyio.to_thread.run_sync(cli, "validate", manifest, "-vv", "--report", "6.csv"))
            monkeypatch.delenv("HUAWEICLOUD_SDK_AK")
            monkeypatch.setenv("BATCHCFG_IAM_TOKEN", SECRETS["token"])
            codes.append(await anyio.to_thread.run_sync(cli, "apply", manifest, "--dry-run", "-vv", "--project-id",
                                                        PROJECT, "--endpoint", sandbox.endpoint, "--report", "7.csv"))

    anyio.run(scenario)
    for argv in (["--help"], ["apply", "--help"], ["validate", "--help"], ["sandbox", "--help"]):
        assert cli(*argv) == 0
    assert codes == [1, 1, 1, 1, 2, 2, 1, 1]
    captured = capsys.readouterr()
    assert "attempt 1" in captured.err, "the highest verbosity logs every attempt"
    written = [p for p in work.iterdir() if p not in (credentials, token_file)]
    assert len(written) >= 8
    blobs = {"stdout": captured.out, "stderr": captured.err}
    for path in written:
        if path.suffix == ".xlsx":
            with zipfile.ZipFile(path) as archive:
                blobs[path.name] = "".join(archive.read(n).decode("utf-8", "replace") for n in archive.namelist())
        else:
            blobs[path.name] = path.read_text(encoding="utf-8")
    for where, text in blobs.items():
        for kind, secret in SECRETS.items():
            assert secret not in text, f"the {kind} leaked into {where}"


def test_shared_credentials_and_token_files_get_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text(f"[basic]\nak = {SECRETS['ak']}\nsk = {SECRETS['sk']}\n")
    credentials.chmod(0o644)
    token = tmp_path / "token"
    token.write_text(SECRETS["token"])
    token.chmod(0o640)
    monkeypatch.setenv("HUAWEICLOUD_SDK_CREDENTIALS_FILE", str(credentials))
    manifest = valid_manifest(tmp_path / "m.csv", ["a"])
    flags = ["--dry-run", "--region", "cn-north-4", "--project-id", PROJECT]
    cli("apply", manifest, *flags, "--report", tmp_path / "1.csv")
    cli("apply", manifest, *flags, "--token-file", token, "--report", tmp_path / "2.csv")
    err = capsys.readouterr().err
    assert f"chmod 600 {credentials}" in err and f"chmod 600 {token}" in err
    credentials.chmod(0o600)
    cli("apply", manifest, *flags, "--report", tmp_path / "3.csv")
    assert "chmod" not in capsys.readouterr().err


# -- spreadsheet-safe output -------------------------------------------------------------------

async def test_hostile_answers_fail_their_row_and_never_break_the_journal(
        tmp_path: Path, scripted: ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Answers that are not the API's JSON, or JSON escaping a lone surrogate (text that no
    UTF-8 file can hold), fail their own row; the other rows and every file are unharmed."""
    names = ["surrogate-4xx", "ok-1", "surrogate-2xx", "not-json", "ok-2"]
    monkeypatch.setenv("BATCHCFG_IAM_TOKEN", "t")
    for suffix in (".csv", ".jsonl", ".xlsx"):
        scripted.stored.clear()  # each round changes the configs anew
        scripted.scripts = {
            "surrogate-4xx": [("raw", 400, '{"error_code":"ModelArts.9999","error_msg":"bad \\ud800 name"}')],
            "surrogate-2xx": [("raw", 200, '{"is_success":true,"request_id":"\\udfff"}')],
            "not-json": [("raw", 400, "<html>\x00\x1b[31m gateway </html>")],
        }
        report = tmp_path / f"report{suffix}"
        argv = ("apply", valid_manifest(tmp_path / "m.csv", names), "--endpoint", scripted.url, "--project-id",
                PROJECT, "--no-backup", "--rate", "0", "--timeout", "5", "--report", report)
        assert await anyio.to_thread.run_sync(cli, *argv) == 1  # the server runs in this test's loop
        rows = {r["config_name"]: r for r in read_report(report)}
        assert {name: rows[name]["status"] for name in names} == {
            "surrogate-4xx": "failed", "ok-1": "succeeded", "surrogate-2xx": "failed", "not-json": "failed",
            "ok-2": "succeeded"}
        assert rows["surrogate-4xx"]["error_code"] == "HTTP.400"
        assert "bad \\ud800 name" in rows["surrogate-4xx"]["error_message"]
        assert rows["surrogate-2xx"]["error_code"] == "BATCHCFG.BAD_RESPONSE"
        assert rows["not-json"]["error_code"] == "HTTP.400"


@pytest.mark.parametrize("value", ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)"])
def test_formula_cells_are_defused_in_csv_and_xlsx_but_raw_in_jsonl(value: str, tmp_path: Path) -> None:
    manifest = write_csv(tmp_path / "m.csv", ["config_name", *VALID_CELLS], [[value, *VALID_CELLS.values()]])
    for suffix in (".csv", ".xlsx", ".jsonl"):
        cli("validate", manifest, "--report", tmp_path / f"r{suffix}")
    sheet = openpyxl.load_workbook(tmp_path / "r.xlsx").active
    assert sheet.cell(row=2, column=2).value == "'" + value
    assert read_report(tmp_path / "r.csv")[0]["config_name"] == "'" + value
    assert read_report(tmp_path / "r.jsonl")[0]["config_name"] == value


@pytest.mark.parametrize("value, safe", [("\tx", "'\tx"), ("\rx", "'\rx"), ("\nx", "'\nx"), ("a=b", "a=b"),
                                         ("", ""), (None, ""), (200, 200)])
def test_spreadsheet_safe(value: Any, safe: Any) -> None:
    assert spreadsheet_safe(value) == safe


def test_control_characters_never_break_an_xlsx_report(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_bytes(b"config_name,config_desc\nbad\x00name,x\x01y\n")
    assert cli("validate", manifest, "--report", tmp_path / "r.xlsx") == 1
    sheet = openpyxl.load_workbook(tmp_path / "r.xlsx").active
    assert sheet.cell(row=2, column=2).value == "bad\\x00name", "the name written out, as on screen"


# -- hostile manifests -------------------------------------------------------------------------

def test_max_rows_refuses_before_sending(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = valid_manifest(tmp_path / "m.csv", [f"c{i}" for i in range(11)])
    assert cli("apply", manifest, "--sandbox", "--max-rows", "10", "--report", tmp_path / "r.csv") == 2
    assert "more than 10 rows" in capsys.readouterr().err
    assert not (tmp_path / "r.csv").exists()
    assert cli("apply", manifest, "--sandbox", "--max-rows", "11", "--report", tmp_path / "r.csv") == 0


def _measured(argv: list[str]) -> tuple[int, str, float, float]:
    """The CLI in a child: exit code, stderr, seconds, peak RSS in MiB."""
    result = measured([sys.executable, "-m", "batchcfg", *argv], env=CHILD_ENV, timeout=120)
    return result.code, result.stderr, result.seconds, result.rss_mib


def _billion_laughs(path: Path) -> Path:
    entities = '<!ENTITY lol0 "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol%d;" % (i - 1)) * 10}">' for i in range(1, 10))
    sheet = (f'<?xml version="1.0"?><!DOCTYPE lolz [{entities}]>'
             '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
             '<row r="1"><c r="A1" t="inlineStr"><is><t>config_name</t></is></c></row>'
             '<row r="2"><c r="A2" t="inlineStr"><is><t>&lol9;</t></is></c></row></sheetData></worksheet>')
    return _workbook(path, sheet.encode())


def _workbook(path: Path, sheet: bytes | None, bomb_bytes: int = 0) -> Path:
    """A minimal .xlsx around ``sheet``, or around a sheet that unpacks to ``bomb_bytes``."""
    base = openpyxl.Workbook()
    base.active.append(["config_name"])
    template = path.with_suffix(".base.xlsx")
    base.save(template)
    with zipfile.ZipFile(template) as source, \
            zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as target:  # a gigabyte: the fastest
        for info in source.infolist():
            if info.filename != "xl/worksheets/sheet1.xml":
                target.writestr(info, source.read(info))
            elif sheet is not None:
                target.writestr(info, sheet)
            else:
                with target.open(info.filename, "w", force_zip64=True) as part:
                    part.write(b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>')
                    chunk = b" " * 2**24
                    for _ in range(bomb_bytes // len(chunk)):
                        part.write(chunk)
                    part.write(b"</sheetData></worksheet>")
    template.unlink()
    return path


def test_billion_laughs_is_refused_quickly_in_bounded_memory(tmp_path: Path) -> None:
    code, err, seconds, rss = _measured(["validate", str(_billion_laughs(tmp_path / "laughs.xlsx"))])
    assert code == 2 and "DTD" in err and "Traceback" not in err
    assert seconds < 10 and rss < 300, (seconds, rss)


def test_zip_bomb_is_refused_quickly_in_bounded_memory(tmp_path: Path) -> None:
    bomb = _workbook(tmp_path / "bomb.xlsx", None, bomb_bytes=1 * 2**30)
    assert bomb.stat().st_size < 5 * 2**20, "a small file ..."
    code, err, seconds, rss = _measured(["validate", str(bomb)])
    assert code == 2 and "decompression bomb" in err and "Traceback" not in err
    assert seconds < 10 and rss < 300, (seconds, rss)


HOSTILE_CSV = {
    "nul bytes": b"config_name,spec_id\na\x00b,1\nc,2\x00\n",
    "unbalanced quote": b'config_name,spec_id\n"a,1\nb,2\n',
    "10 MB line": b"config_name,config_desc\na," + b"x" * 10_000_000 + b"\nb,ok\n",
    "mixed newlines": b"config_name,spec_id\ra,1\r\nb,2\nc,3\r",
    "binary": bytes(range(256)) * 8,
    "only newlines": b"\n\n\n",
    "header of quotes": b'""""\n',
}


@pytest.mark.parametrize("case", list(HOSTILE_CSV))
def test_hostile_csv_ends_in_rows_or_one_clear_error(case: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_bytes(HOSTILE_CSV[case])
    code = cli("validate", manifest, "--report", tmp_path / "r.csv", "--replace")  # rows are whole configs
    err = capsys.readouterr().err
    assert code in (1, 2) and "Traceback" not in err
    if code == 2:
        assert err.startswith("batchcfg: error: ") and err.count("\n") == 1
    else:
        assert {r["status"] for r in read_report(tmp_path / "r.csv")} == {"invalid"}


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400))
def test_arbitrary_bytes_as_a_csv_never_crash(tmp_path: Path, data: bytes) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_bytes(data)
    assert cli("validate", "-q", manifest, "--report", tmp_path / "r.csv") in (0, 1, 2)
    headed = tmp_path / "headed.csv"
    headed.write_bytes(b"config_name,spec_id,parameter\n" + data)
    assert cli("validate", "-q", headed, "--report", tmp_path / "r.csv") in (0, 1, 2)


# -- sandbox -----------------------------------------------------------------------------------

def test_sandbox_warns_when_bound_beyond_loopback() -> None:
    with socket.socket() as taken:  # a port in use: the sandbox warns, then fails to bind, at once
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "batchcfg", "sandbox", "--host", "0.0.0.0",
                                 "--port", str(port)], capture_output=True, text=True, env=CHILD_ENV, timeout=30)
    assert "warning" in result.stderr and "fixed test credentials" in result.stderr
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_usage_error_from_a_bad_ca_bundle(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    from batchcfg.client import Client
    from batchcfg.auth import TokenAuth

    with pytest.raises(UsageError, match="--ca-bundle"):
        Client("https://example.com", TokenAuth("t"), timeout=1, ca_bundle=bad)
