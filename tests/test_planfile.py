"""Saved plans (batchcfg.planfile): a reviewable file, applied whole or not at all.

- The plan holds every row, in row order, with its structured changes; its header has the row
  count, a checksum, the counts and the headline; ``before`` and ``send`` use the same JSON types.
- A cut-off, broken, mistyped, miscounted or damaged plan, or one too large, is refused (exit 2)
  before anything is sent, naming the line; so are the options a plan fixes.
- Rows the plan holds as missing, invalid or failed make ``apply`` of it exit 1, as ``plan`` did.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from batchcfg import apply, plan
from batchcfg.errors import UsageError
from batchcfg.planfile import MAX_LINE_BYTES
from batchcfg.sandbox import RunningSandbox, SandboxConfig, serve

from .conftest import PROJECT, cli, read_report, sandbox_options, seed, valid_manifest, write_csv

NAMES = ["c0", "c1", "c2", "c3"]


def manifest(tmp_path: Path) -> Path:
    """Rows that change a worker count and a parameter, one that names a config that does not
    exist, and one invalid row."""
    return write_csv(tmp_path / "m.csv", ["config_name", "worker_server_num", "param.lr"],
                     [["c0", "4", "0.5"], ["c1", "4", ""], ["nope", "4", ""], ["c2", "0", ""], ["c3", "2", ""]])


def make_plan(tmp_path: Path, sandbox: RunningSandbox, name: str = "plan.jsonl") -> Any:
    return plan(manifest(tmp_path), sandbox_options(sandbox, tmp_path / f"{name}.csv", plan_out=tmp_path / name))


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_a_saved_plan_holds_every_row_with_its_changes_and_a_checksummed_header(tmp_path: Path) -> None:
    async def scenario() -> Any:
        async with serve(SandboxConfig()) as sandbox:
            seed(sandbox, NAMES)
            sandbox.seed("c0", {**sandbox.state.configs[(PROJECT, "c0")],
                                "parameter": [{"label": "lr", "value": "0.1"}, {"label": "n", "value": "64"}]})
            return await make_plan(tmp_path, sandbox, "plan.json")  # .json is taken as well

    summary = anyio.run(scenario)
    assert summary.counts == {"changed": 2, "unchanged": 1, "missing": 1, "invalid": 1} and summary.exit_code == 1
    header, *rows = lines(tmp_path / "plan.json")
    body = b"".join(line + b"\n" for line in (tmp_path / "plan.json").read_bytes().splitlines()[1:])
    assert header["batchcfg_plan"] == 2 and header["rows"] == 5 and header["sha256"] == hashlib.sha256(body).hexdigest()
    assert header["counts"] == {"changed": 2, "unchanged": 1, "missing": 1, "invalid": 1}
    assert header["headline"] == {"create": 0, "change": 2, "unchanged": 1, "missing": 1, "invalid": 1, "conflict": 0,
                                  "lose_a_value": 0}
    assert [(r["row"], r["config_name"], r["status"]) for r in rows] == [
        (2, "c0", "changed"), (3, "c1", "changed"), (4, "nope", "missing"), (5, "c2", "invalid"), (6, "c3", "unchanged")]
    c0 = rows[0]
    assert c0["changes"] == [{"field": "worker_server_num", "label": None, "kind": "change", "before": 2, "after": 4},
                             {"field": "parameter", "label": "lr", "kind": "change", "before": "0.1", "after": "0.5"}]
    assert c0["before"]["parameter"] == [{"label": "lr", "value": "0.1"}, {"label": "n", "value": "64"}]
    assert c0["send"]["parameter"] == [{"label": "lr", "value": "0.5"}, {"label": "n", "value": "64"}], \
        "the same JSON types as before: a JSON diff shows only what changes"
    assert rows[2]["error_code"] == "ModelArts.0102" and "send" not in rows[2]
    assert rows[3]["error_code"] == "BATCHCFG.RANGE"


def test_applying_a_plan_with_missing_and_invalid_rows_says_so_and_exits_1(tmp_path: Path) -> None:
    async def scenario() -> Any:
        async with serve(SandboxConfig()) as sandbox:
            seed(sandbox, NAMES)
            await make_plan(tmp_path, sandbox)
            return await apply(tmp_path / "plan.jsonl", sandbox_options(sandbox, tmp_path / "a.csv")), sandbox

    summary, sandbox = anyio.run(scenario)
    assert summary.counts == {"succeeded": 2, "missing": 1, "invalid": 1, "skipped": 1} and summary.exit_code == 1
    records = {r["config_name"]: r for r in read_report(tmp_path / "a.csv")}
    assert records["nope"]["error_message"].startswith("in the saved plan: ")
    assert sorted(name for _, _, name in sandbox.state.puts) == ["c0", "c1"]


def test_plan_exit_codes_with_missing_rows(tmp_path: Path, aksk_env: None) -> None:
    """Every name mistyped: not "nothing to do" (exit 1, with --detailed-exitcode too); with
    --create-missing they are configs to create (3); all unchanged is 0."""
    missing = valid_manifest(tmp_path / "typo.csv", ["resnt", "bret"])
    same = write_csv(tmp_path / "same.csv", ["config_name", "worker_server_num"], [["c0", "2"], ["c1", "2"]])

    async def scenario() -> list[int]:
        async with serve(SandboxConfig()) as sandbox:
            seed(sandbox, NAMES)
            codes = []
            for number, (sheet, *flags) in enumerate([(missing,), (missing, "--detailed-exitcode"),
                                                      (missing, "--create-missing", "--detailed-exitcode"),
                                                      (same, "--detailed-exitcode")]):
                codes.append(await anyio.to_thread.run_sync(
                    cli, "plan", sheet, "--endpoint", sandbox.endpoint, "--project-id", PROJECT, *flags,
                    "--report", tmp_path / f"{number}.csv"))
            return codes

    assert anyio.run(scenario) == [1, 1, 3, 0]


def corrupt(path: Path, how: str) -> None:
    """Damage a saved plan as a cut-off copy, a careless edit or a bad disk would."""
    data = path.read_bytes()
    header, *rows = data.splitlines(keepends=True)
    if how == "cut off":
        path.write_bytes(data[: len(data) - len(rows[-1]) // 2])
    elif how == "broken line":
        path.write_bytes(header + rows[0] + b'{"row": 3, "project_\n' + b"".join(rows[2:]))
    elif how == "not an object":
        path.write_bytes(header + rows[0] + b"[1, 2, 3]\n" + b"".join(rows[2:]))
    elif how == "a row dropped":
        path.write_bytes(header + b"".join(rows[1:]))
    elif how == "a byte changed":
        path.write_bytes(data.replace(b'"after":4', b'"after":5', 1))
    elif how in ("row as text", "send as a list", "changes as text", "a body against the rules"):
        first = json.loads(rows[0])
        first.update({"row as text": {"row": "2"}, "send as a list": {"send": [1]}, "changes as text": {"changes": "x"},
                      "a body against the rules": {"send": {**first["send"], "worker_server_num": 0}}}[how])
        body = [json.dumps(first).encode() + b"\n", *rows[1:]]
        fixed = json.loads(header) | {"sha256": hashlib.sha256(b"".join(body)).hexdigest()}  # a careful editor
        path.write_bytes(json.dumps(fixed).encode() + b"\n" + b"".join(body))
    elif how == "a huge line":
        path.write_bytes(header + b'{"row": 2, "x": "' + b"a" * (MAX_LINE_BYTES + 10) + b'"}\n')


@pytest.mark.parametrize("how, says", [
    ("cut off", "line 6: not JSON"), ("broken line", "line 3: not JSON"),
    ("not an object", "line 3: not a planned row"), ("a row dropped", "damaged or cut off (4 rows, its header says 5)"),
    ("a byte changed", "damaged or cut off (its rows do not match the header's checksum)"),
    ("row as text", "line 2: row: not a row number"), ("send as a list", "line 2: send: not a body"),
    ("changes as text", "line 2: changes: not a list of changes"),
    ("a body against the rules", "line 2: send breaks the API's rules (worker_server_num: 0 is not between"),
    ("a huge line", "line 2 is longer than 4 MiB"),
])
def test_a_damaged_plan_is_refused_whole_before_anything_is_sent(how: str, says: str, tmp_path: Path) -> None:
    async def scenario() -> Any:
        async with serve(SandboxConfig()) as sandbox:
            seed(sandbox, NAMES)
            await make_plan(tmp_path, sandbox)
            corrupt(tmp_path / "plan.jsonl", how)
            requests = len(sandbox.state.starts)
            with pytest.raises(UsageError) as refused:
                await apply(tmp_path / "plan.jsonl", sandbox_options(sandbox, tmp_path / "a.csv"))
            assert len(sandbox.state.starts) == requests, "nothing sent, nothing read"
            return str(refused.value)

    message = anyio.run(scenario)
    assert says in message and "\n" not in message, message
    assert not list(tmp_path.glob("a*.csv")) and not list(tmp_path.glob("*.journal.jsonl"))


def test_the_options_a_plan_fixes_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              aksk_env: None) -> None:
    async def scenario() -> None:
        async with serve(SandboxConfig()) as sandbox:
            seed(sandbox, NAMES)
            await make_plan(tmp_path, sandbox)
            for flags, says in ((["--project-id", "0" * 32], "--project-id: not for a saved plan"),
                                (["--replace"], "--replace: not for a saved plan"),
                                (["--sheet", "x"], "--sheet: not for a saved plan")):
                code = await anyio.to_thread.run_sync(cli, "apply", tmp_path / "plan.jsonl", "--endpoint",
                                                      sandbox.endpoint, *flags, "--report", tmp_path / "a.csv")
                assert code == 2 and says in capsys.readouterr().err
            assert not sandbox.state.puts

    anyio.run(scenario)


def test_a_plan_keeps_rows_not_sent_as_the_manifest_had_them_and_applies(tmp_path: Path) -> None:
    """An invalid row may have no name, a name against the rules or one another row has: the plan
    keeps it as it was (the reviewer sees the cell), and applying the plan reports it again."""
    sheet = write_csv(tmp_path / "m.csv", ["config_name", "worker_server_num"],
                      [["c0", "4"], ["", "4"], ["bad name!", "4"], ["c1", "4"], ["c1", "3"]])

    async def scenario() -> Any:
        async with serve(SandboxConfig()) as sandbox:
            seed(sandbox, NAMES)
            planned = await plan(sheet, sandbox_options(sandbox, tmp_path / "p.csv", plan_out=tmp_path / "plan.jsonl"))
            dry = await apply(tmp_path / "plan.jsonl", sandbox_options(sandbox, tmp_path / "d.csv", dry_run=True))
            applied = await apply(tmp_path / "plan.jsonl", sandbox_options(sandbox, tmp_path / "a.csv"))
            return planned, dry, applied, sandbox

    planned, dry, applied, sandbox = anyio.run(scenario)
    assert planned.counts == {"changed": 1, "invalid": 4}, planned.counts
    assert dry.counts == {"valid": 1, "invalid": 4} and dry.exit_code == 1, "a dry run says what the plan holds"
    assert applied.counts == {"succeeded": 1, "invalid": 4} and applied.exit_code == 1
    report = read_report(tmp_path / "a.csv")
    assert [(r["row"], r["config_name"], r["status"]) for r in report] == [
        ("2", "c0", "succeeded"), ("3", "", "invalid"), ("4", "bad name!", "invalid"), ("5", "c1", "invalid"),
        ("6", "c1", "invalid")]
    assert [name for _, _, name in sandbox.state.puts] == ["c0"]
