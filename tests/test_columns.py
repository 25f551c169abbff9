"""The column-wise checks (batchcfg/columns.py) against the row-by-row reference (cells.check_row).

The main test writes a seeded random manifest of 50,000 rows that mixes every kind of invalid
cell and row the rules know with valid ones, checks it both ways, and wants byte-identical
reports: the same rows valid and invalid, the same codes and messages in the same order, the same
body hashes (``--resume`` matches on them) and the same notes.
"""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from batchcfg.checked import check
from batchcfg.columns import blocks, check_block
from batchcfg.commands import _valid_or_invalid
from batchcfg.errors import ManifestError
from batchcfg.files import spreadsheet_safe, write_table
from batchcfg.manifest import open_manifest
from batchcfg.report import write_report

from .conftest import cli, read_report, write_csv

PROJECT = "0123456789abcdef0123456789abcdef"
OTHER = "fedcba9876543210fedcba9876543210"
HEADER = ["config_name", "#note", "project_id", "config_desc", "worker_server_num", "app_url", "boot_file_url",
          "model_id", "parameter", "spec_id", "data_url", "dataset_id", "dataset_version_id", "data_source",
          "engine_id", "train_url", "log_url", "user_image_url", "user_command", "unset", "param.lr",
          "param.batch_size", "PARAM.Mixed Case"]
LONG = "x" * 33_000  # over the 32 KiB a cell may hold

# What may go in each kind of cell: (valid, invalid). The invalid ones cover every branch of
# cells.check_row and schema.check_body.
INTEGERS = (["1", "2", "8", "16", "999999999", "3.0", "4.", "03", "+2", " 7 "],
            ["0", "-1", "-0", "3.5", "1e3", "abc", "0x10", "9" * 30, "1" * 5000, "2147483648", "1,000", "³"])
LONGS = (["1", "5", "42", "123456789012345678", "9223372036854775807", "7.000"],
         ["0", "9223372036854775808", "99999999999999999999", "5.5", "x", "-7", "½"])
NAMES = (["resnet", "a", "Job_1-x", "z" * 64],
         ["", "bad name", "名字", "z" * 65, "a/b", "job\t1", "a.b", "'=cmd"])
PROJECTS = (["", "", "", PROJECT, OTHER], ["ABCDEF0123456789ABCDEF0123456789", "0123", "g" * 32, PROJECT + "0"])
DESCS = (["", "nightly sweep", "配置 说明", 'he said "hi"', "back\\slash", "tab\there", "two\nlines",
          "d" * 256, "'=SUM(A1)", "'-x", "'x", "''x", "emoji 🚀", "\u2028sep"],
         ["d" * 257, "bell\x07", "del\x7f", "nul\x00", "配" * 300])
OBS = (["/ml-data/set1/", "/bucket/d", "/bkt/数据/", "/bucket/.hidden/x", "/bucket/a b/", "/b.k-t/x/y/z/",
        "/bucket/x..y/"],
       ["obs://bucket/x/", "s3://b/x", "/Bucket/x/", "/b/x/", "bucket/x/", "/bucket/../x/", "/bucket/./x/",
        "/bucket/x/..", "/bucket/x/.", "/bucket//x/", "/-bucket/x/", "/bucket/x\t/", "/bucket/x\x01",
        "/" + "b" * 64 + "/x", '/bucket/"q"/', "/bucket/back\\slash/", "'=HYPERLINK(1)"])
IMAGES = (["swr.cn-north-4.myhuaweicloud.com/org/image:1.0", "100.125.5.235:20202/jobmng/custom-cpu-base:1.0",
           "reg/org/img@sha256:" + "a" * 64],
          ["image", "swr/Org/Img", "swr/org/img:", "swr/org/img:tag with space", "swr/org/img\x01"])
