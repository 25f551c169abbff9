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
            assert sandbox.state.operations["list"] == 2 * 3 + 4, "three pages each export; a preflight each run"
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
            assert {r["error_message"] for r in read_report(tmp_path / "4.csv")} == {"deleted: the run had created it"}
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


# -- bounded, complete or saying so: a List that lies ---------------------------------------------

def lying_list(pages: Any) -> tuple[web.Application, list[int]]:
    """A server whose List answers ``pages(page, per_page)``, and whose Details answers every
    name with a valid config; and the pages List was asked for."""
    app = web.Application()
    calls: list[int] = []

    async def list_configs(request: web.Request) -> web.Response:
        page, per_page = int(request.query.get("page", "1")), int(request.query["per_page"])
        if per_page > 1:  # not the preflight's read of one config
            calls.append(page)
        return web.json_response({"is_success": True, **pages(page, per_page)})

    async def details(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        return web.json_response({"is_success": True, "config_name": name, **whole_config(len(name))})

    app.router.add_get(f"/v1/{PROJECT}/training-job-configs", list_configs)
    app.router.add_get(f"/v1/{PROJECT}/training-job-configs/{{name}}", details)
    return app, calls


def export_from(app: web.Application, tmp_path: Path, output: str = "e.csv") -> Any:
    """``export`` against ``app``, which must answer within a few seconds whatever it does."""
    async def scenario() -> Any:
        with anyio.fail_after(30):
            async with TestServer(app, host="127.0.0.1") as server:
                opts = Options.of(endpoint=str(server.make_url("")), project_id=PROJECT, rate=0, max_retries=0,
                                  report=tmp_path / "r.csv", env={"BATCHCFG_IAM_TOKEN": "t"})
                return await export(tmp_path / output, opts)

    return anyio.run(scenario)


def names(count: int, start: int = 0) -> list[dict[str, str]]:
    return [{"config_name": f"cfg-{i:05d}"} for i in range(start, start + count)]


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages of 10 names: the same paging, a hundred times fewer configs to read."""
    monkeypatch.setattr("batchcfg.export.PER_PAGE", 10)


def exported_names(path: Path) -> list[str]:
    return [row["config_name"] for row in read_report(path)]


@pytest.mark.usefixtures("small_pages")
def test_list_pages_that_repeat_stop_at_once_and_the_shortfall_is_exit_1(tmp_path: Path) -> None:
    """A server that ignores ``page``: page 1 again and again, under a count of 15."""
    app, calls = lying_list(lambda page, per_page: {"config_total_count": 15, "configs": names(per_page)})
    summary = export_from(app, tmp_path)
    assert calls == [1, 2], "the page that added nothing ended the paging"
    assert summary.counts == {"succeeded": 10} and summary.exit_code == 1
    assert exported_names(tmp_path / "e.csv") == [f"cfg-{i:05d}" for i in range(10)], "the file is written"
    [note] = summary.notes
    assert "export incomplete" in note and "counted 15 configs" in note and "gave 10 distinct names" in note


@pytest.mark.usefixtures("small_pages")
def test_without_a_count_a_repeated_full_page_may_hide_more(tmp_path: Path) -> None:
    app, calls = lying_list(lambda page, per_page: {"configs": names(per_page)})
    summary = export_from(app, tmp_path)
    assert calls == [1, 2] and summary.exit_code == 1 and summary.counts == {"succeeded": 10}
    assert "repeated names already listed" in summary.notes[0] and "no count" in summary.notes[0]


@pytest.mark.usefixtures("small_pages")
def test_a_list_that_never_ends_stops_at_the_page_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """New names on every page, and a count of a trillion: paging stops at the cap."""
    monkeypatch.setattr("batchcfg.export.MAX_LIST_PAGES", 25)
    app, calls = lying_list(lambda page, per_page: {"config_total_count": 10**12,
                                             "configs": names(per_page, (page - 1) * per_page)})
    summary = export_from(app, tmp_path)
    assert len(calls) == 25 and summary.counts == {"succeeded": 250} and summary.exit_code == 1
    assert len(exported_names(tmp_path / "e.csv")) == 250
    assert "cap of 25 pages" in summary.notes[0] and "counted 1,000,000,000,000 configs" in summary.notes[0]


@pytest.mark.usefixtures("small_pages")
def test_a_list_that_never_ends_stops_at_the_name_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("batchcfg.export.MAX_EXPORT_NAMES", 45)
    app, calls = lying_list(lambda page, per_page: {"configs": names(per_page, (page - 1) * per_page)})
    summary = export_from(app, tmp_path)
    assert calls == [1, 2, 3, 4, 5], "the fifth page crossed the cap"
    assert summary.counts == {"succeeded": 45} and summary.exit_code == 1
    assert "cap of 45 names" in summary.notes[0]


@pytest.mark.usefixtures("small_pages")
def test_a_lying_huge_count_ends_with_the_pages(tmp_path: Path) -> None:
    """25 configs under a count of a trillion: short pages, then an empty one, end the paging."""
    app, calls = lying_list(lambda page, per_page: {"config_total_count": 10**12,
                                             "configs": names(per_page, (page - 1) * per_page)[:max(0, 25 - (page - 1) * per_page)]})
    summary = export_from(app, tmp_path)
    assert calls == [1, 2, 3, 4], "a short page with names still missing: one more, then empty"
    assert summary.counts == {"succeeded": 25} and summary.exit_code == 1
    assert "counted 1,000,000,000,000 configs" in summary.notes[0] and "gave 25" in summary.notes[0]


@pytest.mark.usefixtures("small_pages")
def test_a_short_count_is_not_trusted_while_pages_are_full(tmp_path: Path) -> None:
    """25 configs under a count of 10: every one is exported (exit 0)."""
    app, calls = lying_list(lambda page, per_page: {"config_total_count": 10,
                                             "configs": names(per_page, (page - 1) * per_page)[:max(0, 25 - (page - 1) * per_page)]})
    summary = export_from(app, tmp_path)
    assert calls == [1, 2, 3] and summary.counts == {"succeeded": 25} and summary.exit_code == 0
    assert len(exported_names(tmp_path / "e.csv")) == 25 and not summary.notes


@pytest.mark.usefixtures("small_pages")
def test_a_count_that_is_a_whole_number_of_pages_reads_one_empty_page(tmp_path: Path) -> None:
    app, calls = lying_list(lambda page, per_page: {"config_total_count": 20,
                                             "configs": names(per_page, (page - 1) * per_page) if page <= 2 else []})
    summary = export_from(app, tmp_path)
    assert calls == [1, 2, 3] and summary.exit_code == 0 and summary.counts == {"succeeded": 20}


@pytest.mark.usefixtures("small_pages")
def test_a_server_that_repeats_its_last_page_past_the_end_is_complete(tmp_path: Path) -> None:
    """Some servers clamp ``page``: past the end they answer the last page again."""
    app, calls = lying_list(lambda page, per_page: {"config_total_count": 20,
                                             "configs": names(per_page, (min(page, 2) - 1) * per_page)})
    summary = export_from(app, tmp_path)
    assert calls == [1, 2, 3] and summary.exit_code == 0 and summary.counts == {"succeeded": 20}
    assert not summary.notes


@pytest.mark.usefixtures("small_pages")
def test_list_entries_without_a_name_make_the_export_incomplete(tmp_path: Path) -> None:
    app, calls = lying_list(lambda page, per_page: {"config_total_count": 3, "configs": [
        {"config_name": "a"}, {"config_name": 7}, {}, "b", {"config_name": "c"}] if page == 1 else []})
    summary = export_from(app, tmp_path)
    assert summary.counts == {"succeeded": 2} and summary.exit_code == 1
    assert "3 entries of List had no config name" in summary.notes[0]


def test_the_caps_are_documented() -> None:
    from batchcfg import export as exporting

    limits = (Path(__file__).resolve().parents[1] / "docs" / "limits.md").read_text(encoding="utf-8")
    [line] = [line for line in limits.splitlines() if line.startswith("| `export`'s List calls")]
    assert f"{exporting.MAX_LIST_PAGES:,} pages" in line and f"{exporting.MAX_EXPORT_NAMES:,} names" in line


# -- reproducible: the same configs, the same bytes ---------------------------------------------------

def test_two_exports_of_the_same_configs_are_byte_identical(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serve(SandboxConfig()) as sandbox:
            for i in range(40):
                sandbox.seed(f"cfg-{i:02d}", whole_config(i))
            for take in (1, 2):
                for suffix in (".csv", ".xlsx", ".jsonl"):
                    summary = await export(tmp_path / f"{take}{suffix}",
                                           options(sandbox, tmp_path / f"r{take}{suffix}.csv"))
                    assert summary.exit_code == 0
                await anyio.sleep(1.1 if take == 1 else 0)  # the second export in another second: no time shows

    anyio.run(scenario)
    for suffix in (".csv", ".xlsx", ".jsonl"):
        assert (tmp_path / f"1{suffix}").read_bytes() == (tmp_path / f"2{suffix}").read_bytes(), suffix
    assert {row["#exported"] for row in read_report(tmp_path / "1.csv")} == {"batchcfg export"}
    import zipfile

    with zipfile.ZipFile(tmp_path / "1.xlsx") as archive:
        assert "<dcterms:created xsi:type=\"dcterms:W3CDTF\">1980-01-01T00:00:00Z" in \
            archive.read("docProps/core.xml").decode()
        assert {entry.date_time[:3] for entry in archive.infolist()} <= {(1980, 1, 1), (1980, 1, 31)}


# -- exact: control characters, and what a format cannot hold ------------------------------------------

CONTROL = "a\x01b\rc\x00d\x7fe\x1bf\x0bg"  # CR too: XML would turn a raw one into LF


@pytest.mark.parametrize("suffix", [".csv", ".xlsx", ".jsonl"])
def test_control_characters_round_trip_exactly(suffix: str, tmp_path: Path) -> None:
    """Export -> plan is ``unchanged``: values with control characters (parameter values, tabs and
    line breaks in a description, a quote after white space) come back as they were, never U+FFFD."""
    from batchcfg.manifest import open_manifest

    values = {"p-ctl": CONTROL, "p-cr": "line\rline", "p-crlf": "x\r\ny", "p-escape": "_x000D_ and _x0041_"}

    async def scenario() -> None:
        async with serve(SandboxConfig()) as sandbox:
            for i, (name, value) in enumerate(values.items()):
                sandbox.seed(name, {**whole_config(i), "parameter": [{"label": "v", "value": value}]})
            sandbox.seed("d-text", {**whole_config(4), "config_desc": "tab\there\nnew line", "user_command": "a\tb\nc"})
            sandbox.seed("d-quote", {**whole_config(6), "config_desc": "  'quoted after spaces"})
            output = tmp_path / f"e{suffix}"
            summary = await export(output, options(sandbox, tmp_path / "r.csv"))
            assert summary.counts == {"succeeded": 6} and summary.exit_code == 0 and not summary.notes
            summary = await plan(output, options(sandbox, tmp_path / "plan.csv"))
            assert summary.counts == {"unchanged": 6}, read_report(tmp_path / "plan.csv")

    anyio.run(scenario)
    rows = {row.cells["config_name"]: row.cells for row in open_manifest(tmp_path / f"e{suffix}").rows()}
    for name, value in values.items():
        assert rows[name]["param.v"] == value, name
    assert rows["d-text"]["config_desc"] == "tab\there\nnew line"


def test_control_characters_apply_refuses_are_written_exactly_and_named(tmp_path: Path) -> None:
    """A description with U+0001 (the manifest's rules refuse control characters there): written
    as it is, never as U+FFFD; the export's summary says plan will call the row invalid."""
    from batchcfg.manifest import open_manifest

    async def scenario() -> None:
        async with serve(SandboxConfig()) as sandbox:
            sandbox.seed("bad", {**whole_config(1), "config_desc": "a\x01b"})
            sandbox.seed("good", whole_config(2))
            for suffix in (".csv", ".xlsx"):
                summary = await export(tmp_path / f"e{suffix}", options(sandbox, tmp_path / f"r{suffix}.csv"))
                assert summary.counts == {"succeeded": 2} and summary.exit_code == 0
                assert len(summary.notes) == 1 and "bad (config_desc: contains a control character)" in summary.notes[0]
                [row] = [r for r in open_manifest(tmp_path / f"e{suffix}").rows() if r.cells["config_name"] == "bad"]
                assert row.cells["config_desc"] == "a\x01b"
                summary = await plan(tmp_path / f"e{suffix}", options(sandbox, tmp_path / f"p{suffix}.csv"))
                assert summary.counts == {"unchanged": 1, "invalid": 1} and not sandbox.state.puts

    anyio.run(scenario)


@pytest.mark.parametrize(("value", "reason"), [("a\ufffeb", "U+FFFE"), ("x" * 40_000, "more than an Excel cell")])
def test_what_an_xlsx_cannot_hold_is_refused_for_xlsx_and_kept_in_jsonl(value: str, reason: str,
                                                                         tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serve(SandboxConfig()) as sandbox:
            sandbox.seed("odd", {**whole_config(1), "parameter": [{"label": "v", "value": value}]})
            sandbox.seed("plain", whole_config(2))
            summary = await export(tmp_path / "e.xlsx", options(sandbox, tmp_path / "r.csv"))
            assert summary.counts == {"succeeded": 1, "invalid": 1} and summary.exit_code == 1
            [refused] = [r for r in read_report(tmp_path / "r.csv") if r["status"] == "invalid"]
            assert refused["config_name"] == "odd" and reason in refused["error_message"]
            assert ".jsonl" in refused["error_message"]
            assert [r["config_name"] for r in read_report(tmp_path / "e.xlsx")] == ["plain"]
            summary = await export(tmp_path / "e.jsonl", options(sandbox, tmp_path / "r2.csv"))
            assert summary.counts == {"succeeded": 2} and summary.exit_code == 0
            summary = await plan(tmp_path / "e.jsonl", options(sandbox, tmp_path / "plan.csv"))
            assert summary.counts == {"unchanged": 1, **({"unchanged": 2} if "U+" in reason else {"invalid": 1})}

    anyio.run(scenario)


@pytest.mark.usefixtures("small_pages")
def test_an_incomplete_export_through_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The summary names the shortfall, the file is written, and the exit code is 1."""
    app, calls = lying_list(lambda page, per_page: {"config_total_count": 15, "configs": names(per_page)})
    monkeypatch.setenv("BATCHCFG_IAM_TOKEN", "t")

    async def scenario() -> int:
        async with TestServer(app, host="127.0.0.1") as server:
            return await anyio.to_thread.run_sync(
                cli, "export", tmp_path / "e.xlsx", "--endpoint", str(server.make_url("")).rstrip("/"),
                "--project-id", PROJECT, "--rate", "0", "--report", tmp_path / "r.csv")

    code = anyio.run(scenario)
    err = capsys.readouterr().err
    assert code == 1 and calls == [1, 2], err
    assert "batchcfg: export incomplete: List counted 15 configs (config_total_count) but gave 10" in err
    assert "WARNING: export incomplete" in err and "Traceback" not in err
    assert len(read_report(tmp_path / "e.xlsx")) == 10


def test_spreadsheet_safe_keeps_control_characters_only_when_exact() -> None:
    from batchcfg.files import spreadsheet_safe

    assert spreadsheet_safe("a\x01b\x7f", exact=True) == "a\x01b\x7f"
    assert spreadsheet_safe("a\x01b\x7f") == "a\ufffdb\ufffd", "reports: as before"
    assert spreadsheet_safe("  'x", exact=True) == "'  'x", "the loader strips, then drops one quote"
    assert spreadsheet_safe("\r'x", exact=True) == "'\r'x"
