"""Read-modify-write: configs as read back, a row laid over them, and what a PUT would change."""

from __future__ import annotations

from typing import Any

import pytest

from batchcfg import errors
from batchcfg.cells import check_row
from batchcfg.merge import Patch, changes, sendable, writable_body
from batchcfg.schema import BODY_FIELDS, check_body

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
    assert changes(WHOLE, body) == ["parameter.lr: 0.01 -> (unset)", "train_url: /bucket/out/ -> (unset)"]
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
    assert [c for c in changes(WHOLE, body) if c.endswith("(unset)")] == [f"{f}: {WHOLE[f]} -> (unset)" for f in removed]
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
    assert changes(current, wanted) == ["config_desc: a -> (unset)", "worker_server_num: 1 -> 2",
                                        "parameter.lr: 0.01 -> 0.02", "parameter.bs: (unset) -> 8",
                                        "parameter.old: 1 -> (unset)"]
    assert changes(current, current) == []


@pytest.mark.parametrize("current, wanted, changed", [
    ({"engine_id": 1}, {}, False),                      # the API's default is not a value of its own
    ({"config_desc": "", "log_url": ""}, {}, False),    # an empty string is unset
    ({"model_id": 0}, {}, False),
    ({"engine_id": 2}, {}, True),
    ({"parameter": [{"label": "lr", "value": 0.01}]}, {"parameter": [{"label": "lr", "value": "0.010"}]}, False),
    ({"parameter": [{"label": "lr", "value": 1e-05}]}, {"parameter": [{"label": "lr", "value": "1e-5"}]}, False),
    ({"parameter": [{"label": "n", "value": 64}]}, {"parameter": [{"label": "n", "value": "064"}]}, False),
    ({"parameter": [{"label": "lr", "value": "0.01"}]}, {"parameter": [{"label": "lr", "value": "0.010"}]}, True),
    ({"parameter": [{"label": "lr", "value": 0.01}]}, {"parameter": [{"label": "lr", "value": "fast"}]}, True),
])
def test_values_compare_as_the_api_returns_them(current: dict[str, Any], wanted: dict[str, Any], changed: bool) -> None:
    """A JSON number read back compares by value; two strings compare by their text."""
    assert bool(changes(current, wanted)) is changed