COMMANDS = (["python train.py", "bash -c 'run'\n--flag", "'--lr 0.1", "'@cmd", 'echo "hi"'], ["cmd\x1b[0m"])
DATASETS = (["38277e62", "ds-1", "数据集"], ["ds\x02"])
SOURCES = (['[{"type": "obs", "data_url": "/bucket/data/"}]',
            '[{"type": "dataset", "dataset_id": "a1b2", "dataset_version": "v7"}]',
            '[{"type": "obs", "data_url": "/bkt1/x/"}, {"type": "obs", "data_url": "/bkt2/y/"}]',
            '[{"data_url": "/bucket/z/"}]', '[{"dataset_id": "a", "dataset_version": "b"}]'],
           ["[]", "{}", "not json", "[1]", '[{"type": "x"}]', '[{"foo": 1}]', '[{"data_url": 5}]',
            '[{"type": "obs", "data_url": "/b/x/"}]', '[{"type": "obs", "dataset_id": "a", "data_url": "/bucket/x/"}]',
            '[{"type": "obs"}]', '[{"type": "dataset", "data_url": "/bucket/x/"}]', '[{"type": "dataset", "dataset_id": "a"}]',
            '[{"type": "obs", "data_url": "/bucket/x/"}, {"type": "dataset", "dataset_id": "a", "dataset_version": "b"}]',
            '[NaN]', "[" * 3000 + "]" * 3000, '"text"', '[{"type": "obs", "data_url": "obs://b/x/"}]', "null",
            '[{"dataset_id": 1.50, "dataset_version": "v"}]', "[{'type': 'obs'}]"])
PARAMETERS = (['[{"label": "lr", "value": "0.1"}]', '[{"label": "epochs", "value": 10}]',
               '[{"label": "flag", "value": true}, {"label": "x", "value": 0.010}]', "[]",
               '[{"label": "only"}]', '[{"label": "名", "value": "值"}]'],
              ['{"lr": 1}', '[{"value": "x"}]', '[{"label": "", "value": "x"}]', '[{"label": 1, "value": "x"}]',
               '[{"label": "x", "value": {"a": 1}}]', '[{"label": "x", "value": null}]', '[{"label": "x", "v": 1}]',
               '[{"label": "a", "value": "1"}, {"label": "a", "value": "2"}]', '[{"label": "lr", "value": "2"}]',
               '[{"label": "batch_size", "value": "2"}]', "[1, 2]", "nope", "Infinity", '[{"label": "x", "value": -Infinity}]'])
PARAM_VALUES = (["0.01", "64", "a b", "配", "'=1", "'-1", "x" * 100],
                ['quote"d', "back\\", "ctl\x03", "tab\tbed"])
UNSETS = (["log_url", "log_url, train_url", "param.lr", "param.gone", "train_url;log_url", "user_command",
           "data_source dataset_id", "parameter", "param.Mixed Case"],
          ["spec_id", "worker_server_num", "nope", "log_url log_url", "train_url", "param.batch_size", "config_name",
           "model_id", "data_url", ","])


def pick(rng: random.Random, cells: tuple[list[str], list[str]], empty: float, invalid: float) -> str:
    """A cell: empty, invalid or valid, with the probabilities given (``empty + invalid`` < 1);
    sometimes padded with spaces."""
    draw = rng.random()
    if draw < empty:
        return ""
    text = rng.choice(cells[1] if draw < empty + invalid else cells[0])
    return f"  {text} " if rng.random() < 0.02 else text


