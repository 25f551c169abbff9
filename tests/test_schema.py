"""Validation rules of a manifest row (docs/contract.md "Validation", docs/api.md "The Modify body").

Each rule is checked with valid and invalid cells; an invalid case asserts the problem's code
*and* the column it names. Where the documents leave the exact column open (e.g. which of two
conflicting fields is blamed), the test accepts any of the columns involved.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchcfg import errors
from batchcfg.cells import CheckedRow, check_row
from batchcfg.schema import COLUMNS, MAX_CELL_CHARS, Problem, check_body

PROJECT = "0123456789abcdef0123456789abcdef"

# A minimal valid row for each way of giving the code and the data.
BUILTIN = {"config_name": "resnet", "worker_server_num": "2", "spec_id": "1", "model_id": "5",
           "data_url": "/bucket/data/"}
CUSTOM_CODE = {"config_name": "resnet", "worker_server_num": "2", "spec_id": "1",
               "app_url": "/bucket/code/", "boot_file_url": "/bucket/code/train.py",
               "dataset_id": "38277e62", "dataset_version_id": "2ff0d6ba"}


def row(base: dict[str, str] = BUILTIN, /, **cells: str) -> CheckedRow:
    """check_row on ``base`` updated with ``cells``; a cell of ``None`` removes the column. The
    row is the whole body (``replace``): every rule of the API applies to it offline. (The rules
    on a row laid over the current config are the same ones: test_merge.py.)"""
    merged = {**base, **cells}
    return check_row({k: v for k, v in merged.items() if v is not None}, replace=True)


def found(checked: CheckedRow) -> list[tuple[str, str]]:
    return [(p.column, p.code) for p in checked.problems]


def assert_problem(checked: CheckedRow, columns: str | set[str], code: str) -> Problem:
    """Exactly one problem with ``code`` on one of ``columns`` (a name ending in ``[`` is a prefix)."""
    wanted = {columns} if isinstance(columns, str) else columns

    def matches(column: str) -> bool:
        return any(column == w or (w.endswith("[") and column.startswith(w)) for w in wanted)

    hits = [p for p in checked.problems if p.code == code and matches(p.column)]
    assert len(hits) == 1, f"want one {code} on {sorted(wanted)}, got {found(checked)}"
    return hits[0]


def assert_only_problem(checked: CheckedRow, columns: str | set[str], code: str) -> None:
    assert_problem(checked, columns, code)
    assert len(checked.problems) == 1, found(checked)


def assert_ok(checked: CheckedRow) -> None:
    assert checked.problems == (), found(checked)
    assert checked.ok


# --- baselines -----------------------------------------------------------------------------------

@pytest.mark.parametrize("cells", [
    BUILTIN,
    CUSTOM_CODE,
    {**BUILTIN, "data_url": "", "data_source": '[{"type": "obs", "data_url": "/bucket/data/"}]'},
    {**BUILTIN, "data_url": "", "data_source":
        '[{"type": "dataset", "dataset_id": "a1b2", "dataset_version": "v7"}]'},
    {**BUILTIN, "data_url": "", "data_source":
        '[{"type": "obs", "data_url": "/bkt1/x/"}, {"type": "obs", "data_url": "/bkt2/y/"}]'},
], ids=["builtin+data_url", "app+dataset", "data_source-obs", "data_source-dataset", "two-obs"])
def test_valid_rows_have_no_problems(cells):
    """The baseline rows the other tests break one rule at a time."""
    assert_ok(check_row(cells))


def test_doctest_example_body():
    """A valid row becomes a typed body in the API's field order, config_name kept aside."""
    checked = check_row(BUILTIN)
    assert checked.config_name == "resnet"
    assert checked.body == {"worker_server_num": 2, "model_id": 5, "spec_id": 1, "data_url": "/bucket/data/"}


# --- config_name ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["a", "A-b_9", "007", "resnet50-imagenet", "_", "-", "x" * 64])
def test_config_name_valid(name):
    checked = row(config_name=name)
    assert_ok(checked)
    assert checked.config_name == name
    assert "config_name" not in checked.body  # a path parameter, not a body field


@pytest.mark.parametrize("name", [
    "../x", "a/b", "%2e%2e", "x?y=1", "x#y", "a b", "a\tb", "a\x00b", "a\nb", "a\x7fb", "caf\u00e9",
    "\u00fcn\u00ef", "\u540d\u5b57", "\uff21", "\u0663", "a\u200bb", "a.b", "a:b", "a\\b", "x" * 65,
], ids=repr)
def test_config_name_bad_form(name):
    """Only 1-64 ASCII letters, digits, '_' and '-' may go into the URL path."""
    assert_only_problem(row(config_name=name), "config_name", errors.FORMAT)


@pytest.mark.parametrize("name", ["", None], ids=["empty", "no-column"])
def test_config_name_required(name):
    assert_only_problem(row(config_name=name), "config_name", errors.REQUIRED)


# --- config_desc ---------------------------------------------------------------------------------

@pytest.mark.parametrize("desc", ["x", "x" * 256, "NA", "\u4e2d\u6587\u63cf\u8ff0" * 64])
def test_config_desc_up_to_256_characters(desc):
    checked = row(config_desc=desc)
    assert_ok(checked)
    assert checked.body["config_desc"] == desc


@pytest.mark.parametrize("desc", ["x" * 257, "\u4e2d" * 257])
def test_config_desc_too_long(desc):
    assert_only_problem(row(config_desc=desc), "config_desc", errors.RANGE)


# --- integer fields ------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "value"), [("3", 3), ("3.0", 3), ("1", 1), ("2147483647", 2**31 - 1)])
def test_worker_server_num_integer(text, value):
    """`3` and Excel's `3.0` are the integer 3 in the body."""
    checked = row(worker_server_num=text)
    assert_ok(checked)
    assert checked.body["worker_server_num"] == value
    assert type(checked.body["worker_server_num"]) is int


@pytest.mark.parametrize("text", ["3.5", "abc", "1e3", "0x10", "3,0", "1_000", "\uff13", "\u0663", "NA",
                                  "null", "two"], ids=repr)
def test_worker_server_num_not_integer(text):
    assert_only_problem(row(worker_server_num=text), "worker_server_num", errors.TYPE)


@pytest.mark.parametrize("text", ["0", "-1", "0.0"])
def test_worker_server_num_at_least_one(text):
    assert_only_problem(row(worker_server_num=text), "worker_server_num", errors.RANGE)


@pytest.mark.parametrize("field", ["worker_server_num", "spec_id"])
@pytest.mark.parametrize("text", ["", None], ids=["empty", "no-column"])
def test_required_integer_fields(field, text):
    assert_only_problem(row(**{field: text}), field, errors.REQUIRED)


@pytest.mark.parametrize(("base", "field"), [(BUILTIN, "spec_id"), (BUILTIN, "model_id"),
                                             (CUSTOM_CODE, "engine_id")])
@pytest.mark.parametrize("text", ["abc", "1.5", "1e3", "0x1"])
def test_long_fields_must_be_integers(base, field, text):
    assert_only_problem(row(base, **{field: text}), field, errors.TYPE)


@pytest.mark.parametrize(("base", "field"), [(BUILTIN, "spec_id"), (BUILTIN, "model_id"),
                                             (CUSTOM_CODE, "engine_id")])
@pytest.mark.parametrize(("text", "value"), [("7", 7), ("7.0", 7), ("9223372036854775807", 2**63 - 1)])
def test_long_fields_valid(base, field, text, value):
    checked = row(base, **{field: text})
    assert_ok(checked)
    assert checked.body[field] == value and type(checked.body[field]) is int


# --- code: model_id XOR app_url + boot_file_url --------------------------------------------------

def test_code_model_id_and_app_url_conflict():
    checked = row(app_url="/bucket/code/", boot_file_url="/bucket/code/train.py")
    assert_only_problem(checked, {"model_id", "app_url", "boot_file_url"}, errors.CONFLICT)


@pytest.mark.parametrize(("cells", "columns"), [
    ({"boot_file_url": None}, {"app_url", "boot_file_url"}),
    ({"boot_file_url": ""}, {"app_url", "boot_file_url"}),
    ({"app_url": None}, {"app_url", "boot_file_url"}),
])
def test_code_app_url_and_boot_file_url_go_together(cells, columns):
    assert_only_problem(row(CUSTOM_CODE, **cells), columns, errors.CONFLICT)


def test_code_neither_is_required():
    checked = row(model_id="")
    assert_only_problem(checked, {"model_id", "app_url"}, errors.REQUIRED)


@pytest.mark.parametrize(("app", "boot"), [
    ("/bucket/code/", "/bucket/code/train.py"),
    ("/bucket/code", "/bucket/code/train.py"),
    ("/bucket/code/", "/bucket/code/tools/deep/train.py"),
    ("/bucket/", "/bucket/train.py"),
])
def test_boot_file_inside_app_url(app, boot):
    assert_ok(row(CUSTOM_CODE, app_url=app, boot_file_url=boot))


@pytest.mark.parametrize(("app", "boot"), [
    ("/bucket/code/", "/bucket/other/train.py"),
    ("/bucket/code", "/bucket/codex/train.py"),  # a prefix of the text, not of the directory
    ("/bucket/code/", "/other-bucket/code/train.py"),
    ("/bucket/code/sub/", "/bucket/code/train.py"),
])
def test_boot_file_outside_app_url(app, boot):
    checked = row(CUSTOM_CODE, app_url=app, boot_file_url=boot)
    assert_only_problem(checked, "boot_file_url", errors.CONFLICT)


def test_model_id_alone_needs_no_engine_or_code():
    checked = row(engine_id="")
    assert_ok(checked)
    assert set(checked.body) == {"worker_server_num", "model_id", "spec_id", "data_url"}


# --- data: exactly one of data_url, dataset_id + dataset_version_id, data_source -----------------

DATA_SOURCE_OBS = '[{"type": "obs", "data_url": "/bucket/d/"}]'


@pytest.mark.parametrize(("cells", "columns"), [
    ({"dataset_id": "a", "dataset_version_id": "b"}, {"data_url", "dataset_id", "dataset_version_id"}),
    ({"data_source": DATA_SOURCE_OBS}, {"data_url", "data_source"}),
    ({"data_url": "", "dataset_id": "a", "dataset_version_id": "b", "data_source": DATA_SOURCE_OBS},
     {"dataset_id", "dataset_version_id", "data_source"}),
], ids=["url+dataset", "url+source", "dataset+source"])
def test_data_alternatives_exclude_each_other(cells, columns):
    assert_only_problem(row(**cells), columns, errors.CONFLICT)


def test_data_none_is_required():
    assert_only_problem(row(data_url=""), {"data_url", "dataset_id", "data_source"}, errors.REQUIRED)


@pytest.mark.parametrize("cells", [{"dataset_version_id": None}, {"dataset_id": None}],
                         ids=["id-without-version", "version-without-id"])
def test_dataset_id_and_version_go_together(cells):
    checked = row(CUSTOM_CODE, **cells)
    assert_only_problem(checked, {"dataset_id", "dataset_version_id"}, errors.CONFLICT)


# --- data_source shape ---------------------------------------------------------------------------

def source(text: str) -> CheckedRow:
    return row(data_url="", data_source=text)


@pytest.mark.parametrize("text", ["not json", "[{'type': 'obs'}]", "[", '[{"type": "obs",}]', "NaN"])
def test_data_source_not_json(text):
    assert_only_problem(source(text), "data_source", errors.TYPE)


@pytest.mark.parametrize("text", ['{"type": "obs", "data_url": "/bucket/d/"}', '"/bucket/d/"', "3", "[]"])
def test_data_source_not_an_array(text):
    assert_only_problem(source(text), "data_source", errors.TYPE)


def test_data_source_json_null_is_not_an_array():
    """`null` typed in the cell is text, not "not set": a wrong shape."""
    assert_problem(source("null"), "data_source", errors.TYPE)


@pytest.mark.parametrize("text", ['["/bucket/d/"]', "[1]", "[null]", '[["obs"]]'])
def test_data_source_entries_must_be_objects(text):
    assert_only_problem(source(text), {"data_source", "data_source["}, errors.TYPE)


def test_data_source_unknown_key():
    text = '[{"type": "obs", "data_url": "/bucket/d/", "path": "/x/"}]'
    assert_only_problem(source(text), {"data_source", "data_source["}, errors.TYPE)


@pytest.mark.parametrize("text", [
    '[{"type": "dataset", "dataset_id": 1, "dataset_version": 2}]',
    '[{"type": "dataset", "dataset_id": "a", "dataset_version": 2}]',
    '[{"type": "obs", "data_url": "/bucket/d/", "dataset_version": 0.5}]',
], ids=["both-ints", "version-int", "float"])
def test_data_source_values_must_be_strings(text):
    """A number where the API takes a String is a wrong JSON shape (check_body agrees)."""
    assert_problem(source(text), {"data_source", "data_source["}, errors.TYPE)
    assert_problem_in_body(json.loads(text))


def assert_problem_in_body(entries):
    body = {"worker_server_num": 1, "spec_id": 1, "model_id": 5, "data_source": entries}
    assert any(p.code == errors.TYPE and p.column.startswith("data_source") for p in check_body(body))


@pytest.mark.parametrize("text", ['[{"type": "obs"}]', '[{"type": "obs", "data_url": ""}]'])
def test_data_source_obs_needs_data_url(text):
    assert_only_problem(source(text), {"data_source", "data_source["}, errors.REQUIRED)


@pytest.mark.parametrize(("text", "codes"), [
    ('[{"type": "dataset", "dataset_id": "a"}]', {errors.CONFLICT}),
    ('[{"type": "dataset", "dataset_version": "v"}]', {errors.CONFLICT}),
    ('[{"type": "dataset"}]', {errors.CONFLICT, errors.REQUIRED}),
])
def test_data_source_dataset_needs_id_and_version(text, codes):
    checked = source(text)
    assert len(checked.problems) == 1, found(checked)
    problem = checked.problems[0]
    assert problem.code in codes and problem.column.startswith("data_source"), found(checked)


@pytest.mark.parametrize("text", [
    '[{"type": "obs", "data_url": "/bucket/d/", "dataset_id": "a"}]',
    '[{"type": "obs", "data_url": "/bucket/d/", "dataset_id": "a", "dataset_version": "v"}]',
    '[{"type": "dataset", "dataset_id": "a", "dataset_version": "v", "data_url": "/bucket/d/"}]',
])
def test_data_source_entry_mixes_kinds(text):
    assert_only_problem(source(text), {"data_source", "data_source["}, errors.CONFLICT)


def test_data_source_mixing_obs_and_dataset_entries():
    text = ('[{"type": "obs", "data_url": "/bucket/d/"}, '
            '{"type": "dataset", "dataset_id": "a", "dataset_version": "v"}]')
    assert_only_problem(source(text), {"data_source", "data_source["}, errors.CONFLICT)


@pytest.mark.parametrize("text", ['[{"type": "s3", "data_url": "/bucket/d/"}]',
                                  '[{"type": "OBS ", "data_url": "/bucket/d/"}]'])
def test_data_source_unknown_type(text):
    assert_only_problem(source(text), {"data_source", "data_source["}, errors.FORMAT)


@pytest.mark.parametrize("path", ["obs://bucket/d/", "/bucket/../d/", "bucket/d/"])
def test_data_source_obs_path_form(path):
    text = json.dumps([{"type": "obs", "data_url": path}])
    assert_only_problem(source(text), {"data_source", "data_source["}, errors.FORMAT)


def test_data_source_body_is_the_parsed_array():
    checked = source('[{"type": "dataset", "dataset_id": "a1", "dataset_version": "v7"}]')
    assert_ok(checked)
    assert checked.body["data_source"] == [{"type": "dataset", "dataset_id": "a1", "dataset_version": "v7"}]


# --- OBS paths -----------------------------------------------------------------------------------

def path_row(field: str, value: str) -> CheckedRow:
    """A valid row with ``value`` in the OBS path ``field``."""
    if field == "app_url":
        boot = value.rstrip("/") + "/train.py"
        return row(CUSTOM_CODE, app_url=value, boot_file_url=boot)
    if field == "boot_file_url":
        bucket = value.split("/")[1] if value.startswith("/") else "bucket"
        return row(CUSTOM_CODE, app_url=f"/{bucket}/", boot_file_url=value)
    return row(**{field: value})


OBS_FIELDS = ["app_url", "boot_file_url", "data_url", "train_url", "log_url"]


@pytest.mark.parametrize("field", OBS_FIELDS)
@pytest.mark.parametrize("value", ["/bucket/dir/file.py", "/my-bucket.v2/a/b/c.py", "/bucket/x..y/file"])
def test_obs_path_valid(field, value):
    checked = path_row(field, value)
    assert_ok(checked)
    assert checked.body[field] == value


@pytest.mark.parametrize("field", OBS_FIELDS)
@pytest.mark.parametrize("value", [
    "obs://bucket/dir/x.py", "https://bucket.obs.example.com/dir/x.py", "s3://bucket/dir/x.py",
    "bucket/dir/x.py", "/bucket/../other/x.py", "/bucket/dir/../../x.py", "/bucket/dir/..",
    "/bucket/./dir/x.py", "/../bucket/x.py",
])
def test_obs_path_bad_form(field, value):
    """Paths are /bucket/...: no scheme, no '..' or '.' segments."""
    checked = path_row(field, value)
    assert (field, errors.FORMAT) in found(checked)


def test_obs_path_boot_file_is_not_a_directory():
    assert_only_problem(row(CUSTOM_CODE, boot_file_url="/bucket/code/sub/"), "boot_file_url", errors.FORMAT)


# --- parameter and param.<label> -----------------------------------------------------------------

def test_parameter_numbers_kept_as_typed():
    """`0.010` stays "0.010"; every value is sent as a string."""
    text = '[{"label": "lr", "value": 0.010}, {"label": "bs", "value": 64}, {"label": "eps", "value": 1E-08},' \
           ' {"label": "name", "value": "x"}, {"label": "flag", "value": true}]'
    checked = row(parameter=text)
    assert_ok(checked)
    assert checked.body["parameter"] == [
        {"label": "lr", "value": "0.010"}, {"label": "bs", "value": "64"}, {"label": "eps", "value": "1E-08"},
        {"label": "name", "value": "x"}, {"label": "flag", "value": "true"}]
    for entry in checked.body["parameter"]:
        assert type(entry["value"]) is str and type(entry["label"]) is str
    assert '"value": "0.010"' in json.dumps(checked.body)


@pytest.mark.parametrize("text", ["not json", "[{label: 'a'}]", '[{"label": "a", "value": NaN}]',
                                  '[{"label": "a", "value": Infinity}]', '[{"label": "a"'])
def test_parameter_not_json(text):
    assert_only_problem(row(parameter=text), "parameter", errors.TYPE)


@pytest.mark.parametrize(("text", "columns"), [
    ('{"label": "a", "value": "1"}', {"parameter"}),
    ('"a=1"', {"parameter"}),
    ('["a"]', {"parameter", "parameter["}),
    ('[{"name": "a", "value": "1"}]', {"parameter", "parameter["}),
    ('[{"label": "a", "value": "1", "extra": 1}]', {"parameter", "parameter["}),
    ('[{"label": 1, "value": "1"}]', {"parameter", "parameter["}),
    ('[{"label": "", "value": "1"}]', {"parameter", "parameter["}),
    ('[{"label": "a", "value": null}]', {"parameter", "parameter["}),
    ('[{"label": "a", "value": {"x": 1}}]', {"parameter", "parameter["}),
    ('[{"label": "a", "value": [1]}]', {"parameter", "parameter["}),
    ("null", {"parameter"}),
    ("3", {"parameter"}),
], ids=["object", "string", "entry-string", "no-label", "extra-key", "int-label", "empty-label",
        "null-value", "object-value", "array-value",
        "json-null", "number"])
def test_parameter_wrong_shape(text, columns):
    assert_only_problem(row(parameter=text), columns, errors.TYPE)


def test_param_columns_add_entries_after_parameter():
    checked = row(parameter='[{"label": "epochs", "value": "3"}]',
                  **{"param.learning_rate": "0.010", "param.Batch": "064", "param.region": "NA"})
    assert_ok(checked)
    assert checked.body["parameter"] == [
        {"label": "epochs", "value": "3"}, {"label": "learning_rate", "value": "0.010"},
        {"label": "Batch", "value": "064"}, {"label": "region", "value": "NA"}]


def test_param_column_empty_cell_adds_nothing():
    checked = row(**{"param.lr": "", "param.bs": "32"})
    assert_ok(checked)
    assert checked.body["parameter"] == [{"label": "bs", "value": "32"}]


def test_param_columns_all_empty_leave_parameter_out():
    checked = row(**{"param.lr": ""})
    assert_ok(checked)
    assert "parameter" not in checked.body


def test_parameter_labels_unique_in_json():
    text = '[{"label": "lr", "value": "1"}, {"label": "lr", "value": "2"}]'
    problem = assert_problem(row(parameter=text), {"parameter", "parameter["}, errors.CONFLICT)
    assert "lr" in problem.message


def test_parameter_labels_unique_across_param_columns():
    checked = row(parameter='[{"label": "lr", "value": "1"}]', **{"param.lr": "2"})
    assert len(checked.problems) == 1, found(checked)
    problem = checked.problems[0]
    assert problem.code == errors.CONFLICT
    assert problem.column in {"param.lr", "parameter"} or problem.column.startswith("parameter["), found(checked)


def test_parameter_labels_are_case_sensitive():
    checked = row(parameter='[{"label": "lr", "value": "1"}]', **{"param.LR": "2"})
    assert_ok(checked)


# --- body ----------------------------------------------------------------------------------------

ALL_STRING_FIELDS = {"config_desc": "a run", "train_url": "/bucket/out/", "log_url": "/bucket/log/",
                     "user_image_url": "swr.cn-north-4.myhuaweicloud.com/org/image:1.0",
                     "user_command": "python train.py"}


def test_empty_cells_left_out_of_body():
    cells = {column: "" for column in COLUMNS}
    cells.update(BUILTIN)
    cells["param.lr"] = ""
    checked = check_row(cells)
    assert_ok(checked)
    assert checked.body == {"worker_server_num": 2, "model_id": 5, "spec_id": 1, "data_url": "/bucket/data/"}


def test_body_types_and_json():
    """Integers are JSON ints; strings stay strings; the body is JSON as the API wants it."""
    checked = row(CUSTOM_CODE, engine_id="4", **ALL_STRING_FIELDS)
    assert_ok(checked)
    body = json.loads(json.dumps(checked.body))
    assert body == checked.body
    for field in ("worker_server_num", "spec_id", "engine_id"):
        assert type(checked.body[field]) is int
    for field, value in ALL_STRING_FIELDS.items():
        assert checked.body[field] == value
    assert '"worker_server_num": 2' in json.dumps(checked.body)


@pytest.mark.parametrize("text", ["NA", "None", "null", "N/A", "nan", "007", "TRUE"])
def test_text_like_missing_values_stay_as_typed(text):
    checked = row(CUSTOM_CODE, config_desc=text, dataset_id=text, dataset_version_id=text,
                  **{"param.x": text})
    assert_ok(checked)
    assert checked.body["config_desc"] == text
    assert checked.body["dataset_id"] == text and checked.body["dataset_version_id"] == text
    assert checked.body["parameter"] == [{"label": "x", "value": text}]


# --- user_command / user_image_url ---------------------------------------------------------------

def test_user_command_needs_user_image_url():
    assert_only_problem(row(user_command="bash run.sh"), "user_command", errors.CONFLICT)


@pytest.mark.parametrize("image", ["100.125.5.235:20202/jobmng/custom-cpu-base:1.0",
                                   "swr.cn-north-4.myhuaweicloud.com/ml-team/llm-train:2.1.0"])
def test_user_command_with_image(image):
    checked = row(user_command="bash run.sh", user_image_url=image)
    assert_ok(checked)
    assert checked.body["user_image_url"] == image


# --- project_id ----------------------------------------------------------------------------------

@pytest.mark.parametrize("project_id", ["0123456789ABCDEF0123456789ABCDEF", PROJECT[:31], PROJECT + "0",
                                        "g" * 32, "../" + PROJECT[3:], PROJECT[:16] + "-" + PROJECT[17:]])
def test_project_id_bad_form(project_id):
    assert_only_problem(row(project_id=project_id), "project_id", errors.FORMAT)


def test_project_id_cell_overrides_default():
    other = "f" * 32
    checked = check_row({**BUILTIN, "project_id": other}, default_project_id=PROJECT, project_required=True)
    assert_ok(checked)
    assert checked.project_id == other
    assert "project_id" not in checked.body


def test_project_id_falls_back_to_default():
    checked = check_row(BUILTIN, default_project_id=PROJECT, project_required=True)
    assert_ok(checked)
    assert checked.project_id == PROJECT


@pytest.mark.parametrize("cells", [BUILTIN, {**BUILTIN, "project_id": ""}], ids=["no-column", "empty"])
def test_project_id_required(cells):
    assert_only_problem(check_row(cells, project_required=True), "project_id", errors.REQUIRED)


def test_project_id_optional_offline():
    checked = check_row(BUILTIN)
    assert_ok(checked)
    assert checked.project_id == ""


# --- several problems, huge cells ----------------------------------------------------------------

def test_every_problem_of_a_row_is_reported():
    """Three broken rules in three columns: three problems, each naming its column."""
    checked = row(config_name="a/b", worker_server_num="abc", config_desc="x" * 257)
    assert sorted(found(checked)) == [("config_desc", errors.RANGE), ("config_name", errors.FORMAT),
                                      ("worker_server_num", errors.TYPE)]
    for problem in checked.problems:
        assert problem.column in str(problem)


def test_many_problems_reported_together():
    checked = check_row({"config_name": "x y", "worker_server_num": "0", "model_id": "m",
                         "user_command": "run", "project_id": "P"}, replace=True)
    columns = {p.column for p in checked.problems}
    assert {"config_name", "worker_server_num", "spec_id", "model_id", "user_command",
            "project_id"} <= columns
    assert {"data_url", "dataset_id", "data_source"} & columns


HUGE = "x" * (MAX_CELL_CHARS + 1)


@pytest.mark.parametrize("column", [*COLUMNS, "param.lr"])
def test_cell_longer_than_32k_is_range(column):
    base = CUSTOM_CODE if column in ("app_url", "boot_file_url", "engine_id") else BUILTIN
    checked = row(base, **{column: HUGE})
    assert (column, errors.RANGE) in found(checked)
    assert all(len(p.message) < 500 for p in checked.problems)


@pytest.mark.parametrize(("column", "text"), [
    ("worker_server_num", "1" * MAX_CELL_CHARS),
    ("spec_id", "0" * 5000),
    ("model_id", "9" * 4301),
    ("engine_id", "1" * 4301 + ".0"),
    ("parameter", "[" * 30000),
    ("data_source", "[" * 30000),
    ("parameter", '[{"label": "a", "value": ' + "[" * 16000 + "]" * 16000 + "}]"),
], ids=["worker-32k-digits", "spec-zeros", "model-4301", "engine-4301.0", "parameter-nested",
        "data_source-nested", "parameter-value-nested"])
def test_cells_within_32k_never_raise(column, text):
    """Cells up to 32 KiB are accepted input: each gives a problem on its column, never a crash."""
    assert len(text) <= MAX_CELL_CHARS
    checked = row(**{column: text})
    assert checked.problems
    assert any(p.column == column or p.column.startswith(column + "[") for p in checked.problems), \
        found(checked)


# --- check_body (the sandbox checks JSON bodies with it) -----------------------------------------

BODY = {"worker_server_num": 2, "spec_id": 1, "model_id": 5, "data_url": "/bucket/data/"}


def body_problems(**fields) -> list[tuple[str, str]]:
    return [(p.column, p.code) for p in check_body({**BODY, **fields})]


def test_check_body_valid():
    assert check_body(BODY) == []
    assert check_body({"worker_server_num": 1, "spec_id": 1, "app_url": "/bkt1/c/", "boot_file_url": "/bkt1/c/t.py",
                       "data_source": [{"type": "obs", "data_url": "/bkt1/d/"}],
                       "parameter": [{"label": "lr", "value": "0.1"}, {"label": "n", "value": 3}]}) == []


@pytest.mark.parametrize("field", ["worker_server_num", "spec_id", "model_id", "engine_id"])
@pytest.mark.parametrize("value", ["3", "abc", True, False, 3.5, 3.0, [3], {"v": 3}], ids=repr)
def test_check_body_integer_fields(field, value):
    """A string, a Boolean, a float or a container where an integer is expected is TYPE."""
    assert body_problems(**{field: value}) == [(field, errors.TYPE)]


@pytest.mark.parametrize("value", [0, -5, 2**31])
def test_check_body_worker_range(value):
    assert body_problems(worker_server_num=value) == [("worker_server_num", errors.RANGE)]


@pytest.mark.parametrize("field", ["foo", "config_name", "project_id", "Spec_Id", "param.lr", "parameters"])
def test_check_body_unknown_field(field):
    problems = body_problems(**{field: "x"})
    assert len(problems) == 1 and problems[0][0] == field, problems
    assert problems[0][1] in {errors.FORMAT, errors.TYPE}


@pytest.mark.parametrize(("base", "field"), [
    (BODY, "config_desc"), (BODY, "data_url"), (BODY, "train_url"), (BODY, "log_url"),
    (BODY, "user_image_url"), ({**BODY, "model_id": None}, "app_url"), ({**BODY, "model_id": None},
                                                                        "boot_file_url"),
])
@pytest.mark.parametrize("value", [5, True, ["/bucket/x/"], {"a": 1}])
def test_check_body_string_fields_reject_other_types(base, field, value):
    """A non-string in a String field is TYPE on that field, never an exception."""
    body = {k: v for k, v in base.items() if v is not None}
    if field == "app_url":
        body["boot_file_url"] = "/bucket/code/train.py"
    if field == "boot_file_url":
        body["app_url"] = "/bucket/code/"
    body[field] = value
    problems = [(p.column, p.code) for p in check_body(body)]
    assert (field, errors.TYPE) in problems, problems


@pytest.mark.parametrize("value", ["x", {"label": "a"}, [{"label": "a", "value": "1"}, {"label": "a", "value": "2"}],
                                   [{"value": "1"}], [5]], ids=["str", "obj", "dup", "nolabel", "int"])
def test_check_body_parameter(value):
    problems = check_body({**BODY, "parameter": value})
    assert problems and all(p.column.startswith("parameter") for p in problems), problems


@pytest.mark.parametrize("value", ["[]", {}, [1], [{"type": "obs", "data_url": 5}],
                                   [{"type": "obs", "data_url": "/bkt1/d/", "extra": "x"}]])
def test_check_body_data_source(value):
    body = {k: v for k, v in BODY.items() if k != "data_url"}
    problems = check_body({**body, "data_source": value})
    assert problems and all(p.column.startswith("data_source") for p in problems), problems
    assert {p.code for p in problems} == {errors.TYPE}


# --- property ------------------------------------------------------------------------------------

CELL_COLUMNS = [*COLUMNS, "param.lr", "param.X"]
_cell_text = st.one_of(
    st.text(max_size=80),
    st.sampled_from(["", "0", "3.0", "-1", "NA", "null", "[]", "{}", "/bucket/x/", "obs://b/x", "..",
                     '[{"label": "a", "value": 1}]', '[{"type": "obs", "data_url": "/bkt1/d/"}]']),
    st.builds(lambda piece, count: piece * count,
              st.sampled_from(["9", "[", "{\"a\":", "x", "/..", "\x00", "\u00e9"]),
              st.one_of(st.integers(min_value=0, max_value=MAX_CELL_CHARS + 2),
                        st.sampled_from([1, 2, 64, 65, 256, 257, 1000, 4301, MAX_CELL_CHARS,
                                         MAX_CELL_CHARS + 1]))),
)


@settings(max_examples=200, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(cells=st.dictionaries(st.sampled_from(CELL_COLUMNS), _cell_text, max_size=8),
       project_required=st.booleans())
@pytest.mark.parametrize("replace", [False, True])
def test_check_row_never_raises(cells, project_required, replace):
    """Arbitrary text in any cell of any column gives problems, never an exception."""
    checked = check_row(cells, project_required=project_required, replace=replace)
    assert isinstance(checked, CheckedRow)
    for problem in checked.problems:
        assert problem.code.startswith("BATCHCFG.")
        assert problem.column
    json.dumps(checked.body)
