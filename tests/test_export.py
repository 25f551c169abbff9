"""export -> edit -> plan -> apply (update or create) -> rollback, between projects and regions."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import anyio
import openpyxl
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from batchcfg import Options, apply, plan, rollback
from batchcfg.commands import export
from batchcfg.sandbox import SandboxConfig, serve

from .conftest import PROJECT, cli, read_report, sandbox_options

OTHER = "0123456789abcdef0123456789abcdef"  # project Q, in another "region" (a second sandbox)


def whole_config(i: int) -> dict[str, Any]:
    """Configs of every shape: built-in or custom code, each kind of data, parameters."""
    code: dict[str, Any] = ({"model_id": 7 + i % 3} if i % 2 else
                            {"app_url": f"/code-{i % 5}/app/", "boot_file_url": f"/code-{i % 5}/app/train.py",
                             "user_image_url": "swr.example.com/team/trainer:1.0", "user_command": "python train.py"})
    data = ({"data_url": f"/data-{i % 7}/set/"}, {"dataset_id": f"ds-{i}", "dataset_version_id": "v1"},
            {"data_source": [{"type": "obs", "data_url": f"/data-{i % 4}/src/"}]})[i % 3]
    return {"config_desc": f"config {i}, 中文", "worker_server_num": 1 + i % 4, "spec_id": 1 + i % 3, **code, **data,
            "train_url": "/out-bucket/run/", "log_url": "" if i % 5 == 0 else "/log-bucket/run/",
            "parameter": [{"label": "lr", "value": "0.010"}, {"label": "epochs", "value": str(i % 50)}]}


options = functools.partial(sandbox_options, token=True)  # export runs authenticate with a token


def test_an_unedited_export_plans_unchanged(tmp_path: Path) -> None:
    """2,500 configs, more than two pages of List at 1,000; to .xlsx and to .csv; plan each."""
    async def scenario() -> None:
        async with serve(SandboxConfig()) as sandbox:
            for i in range(2500):
                sandbox.seed(f"cfg-{i:04d}", whole_config(i))
            for suffix in (".xlsx", ".csv"):
                output = tmp_path / f"export{suffix}"
                summary = await export(output, options(sandbox, tmp_path / f"export-{suffix[1:]}.csv"))
                assert summary.counts == {"succeeded": 2500} and summary.output == output
                summary = await plan(output, options(sandbox, tmp_path / f"plan-{suffix[1:]}.csv"))
                assert summary.counts == {"unchanged": 2500}
            assert sandbox.state.operations["list"] == 2 * 3, "three pages each time"
            assert not sandbox.state.puts and sandbox.state.methods.keys() == {"GET"}, "zero PUTs at the server"

    anyio.run(scenario)
    sheet = openpyxl.load_workbook(tmp_path / "export.xlsx").active
    assert sheet.freeze_panes == "A2" and sheet.auto_filter.ref
    assert sheet["A2"].value == "cfg-0000" and sheet["A2"].data_type == "s"
    header = [c.value for c in sheet[1]]
    assert sheet.cell(row=2, column=header.index("worker_server_num") + 1).data_type == "s", "text cells"


def test_editing_one_column_plans_exactly_that_column(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serve(SandboxConfig()) as sandbox:
            for i in range(20):
                sandbox.seed(f"cfg-{i:02d}", whole_config(i))
            await export(tmp_path / "e.jsonl", options(sandbox, tmp_path / "r.csv"))
            lines = [json.loads(line) for line in (tmp_path / "e.jsonl").read_text().splitlines()]
            for line in lines:
                line["param.epochs"] = "99"
            (tmp_path / "edited.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
            await plan(tmp_path / "edited.jsonl", options(sandbox, tmp_path / "plan.csv"))
            changes = {r["changes"] for r in read_report(tmp_path / "plan.csv") if r["status"] == "changed"}
            assert all(change.startswith("parameter.epochs: ") and change.endswith(' -> "99"') for change in changes)
            assert len(changes) == 20, "every row, and only its epochs"
            summary = await apply(tmp_path / "e.jsonl", options(sandbox, tmp_path / "apply.csv"))
            assert summary.counts == {"skipped": 20} and not sandbox.state.puts, "unedited: zero PUTs"

    anyio.run(scenario)


def test_export_from_p_create_in_q_then_roll_back(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serve(SandboxConfig()) as source, serve(SandboxConfig(project_id=OTHER)) as target:
            for i in range(30):
                source.seed(f"cfg-{i:02d}", whole_config(i))
            await export(tmp_path / "p.csv", options(source, tmp_path / "1.csv"))
            summary = await plan(tmp_path / "p.csv", options(target, tmp_path / "plan.csv", create_missing=True))
            assert summary.counts == {"create": 30}
            summary = await apply(tmp_path / "p.csv", options(target, tmp_path / "2.csv", create_missing=True,
                                                             backup=tmp_path / "b.jsonl"))
            assert summary.counts == {"created": 30} and summary.exit_code == 0
            assert target.state.methods["POST"] == 30 and not target.state.puts, "each config created once"
            await export(tmp_path / "q.csv", options(target, tmp_path / "3.csv"))
            assert strip_times(tmp_path / "q.csv") == strip_times(tmp_path / "p.csv")
            summary = await rollback(tmp_path / "b.jsonl", options(target, tmp_path / "4.csv"))
            assert summary.counts == {"succeeded": 30} and target.state.methods["DELETE"] == 30
            assert not target.state.configs, "rollback deleted what the run created"
            summary = await rollback(tmp_path / "b.jsonl", options(target, tmp_path / "5.csv"))
            assert summary.counts == {"skipped": 30} and target.state.methods["DELETE"] == 30
            assert {r["error_message"] for r in read_report(tmp_path / "5.csv")} == {"unchanged: already deleted"}

    anyio.run(scenario)


def test_a_created_config_changed_since_is_never_deleted_even_with_force(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serve(SandboxConfig()) as source, serve(SandboxConfig(project_id=OTHER)) as target:
            source.seed("a", whole_config(1))
            await export(tmp_path / "p.csv", options(source, tmp_path / "1.csv"))
            await apply(tmp_path / "p.csv", options(target, tmp_path / "2.csv", create_missing=True,
                                                   backup=tmp_path / "b.jsonl"))
            target.seed("a", {**target.state.configs[(OTHER, "a")], "worker_server_num": 9})
            summary = await rollback(tmp_path / "b.jsonl", options(target, tmp_path / "3.csv"))
            assert summary.counts == {"conflict": 1} and (OTHER, "a") in target.state.configs
            message = read_report(tmp_path / "3.csv")[0]["error_message"]
            assert "changed since the run created it: worker_server_num" in message
            summary = await rollback(tmp_path / "b.jsonl", options(target, tmp_path / "4.csv", force=True))
            assert summary.counts == {"conflict": 1} and target.state.configs[(OTHER, "a")]["worker_server_num"] == 9
            assert not target.state.deletes, "a delete cannot be undone: never of what differs"

    anyio.run(scenario)


def test_without_create_missing_a_missing_config_fails_its_row(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serve(SandboxConfig()) as sandbox:
            sandbox.seed("a", whole_config(1))
            await export(tmp_path / "p.csv", options(sandbox, tmp_path / "1.csv"))
            sandbox.state.configs.clear()
            summary = await apply(tmp_path / "p.csv", options(sandbox, tmp_path / "2.csv"))
            assert summary.counts == {"failed": 1}
            assert read_report(tmp_path / "2.csv")[0]["error_code"] == "ModelArts.0102"
            assert await plan(tmp_path / "p.csv", options(sandbox, tmp_path / "3.csv")) is not None
            assert read_report(tmp_path / "3.csv")[0]["status"] == "missing"

    anyio.run(scenario)


def test_an_export_writes_what_it_could_read_and_reports_the_rest(tmp_path: Path) -> None:
    """A server whose Details read fails for two configs (one 500 every time, one 403)."""
    configs = {f"c{i}": {"config_name": f"c{i}", **whole_config(i)} for i in range(6)}

    async def list_configs(request: web.Request) -> web.Response:
        return web.json_response({"is_success": True, "config_total_count": len(configs),
                                  "configs": [{"config_name": n} for n in configs]})

    async def details(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name == "c2":
            return web.json_response({"is_success": False, "error_code": "ModelArts.0010", "error_message": "down"},
                                     status=500)
        if name == "c4":
            return web.json_response({"is_success": False, "error_code": "ModelArts.0105", "error_message": "no"},
                                     status=403)
        return web.json_response({"is_success": True, **configs[name]})

    app = web.Application()
    app.router.add_get(f"/v1/{PROJECT}/training-job-configs", list_configs)
    app.router.add_get(f"/v1/{PROJECT}/training-job-configs/{{name}}", details)

    async def scenario() -> Any:
        async with TestServer(app, host="127.0.0.1") as server:
            opts = Options.of(endpoint=str(server.make_url("")), project_id=PROJECT, rate=0, max_retries=1,
                              report=tmp_path / "r.csv", env={"BATCHCFG_IAM_TOKEN": "t"})
            return await export(tmp_path / "e.csv", opts)

    summary = anyio.run(scenario)
    assert summary.counts == {"succeeded": 4, "failed": 2} and summary.exit_code == 1
    failed = {r["config_name"]: r["error_code"] for r in read_report(tmp_path / "r.csv") if r["status"] == "failed"}
    assert failed == {"c2": "ModelArts.0010", "c4": "ModelArts.0105"}
    assert [r["config_name"] for r in read_report(tmp_path / "e.csv")] == ["c0", "c1", "c3", "c5"]


def test_an_existing_output_is_not_overwritten_without_a_flag(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "e.csv"
    output.write_text("mine\n")
    assert cli("export", output, "--sandbox") == 2
    assert "exists" in capsys.readouterr().err and output.read_text() == "mine\n"
    assert cli("export", output, "--sandbox", "--overwrite", "--report", tmp_path / "r.csv") == 0
    assert output.read_text(encoding="utf-8-sig").startswith("config_name,")


def strip_times(path: Path) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k != "#exported"} for row in read_report(path)]


@pytest.mark.parametrize("suffix", [".csv", ".xlsx", ".jsonl"])
def test_a_name_pattern_and_awkward_values_round_trip(suffix: str, tmp_path: Path) -> None:
    """``--name`` with a character class; values a spreadsheet would run, or that start with a quote."""
    awkward = ["=1+2", "'quoted", "@user", "-1", "  spaced  inside", "中文"]

    async def scenario() -> None:
        async with serve(SandboxConfig()) as sandbox:
            for i, desc in enumerate(awkward):
                sandbox.seed(f"model-v{i}-x", {**whole_config(i), "config_desc": desc})
            sandbox.seed("other", whole_config(9))
            output = tmp_path / f"e{suffix}"
            summary = await export(output, options(sandbox, tmp_path / "r.csv", name_pattern="model-v[0-9]-*"))
            assert summary.counts == {"succeeded": len(awkward)}
            assert {r["error_code"] for r in read_report(tmp_path / "r.csv")} == {""}
            summary = await plan(output, options(sandbox, tmp_path / "plan.csv"))
            assert summary.counts == {"unchanged": len(awkward)}, read_report(tmp_path / "plan.csv")

    anyio.run(scenario)