def random_row(rng: random.Random, number: int) -> list[str]:
    """One manifest row, in HEADER's order: mostly coherent, with each rule broken now and then."""
    row = dict.fromkeys(HEADER, "")
    draw = rng.random()
    if draw < 0.01:
        return [""] * len(HEADER) if draw < 0.005 else ["", "a note only", *[""] * (len(HEADER) - 2)]
    if draw < 0.02:  # a row that names no field: it only clears some, or does nothing
        row["config_name"], row["unset"] = f"job-{number}", rng.choice(["", "log_url", "param.lr", "spec_id"])
        return list(row.values())
    draw = rng.random()
    row["config_name"] = (f"job-{number}" if draw < 0.85 else rng.choice(["dup-a", "dup-b", "job-7", "dup-c"])
                          if draw < 0.93 else pick(rng, NAMES, 0, 0.9))
    row["#note"] = "note" if rng.random() < 0.1 else ""
    row["project_id"] = pick(rng, PROJECTS, 0.1, 0.05)
    row["config_desc"] = pick(rng, DESCS, 0.5, 0.03)
    row["worker_server_num"] = pick(rng, INTEGERS, 0.1, 0.04)
    row["spec_id"] = pick(rng, LONGS, 0.1, 0.03)
    row["engine_id"] = pick(rng, LONGS, 0.6, 0.03)
    code = rng.random()
    if code < 0.45:  # app_url and boot_file_url, the boot file inside, mostly
        app = rng.choice(["/ml-code/app1/", "/ml-code/app2", "/bkt/代码/", "/ml-code/app1/sub/"])
        row["app_url"] = app
        row["boot_file_url"] = (app.rstrip("/") + "/train.py" if rng.random() < 0.9 else
                                rng.choice(["/ml-code/other/train.py", "/ml-code/app1", "/ml-code/app1/sub/",
                                            "/ml-code/app10/train.py", app.rstrip("/") + "x.py"]))
    elif code < 0.65:
        row["model_id"] = pick(rng, LONGS, 0, 0.05)
    elif code < 0.75:
        pass  # no code: deferred, or required with --replace
    else:  # every other mix, and broken paths
        for name in rng.sample(["app_url", "boot_file_url", "model_id"], rng.randint(1, 3)):
            row[name] = pick(rng, LONGS, 0, 0.1) if name == "model_id" else pick(rng, OBS, 0, 0.3)
    data = rng.random()
    if data < 0.5:
        row["data_url"] = pick(rng, OBS, 0, 0.08)
    elif data < 0.65:
        row["dataset_id"], row["dataset_version_id"] = pick(rng, DATASETS, 0, 0.05), pick(rng, DATASETS, 0, 0.05)
    elif data < 0.75:
        row["data_source"] = pick(rng, SOURCES, 0, 0.5)
    elif data < 0.8:
        pass
    else:
        for name in rng.sample(["data_url", "dataset_id", "dataset_version_id", "data_source"], rng.randint(1, 3)):
            row[name] = pick(rng, SOURCES if name == "data_source" else DATASETS if name.startswith("dataset")
                             else OBS, 0, 0.2)
    row["train_url"] = f"/ml-out/job{number}/" if rng.random() < 0.6 else pick(rng, OBS, 0.5, 0.1)
    row["log_url"] = pick(rng, OBS, 0.4, 0.03)
    if rng.random() < 0.15:
        row["user_image_url"] = pick(rng, IMAGES, 0.3, 0.2)
        row["user_command"] = pick(rng, COMMANDS, 0.2, 0.1)
    row["unset"] = pick(rng, UNSETS, 0.85, 0.06)
    row["parameter"] = pick(rng, PARAMETERS, 0.85, 0.07)
    for name in ("param.lr", "param.batch_size", "PARAM.Mixed Case"):
        row[name] = pick(rng, PARAM_VALUES, 0.5, 0.02)
    if rng.random() < 0.01:  # a cell over the limit, rarely: they are big
        row[rng.choice(HEADER)] = LONG
    return list(row.values())


def typical_row(rng: random.Random, number: int) -> list[str]:
    """A valid row as most manifests hold them, cheap to make and to check: a few shapes, values
    that vary."""
    row = dict.fromkeys(HEADER, "")
    row["config_name"] = f"job-{number}"
    row["project_id"] = (PROJECT, OTHER, PROJECT, PROJECT, PROJECT, PROJECT, OTHER, PROJECT, PROJECT, "")[number % 10]
    row["worker_server_num"] = str(1 + number % 8)
    row["spec_id"] = str(1 + number % 3)
    if number % 3:
        row["app_url"], row["boot_file_url"] = f"/ml-code/app{number % 50}/", f"/ml-code/app{number % 50}/train.py"
    else:
        row["model_id"] = str(100 + number % 7)
    row["data_url" if number % 5 else "dataset_id"] = f"/ml-data/set{number % 100}/" if number % 5 else "ds1"
    if number % 5 == 0:
        row["dataset_version_id"] = "v2"
    if number % 4 == 0:
        row["train_url"], row["config_desc"] = f"/ml-out/job{number}/", f"sweep {number} 配置"
    if number % 6 == 0:
        row["param.lr"], row["param.batch_size"] = "0.01", str(number % 128)
    if number % 10 == 1:
        row["unset"] = "log_url"
    if number % 13 == 0:
        row["user_image_url"], row["user_command"] = IMAGES[0][number % 3], COMMANDS[0][0]
    if rng.random() < 0.03:  # one rule broken in a row like its neighbours, which pass
        column, cells = rng.choice(ONE_BROKEN)
        row[column] = rng.choice(cells[1])
    return list(row.values())


