"""Read-modify-write: configs as read back, a row laid over them, and what a PUT would change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from batchcfg import Options, apply, errors, plan, rollback, validate
from batchcfg.backup import read_backup
from batchcfg.cells import check_row
from batchcfg.change import parse
from batchcfg.merge import Patch, sendable, writable_body
from batchcfg.sandbox import SandboxConfig, serve
from batchcfg.schema import BODY_FIELDS, check_body

from .conftest import PROJECT, changes, read_report, sandbox_options, write_csv

# A whole config holding a value in every writable field the API has (both code alternatives
# cannot be set at once, nor all data alternatives: the groups are covered below).
WHOLE = {"config_desc": "kept", "worker_server_num": 1, "app_url": "/bucket/code/",
         "boot_file_url": "/bucket/code/train.py", "parameter": [{"label": "lr", "value": "0.01"}],
         "spec_id": 1, "data_url": "/bucket/data/", "engine_id": 4, "train_url": "/bucket/out/",
         "log_url": "/bucket/log/", "user_image_url": "swr.example.com/team/image:1.0",
         "user_command": "python train.py"}
OTHERS = {"model_id": 7, "dataset_id": "ds", "dataset_version_id": "v1",
          "data_source": [{"type": "obs", "data_url": "/bucket/src/"}]}


def patch_of(**cells: str) -> Patch:
    checked = check_row({"config_name": "c", **cells})
    assert checked.ok, checked.problems
    return Patch(checked.body, checked.labels, checked.unset)


@pytest.mark.parametrize("field", [f for f in BODY_FIELDS if f in WHOLE or f in OTHERS])
def test_no_field_the_row_does_not_name_is_lost(field: str) -> None:
    """For each writable field: a config holding it, a row naming another field only."""
    current = dict(WHOLE)
    if field in ("model_id",):
        current = {k: v for k, v in WHOLE.items() if k not in ("app_url", "boot_file_url")} | {"model_id": 7}
    elif field in ("dataset_id", "dataset_version_id"):
        current = {k: v for k, v in WHOLE.items() if k != "data_url"} | {"dataset_id": "ds", "dataset_version_id": "v1"}
    elif field == "data_source":
        current = {k: v for k, v in WHOLE.items() if k != "data_url"} | {"data_source": OTHERS["data_source"]}
    named = "spec_id" if field == "worker_server_num" else "worker_server_num"
    body = patch_of(**{named: "3"}).over(current)
    assert body[field] == sendable(current)[field]
    assert changes(current, body) == [f"{named}: {current[named]} -> 3"]
    assert check_body(body) == []


def test_an_empty_cell_keeps_and_unset_clears() -> None:
    body = patch_of(config_desc="", log_url="", unset="train_url param.lr").over(WHOLE)
    assert body["config_desc"] == "kept" and body["log_url"] == "/bucket/log/"
    assert body["train_url"] == "" and body["parameter"] == [], "sent empty: a merging server clears it too"
    assert changes(WHOLE, body) == ['parameter.lr: "0.01" -> (unset)', 'train_url: "/bucket/out/" -> (unset)']
    assert check_body(body) == []


def test_param_columns_set_one_label_and_a_parameter_cell_replaces_the_list() -> None:
    current = {**WHOLE, "parameter": [{"label": "lr", "value": "0.01"}, {"label": "epochs", "value": "3"}]}
    body = patch_of(**{"param.epochs": "5", "param.bs": "8"}).over(current)
    assert body["parameter"] == [{"label": "lr", "value": "0.01"}, {"label": "epochs", "value": "5"},
                                 {"label": "bs", "value": "8"}]
    body = patch_of(parameter='[{"label": "bs", "value": 8}]').over(current)
    assert body["parameter"] == [{"label": "bs", "value": "8"}]


@pytest.mark.parametrize("cells, removed", [
    ({"dataset_id": "d2", "dataset_version_id": "v2"}, ["data_url"]),
    ({"data_source": '[{"type": "dataset", "dataset_id": "d", "dataset_version": "v"}]'}, ["data_url"]),
    ({"model_id": "9"}, ["app_url", "boot_file_url"]),
])
def test_one_alternative_of_a_group_drops_the_others(cells: dict[str, str], removed: list[str]) -> None:
    body = patch_of(**cells).over(WHOLE)
    assert all(body.get(name, "") == "" for name in removed), "sent empty, or left out (model_id)"
    assert [c for c in changes(WHOLE, body) if c.endswith("(unset)")] == [f'{f}: "{WHOLE[f]}" -> (unset)' for f in removed]
    assert check_body(body) == []


def test_the_merged_body_is_checked_by_the_same_rules() -> None:
    """app_url alone over a built-in algorithm: the merged body lacks boot_file_url."""
    current = {k: v for k, v in WHOLE.items() if k not in ("app_url", "boot_file_url")} | {"model_id": 7}
    body = patch_of(app_url="/bucket/new/").over(current)
    assert [(p.column, p.code) for p in check_body(body)] == [("boot_file_url", errors.CONFLICT)]


def test_a_partial_row_is_valid_offline_and_says_what_waits_for_the_config() -> None:
    checked = check_row({"config_name": "c", "worker_server_num": "3"})
    assert checked.ok and checked.body == {"worker_server_num": 3}
    assert {p.column for p in checked.deferred} == {"spec_id", "model_id", "data_url"}
    whole = check_row({"config_name": "c", "worker_server_num": "3"}, replace=True)
    assert {p.column for p in whole.problems} == {"spec_id", "model_id", "data_url"}


@pytest.mark.parametrize("unset, code", [("nonsense", errors.FORMAT), ("spec_id", errors.REQUIRED),
                                         ("log_url", errors.CONFLICT), ("param.lr", errors.CONFLICT)])
def test_bad_unset_cells(unset: str, code: str) -> None:
    checked = check_row({"config_name": "c", "log_url": "/bucket/l/", "param.lr": "1", "unset": unset})
    assert [(p.column, p.code) for p in checked.problems] == [("unset", code)]


def test_patches_round_trip_and_a_whole_row_encodes_as_its_body() -> None:
    patch = patch_of(worker_server_num="2", unset="log_url", **{"param.lr": "0.1"})
    assert Patch.decode(patch.encode()) == patch
    whole = check_row({"config_name": "c", "worker_server_num": "2", "spec_id": "1", "model_id": "7",
                       "data_url": "/bucket/d/"}, replace=True)
    assert Patch(whole.body).encode() == b'{"worker_server_num":2,"model_id":7,"spec_id":1,"data_url":"/bucket/d/"}'


@pytest.mark.parametrize("details, body", [
    ({"config_name": "x", "worker_server_num": "2", "spec_id": 1, "model_id": 0, "app_url": "/b/a/",
      "boot_file_url": "/b/a/t.py", "data_url": "/b/d/", "engine_name": "TF", "create_time": 1,
      "engine_id": 1, "config_desc": "", "log_url": "",
      "parameter": [{"label": "lr", "value": 0.01}, {"label": "on", "value": True}]},
     {"worker_server_num": 2, "app_url": "/b/a/", "boot_file_url": "/b/a/t.py",
      "parameter": [{"label": "lr", "value": 0.01}, {"label": "on", "value": True}], "spec_id": 1,
      "data_url": "/b/d/", "engine_id": 1}),
    ({"worker_server_num": 1, "spec_id": 1, "model_id": 5, "app_url": "/b/a/", "data_url": "/b/d/",
      "data_source": [{"type": "obs", "data_url": "/b/d/"}], "dataset_id": "", "train_url": None},
     {"worker_server_num": 1, "model_id": 5, "spec_id": 1, "data_source": [{"type": "obs", "data_url": "/b/d/"}]}),
    ({"worker_server_num": 1, "spec_id": 1, "dataset_id": "d", "dataset_version_id": "v", "data_url": "/b/x/"},
     {"worker_server_num": 1, "spec_id": 1, "dataset_id": "d", "dataset_version_id": "v"}),
])
def test_writable_body(details: dict[str, Any], body: dict[str, Any]) -> None:
    assert writable_body(details) == body


def test_changes_name_every_field_removals_included() -> None:
    current = {"worker_server_num": 1, "config_desc": "a", "parameter": [{"label": "lr", "value": "0.01"},
                                                                         {"label": "old", "value": "1"}]}
    wanted = {"worker_server_num": 2, "parameter": [{"label": "lr", "value": "0.02"}, {"label": "bs", "value": "8"}]}
    assert changes(current, wanted) == ['config_desc: "a" -> (unset)', "worker_server_num: 1 -> 2",
                                        'parameter.lr: "0.01" -> "0.02"', 'parameter.bs: (unset) -> "8"',
                                        'parameter.old: "1" -> (unset)']
    assert changes(current, current) == []


@pytest.mark.parametrize("current, wanted, changed", [
    ({"engine_id": 1}, {}, False),                      # the API's default is not a value of its own
    ({"config_desc": "", "log_url": ""}, {}, False),    # an empty string is unset
    ({"model_id": 0}, {}, False),
    ({"engine_id": 2}, {}, True),
    ({"config_desc": "  kept  "}, {"config_desc": "kept"}, False),  # cells drop surrounding white space
    ({"parameter": [{"label": "lr", "value": 0.01}]}, {"parameter": [{"label": "lr", "value": "0.010"}]}, False),
    ({"parameter": [{"label": "lr", "value": 1e-05}]}, {"parameter": [{"label": "lr", "value": "1e-5"}]}, False),
    ({"parameter": [{"label": "n", "value": 64}]}, {"parameter": [{"label": "n", "value": "064"}]}, False),
    ({"parameter": [{"label": "lr", "value": "0.01"}]}, {"parameter": [{"label": "lr", "value": "0.010"}]}, True),
    ({"parameter": [{"label": "lr", "value": 0.01}]}, {"parameter": [{"label": "lr", "value": "fast"}]}, True),
])
def test_values_compare_as_the_api_returns_them(current: dict[str, Any], wanted: dict[str, Any], changed: bool) -> None:
    """A JSON number read back compares by value; two strings compare by their text."""
    assert bool(changes(current, wanted)) is changed


# --- end to end, on a seeded sandbox -------------------------------------------------------------

def seeded_configs() -> dict[str, dict[str, Any]]:
    """Configs another client made: output, log and image paths, parameters with numeric-looking
    values, each kind of data, both kinds of code, and engine_id left unset."""
    common = {"worker_server_num": 1, "spec_id": 1, "train_url": "/bucket/out/", "log_url": "/bucket/log/",
              "parameter": [{"label": "lr", "value": "0.010"}, {"label": "decay", "value": "1e-5"},
                            {"label": "batch", "value": "064"}, {"label": "optimizer", "value": "adam"}]}
    custom = {"app_url": "/bucket/code/", "boot_file_url": "/bucket/code/train.py",
              "user_image_url": "swr.example.com/team/image:1.0", "user_command": "python train.py"}
    return {
        "url": {**common, "model_id": 7, "data_url": "/bucket/data/"},
        "dataset": {**common, **custom, "dataset_id": "ds-1", "dataset_version_id": "v1", "config_desc": "kept"},
        "source-obs": {**common, "model_id": 8, "data_source": [{"type": "obs", "data_url": "/bucket/src/"}]},
        "source-dataset": {**common, **custom, "data_source": [{"type": "dataset", "dataset_id": "d",
                                                                 "dataset_version": "v"}]},
    }


def api_view(details_answer: dict[str, Any]) -> dict[str, Any]:
    return writable_body(details_answer)


async def read_all(sandbox: Any, names: list[str]) -> dict[str, dict[str, Any]]:
    from batchcfg.auth import TokenAuth
    from batchcfg.client import Client

    async with Client(sandbox.endpoint, TokenAuth(sandbox.config.token), timeout=5) as client:
        return {name: api_view((await client.get_config(PROJECT, name)).body or {}) for name in names}


def run(command: Any, manifest: Path, sandbox: Any, report: Path, **extra: Any) -> Any:
    return command(manifest, sandbox_options(sandbox, report, token=True, **extra))


def test_a_worker_count_sheet_changes_only_the_worker_count(tmp_path: Path) -> None:
    seeds = seeded_configs()
    manifest = write_csv(tmp_path / "m.csv", ["config_name", "worker_server_num"], [[n, "4"] for n in seeds])

    async def scenario() -> None:
        async with serve(SandboxConfig()) as sandbox:
            for name, body in seeds.items():
                sandbox.seed(name, body)
            before = await read_all(sandbox, list(seeds))
            assert await run(validate_async, manifest, sandbox, tmp_path / "v.csv") == {"valid": 4}
            notes = {r["error_message"] for r in read_report(tmp_path / "v.csv")}
            assert notes == {"checked against the current config by plan and apply: spec_id: required; "
                             "model_id: set model_id, or app_url and boot_file_url; data_url: set one of "
                             "data_url, dataset_id + dataset_version_id, or data_source"}
            summary = await run(plan, manifest, sandbox, tmp_path / "plan.csv")
            assert summary.counts == {"changed": 4}
            assert {r["changes"] for r in read_report(tmp_path / "plan.csv")} == {"worker_server_num: 1 -> 4"}
            summary = await run(apply, manifest, sandbox, tmp_path / "apply.csv")
            assert summary.counts == {"succeeded": 4}
            after = await read_all(sandbox, list(seeds))
            for name in seeds:  # field by field: only worker_server_num moved
                for field in BODY_FIELDS:
                    if field != "worker_server_num":
                        assert after[name].get(field) == before[name].get(field), (name, field)
                assert changes(before[name], after[name]) == ["worker_server_num: 1 -> 4"]
            # --replace with a sheet of the required fields only: every other field would be
            # removed, and plan says so; without the flag the same sheet keeps them
            minimal = write_csv(tmp_path / "minimal.csv", ["config_name", "worker_server_num", "spec_id",
                                                           "model_id", "data_url"],
                                [[name, "4", "1", "7", "/bucket/data/"] for name in seeds])
            summary = await run(plan, minimal, sandbox, tmp_path / "replace.csv", replace=True)
            removed = {r["config_name"]: r["changes"] for r in read_report(tmp_path / "replace.csv")}
            assert summary.counts == {"changed": 4}
            assert 'log_url: "/bucket/log/" -> (unset)' in removed["url"]
            assert 'parameter.optimizer: "adam" -> (unset)' in removed["url"]
            assert 'user_image_url: "swr.example.com/team/image:1.0" -> (unset)' in removed["dataset"]
            await run(plan, minimal, sandbox, tmp_path / "merge.csv")
            kept = {r["config_name"]: r["changes"] for r in read_report(tmp_path / "merge.csv")}
            assert kept["url"] == ""
            for name, _, _, _ in (c for text in kept.values() for c in parse(text)):  # only the groups' alternatives move
                assert name in ("app_url", "boot_file_url", "model_id", "data_url", "dataset_id",
                                                 "dataset_version_id", "data_source"), name

    anyio.run(scenario)


def test_a_dataset_row_drops_data_url_and_rollback_restores_everything(tmp_path: Path) -> None:
    seeds = seeded_configs()
    manifest = write_csv(tmp_path / "m.csv", ["config_name", "dataset_id", "dataset_version_id", "param.lr"],
                         [["url", "ds-9", "v9", "0.02"], ["dataset", "ds-2", "v2", ""],
                          ["source-obs", "ds-3", "v3", ""], ["source-dataset", "", "", "0.5"]])

    async def scenario() -> None:
        async with serve(SandboxConfig()) as sandbox:
            for name, body in seeds.items():
                sandbox.seed(name, body)
            before = await read_all(sandbox, list(seeds))
            await run(plan, manifest, sandbox, tmp_path / "plan.csv")
            planned = {r["config_name"]: r["changes"] for r in read_report(tmp_path / "plan.csv")}
            assert planned["url"] == ('parameter.lr: "0.010" -> "0.02"; data_url: "/bucket/data/" -> (unset); '
                                      'dataset_id: (unset) -> "ds-9"; dataset_version_id: (unset) -> "v9"')
            assert 'data_source: [{"type":"obs","data_url":"/bucket/src/"}] -> (unset)' in planned["source-obs"]
            summary = await run(apply, manifest, sandbox, tmp_path / "apply.csv", backup=tmp_path / "b.jsonl")
            assert summary.counts == {"succeeded": 4}
            after = await read_all(sandbox, list(seeds))
            assert "data_url" not in after["url"] and (after["url"]["dataset_id"], after["url"]["dataset_version_id"]) == ("ds-9", "v9")
            assert "data_source" not in after["source-obs"] and after["source-obs"]["dataset_id"] == "ds-3"
            assert after["url"]["parameter"][1:] == before["url"]["parameter"][1:], "other labels kept"
            # rollback: every config as it was, with no conflict (engine_id unset, numbers read back)
            summary = await run(rollback, tmp_path / "b.jsonl", sandbox, tmp_path / "rb.csv")
            assert summary.counts == {"succeeded": 4}
            assert await read_all(sandbox, list(seeds)) == before
            # another client changes one config after the run: that one is a conflict
            await run(apply, manifest, sandbox, tmp_path / "again.csv", backup=tmp_path / "b2.jsonl")
            sandbox.seed("url", {**sandbox.state.configs[(PROJECT, "url")], "log_url": "/bucket/other/"})
            summary = await run(rollback, tmp_path / "b2.jsonl", sandbox, tmp_path / "rb2.csv")
            assert summary.counts == {"succeeded": 3, "conflict": 1}
            conflict = [r for r in read_report(tmp_path / "rb2.csv") if r["status"] == "conflict"][0]
            assert conflict["config_name"] == "url" and 'log_url: "/bucket/log/" -> "/bucket/other/"' in conflict["error_message"]

    anyio.run(scenario)


def test_a_rerun_after_an_interruption_sends_only_what_is_left(tmp_path: Path) -> None:
    """No --resume: the rows changed before the Ctrl-C read back as unchanged and are not sent again."""
    names = [f"c{i:02d}" for i in range(30)]
    manifest = write_csv(tmp_path / "m.csv", ["config_name", "worker_server_num"], [[n, "3"] for n in names])

    async def scenario() -> None:
        async with serve(SandboxConfig()) as sandbox:
            for name in names:
                sandbox.seed(name, seeded_configs()["url"])
            stop = anyio.Event()
            ended: list[Any] = []

            def count(outcome: Any) -> None:
                ended.append(outcome)
                if len(ended) == 10:
                    stop.set()

            options = Options.of(endpoint=sandbox.endpoint, project_id=PROJECT, rate=0, concurrency=2,
                                 report=tmp_path / "1.csv", env={"BATCHCFG_IAM_TOKEN": sandbox.config.token})
            first = await apply(manifest, options, on_outcome=count, stop=stop)
            changed_first = {r["config_name"] for r in read_report(tmp_path / "1.csv") if r["status"] == "succeeded"}
            assert first.interrupted and 0 < len(changed_first) < len(names)
            puts_before = len(sandbox.state.puts)
            second = await run(apply, manifest, sandbox, tmp_path / "2.csv", backup=tmp_path / "2.jsonl")
            sent_again = {name for _, _, name in sandbox.state.puts[puts_before:]}
            assert sent_again == set(names) - changed_first, "a PUT only for the rows not yet changed"
            assert second.counts == {"succeeded": len(names) - len(changed_first), "skipped": len(changed_first)}
            assert {r["config_name"] for r in read_backup(second.backup)} == sent_again, \
                "its backup holds only the configs it changed"

    anyio.run(scenario)


async def validate_async(manifest: Path, options: Options) -> Any:
    return validate(manifest, options).counts