ONE_BROKEN = [("config_name", NAMES), ("project_id", PROJECTS), ("config_desc", DESCS), ("worker_server_num", INTEGERS),
              ("spec_id", LONGS), ("app_url", OBS), ("boot_file_url", OBS), ("train_url", OBS), ("log_url", OBS),
              ("user_image_url", IMAGES), ("user_command", COMMANDS), ("dataset_version_id", DATASETS),
              ("param.lr", PARAM_VALUES), ("engine_id", LONGS), ("unset", UNSETS)]


def random_manifest(path: Path, rows: int, seed: int) -> Path:
    """``rows`` rows: one in five random (:func:`random_row`), the others typical."""
    rng = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(random_row(rng, number) if rng.random() < 0.2 else typical_row(rng, number)
                         for number in range(rows))
    return path


def report(path: Path, manifest: Path, *, by_row: bool, **options: object) -> tuple[bytes, list[str]]:
    """The report ``validate`` writes of the rows checked one way or the other, and the notes."""
    with check(open_manifest(manifest), by_row=by_row, **options) as spool:  # type: ignore[arg-type]
        write_report(path, map(_valid_or_invalid, spool.items()))
        return path.read_bytes(), spool.notes


def assert_same(tmp_path: Path, manifest: Path, **options: object) -> bytes:
    """Both ways give the same report and notes, byte for byte; returns the report."""
    expected, expected_notes = report(tmp_path / "by-row.csv", manifest, by_row=True, **options)
    got, notes = report(tmp_path / "by-column.csv", manifest, by_row=False, **options)
    if got != expected:
        for want, have in zip(expected.decode().splitlines(), got.decode().splitlines()):
            assert have == want
    assert got == expected
    assert notes == expected_notes
    return got


@pytest.mark.parametrize("options, rows", [
    ({"default_project": ""}, 50_000),  # as validate runs
    ({"default_project": "", "project_required": True, "replace": True}, 20_000),  # as apply --replace, project_id cells
], ids=["patch", "replace"])
def test_random_manifest_gives_the_same_report_both_ways(tmp_path, options, rows):
    """50,000 random rows (20,000 for --replace), every kind of invalid cell and row among them: the
    same report."""
    manifest = random_manifest(tmp_path / "random.csv", rows, seed=20261208)
    got = assert_same(tmp_path, manifest, **options)
    records = list(csv.DictReader(got.decode().splitlines()))
    statuses = {record["status"] for record in records}
    codes = {record["error_code"] for record in records}
    assert statuses == {"valid", "invalid"}
    assert sum(record["status"] == "valid" for record in records) > rows // 10  # the fast path is tested too
    assert {"BATCHCFG.TYPE", "BATCHCFG.RANGE", "BATCHCFG.FORMAT", "BATCHCFG.CONFLICT", "BATCHCFG.REQUIRED",
            "BATCHCFG.DUPLICATE"} <= codes


def test_a_small_manifest_of_every_cell_kind_each_way(tmp_path):
    """Each invalid cell once, in a row that is otherwise valid: the same report both ways."""
    base = {"config_name": "job", "worker_server_num": "2", "spec_id": "1", "app_url": "/ml-code/app/",
            "boot_file_url": "/ml-code/app/train.py", "data_url": "/ml-data/d/"}
    kinds = {"config_name": NAMES, "project_id": PROJECTS, "config_desc": DESCS, "worker_server_num": INTEGERS,
             "spec_id": LONGS, "engine_id": LONGS, "model_id": LONGS, "app_url": OBS, "boot_file_url": OBS,
             "data_url": OBS, "train_url": OBS, "dataset_id": DATASETS, "data_source": SOURCES,
             "parameter": PARAMETERS, "param.lr": PARAM_VALUES, "user_image_url": IMAGES, "user_command": COMMANDS,
             "unset": UNSETS}
    rows = [{"config_name": "names-nothing"}, {"config_name": "clears-only", "unset": "log_url param.lr"}]
    for column, (valid, invalid) in kinds.items():
        for text in valid + invalid:
            rows.append({**base, "config_name": f"job-{len(rows)}", column: text})
    path = tmp_path / "kinds.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, HEADER, restval="")
        writer.writeheader()
        writer.writerows(rows)
    for replace in (False, True):
        for default_project in ("", PROJECT):
            for project_required in (False, True):
                assert_same(tmp_path, path, default_project=default_project, replace=replace,
                            project_required=project_required)


def test_workbooks_and_json_lines_read_the_same_both_ways(tmp_path):
    """Typed cells (numbers in a workbook, in JSON lines) and short rows read alike both ways."""
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["config_name", "worker_server_num", "spec_id", "model_id", "data_url", "config_desc", "#x"])
    lines = []
    for number in range(300):
        row = [f"job-{number}", number % 5, 2.0 if number % 3 else 1.5, 7, "/ml-data/d/", f"  text {number}"]
        if number % 7 == 0:
            row = row[:3]  # a short row
        sheet.append(row)
        lines.append(json.dumps(dict(zip(["config_name", "worker_server_num", "spec_id", "model_id", "data_url",
                                          "config_desc"], row))))
    workbook.save(tmp_path / "typed.xlsx")
    full = [line for line in lines if len(json.loads(line)) == 6]  # JSON lines have every key
    (tmp_path / "typed.jsonl").write_text("\n".join(full) + "\n")
    for name in ("typed.xlsx", "typed.jsonl"):
        got = assert_same(tmp_path, tmp_path / name, default_project="")
        assert b",valid," in got and b",invalid," in got


def test_blocks_skip_empty_rows_and_keep_the_numbers(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("config_name,#note,model_id\nA,,1\n,,\n , ,\nB,n,2\n,only a note,\n", encoding="utf-8")
    (block,) = blocks(open_manifest(path))
    assert block.numbers == [2, 5, 6]
    assert block.cells["config_name"].tolist() == ["A", "B", ""]
    assert "#note" not in block.cells


def test_a_value_without_a_header_stops_after_the_rows_before_it(tmp_path):
    """As Manifest.rows: the rows before it are read, then the error names the row and column."""
    path = tmp_path / "m.csv"
    path.write_text("config_name,,model_id\nA,,1\nB,x,2\nC,y,3\n", encoding="utf-8")
    found = []
    with pytest.raises(ManifestError, match="row 3 has a value in column B, which has no header"):
        for block in blocks(open_manifest(path)):
            found.extend(block.numbers)
    assert found == [2]
    with pytest.raises(ManifestError, match="row 3 has a value in column B"):
        list(open_manifest(path).rows())


def test_defusing_quotes_are_taken_off_under_a_marker_column(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("config_name,user_command,#exported\nA,'--lr 1,x\nB,''quoted,x\n", encoding="utf-8")
    (block,) = blocks(open_manifest(path))
    assert block.cells["user_command"].tolist() == ["--lr 1", "'quoted"]


@pytest.mark.parametrize("rows", [5, 12_000])
def test_too_many_rows_is_refused_both_ways(tmp_path, rows):
    manifest = random_manifest(tmp_path / "m.csv", rows, seed=1)
    for by_row in (True, False):
        with pytest.raises(ManifestError, match="more than 4 rows"):
            check(open_manifest(manifest), "", max_rows=4, by_row=by_row)


def test_check_block_on_a_sample_row():
    from batchcfg.columns import Block
    import numpy as np

    def column(*texts: str) -> np.ndarray:
        array = np.empty(len(texts), dtype=object)
        array[:] = texts
        return array

    block = Block([2, 3], {"config_name": column("a", "b b"), "model_id": column("5", "5"),
                           "data_url": column("/bucket/d/", "/bucket/d/")})
    checked = check_block(block, default_project="")
    assert checked.bodies[0] == b'{"model_id":5,"data_url":"/bucket/d/"}'
    assert checked.bodies[1] is None and checked.problems[1][0][0] == "config_name"
    assert "worker_server_num: required" in checked.notes[0]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.none() | st.integers() | st.text(alphabet=st.sampled_from(
    ["=", "+", "-", "@", "'", "\t", "\r", "\n", " ", "\x1c", "\u3000", "\x00", "\x0b", "\x7f", "\u2028", "\xa0",
     "a", ",", '"', "配"]), max_size=6), min_size=3, max_size=3), max_size=20), st.booleans())
@example([[" 'x", "\x1c'x", "\u3000'x"], [" =x", "'x", "=x"], ["\x01", "a\tb", "-1"], [None, 5, -5], ["", " ", "\u2028"]],
         False)
@example([[" 'x", "\x01'x", "\x7f"]], True)
def test_a_csv_table_defuses_each_cell_as_spreadsheet_safe(tmp_path, rows, exact):
    """write_table skips spreadsheet_safe on the cells it would leave alone (the report of a
    million rows is written a second and a half faster): the file is the same."""
    path = tmp_path / "t.csv"
    write_table(path, ["a", "b", "c"], rows, exact=exact)
    expected = io.StringIO(newline="")
    writer = csv.writer(expected)
    writer.writerow(["a", "b", "c"])
    writer.writerows([spreadsheet_safe(value, exact=exact) for value in row] for row in rows)
    assert path.read_bytes() == expected.getvalue().encode()


# --- cells still defused, once the export marker is deleted (issue 19) -----------------------------

def exported_manifest(path: Path, marker: bool) -> Path:
    """Rows as batchcfg export writes them (a formula-like cell gets a leading quote), with or
    without the export's #exported column."""
    header = ["config_name", "worker_server_num", "spec_id", "model_id", "data_url", "config_desc", "user_command",
              "user_image_url", *(["#exported"] if marker else [])]
    rows = [[f"cfg-{i}", "1", "1", "5", "/bucket/d/", "'=1+1" if i == 0 else "plain", f"'--lr 0.{i}",
             "swr.example.com/team/trainer:1.0", *(["2026-12-08T00:00:00Z"] if marker else [])] for i in range(3)]
    return write_csv(path, header, rows)


def cli_run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str]:
    code = cli(*argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("command", [["validate"], ["plan", "--sandbox", "--create-missing"],
                                     ["apply", "--sandbox", "--create-missing", "--rate", "0"]])
def test_defusing_quotes_left_in_are_flagged_per_column(tmp_path, capsys, command):
    """The marker column deleted: each column with cells that start with the defusing quote gets
    one warning with its count, logged once and shown in the summary; the rows stay valid."""
    manifest = exported_manifest(tmp_path / "edited.csv", marker=False)
    code, err = cli_run(capsys, command[0], manifest, *command[1:], "--report", tmp_path / "r.csv")
    assert code == 0, err
    assert err.count("user_command: 3 cells start with a quote before a formula character") == 2  # log, summary
    assert err.count("WARNING: user_command: 3 cells start") == 1
    assert err.count("config_desc: 1 cell starts with a quote") == 2
    assert "user_image_url" not in err and "model_id:" not in err
    assert err.index("config_desc: 1 cell") < err.index("user_command: 3 cells"), "in the file's column order"
    assert "#exported or #status" in err
    statuses = {record["status"] for record in read_report(tmp_path / "r.csv")}
    assert "invalid" not in statuses and "failed" not in statuses, statuses


def test_no_warning_while_the_marker_column_is_there(tmp_path, capsys):
    """With #exported the loader takes the quotes off: nothing to flag, and the bodies differ
    from those of the same cells without the marker (the quote is sent there)."""
    code, err = cli_run(capsys, "validate", exported_manifest(tmp_path / "m.csv", marker=True),
                        "--report", tmp_path / "r.csv")
    assert code == 0 and "quote" not in err
    marked = [r["body_sha256"] for r in read_report(tmp_path / "r.csv")]
    code, err = cli_run(capsys, "validate", exported_manifest(tmp_path / "e.csv", marker=False),
                        "--report", tmp_path / "r2.csv")
    unmarked = [r["body_sha256"] for r in read_report(tmp_path / "r2.csv")]
    assert code == 0 and not set(marked) & set(unmarked)


def test_json_lines_are_never_defused_so_never_flagged(tmp_path, capsys):
    lines = [{"config_name": "a", "worker_server_num": "1", "spec_id": "1", "model_id": "5",
              "data_url": "/bucket/d/", "user_command": "'--x"}]
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    code, err = cli_run(capsys, "validate", path, "--report", tmp_path / "r.csv")
    assert code == 0 and "quote" not in err
