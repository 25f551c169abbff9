"""Reading manifests (docs/contract.md "The manifest"): CSV and Excel files -> rows of text cells.

Every file is generated in ``tmp_path``. A malformed manifest must be a :class:`ManifestError`
(one line for ``batchcfg: error: ...``), whether it shows when the file is opened or while its
rows are read.
"""

from __future__ import annotations

import random
from pathlib import Path

import openpyxl
import pytest

from batchcfg.errors import ManifestError
from batchcfg.manifest import Manifest, Row, open_manifest
from batchcfg.cells import check_row

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"


def write_csv(tmp_path: Path, text: str, name: str = "m.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def write_xlsx(tmp_path: Path, rows: list[list], name: str = "m.xlsx", sheets: dict | None = None) -> Path:
    """An Excel file from lists of rows (``None`` = no cell); ``sheets`` adds named sheets after."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "first"
    for number, values in enumerate(rows, start=1):
        for column, value in enumerate(values, start=1):
            if value is not None:
                sheet.cell(row=number, column=column, value=value)
    for title, extra in (sheets or {}).items():
        other = workbook.create_sheet(title)
        for values in extra:
            other.append(values)
    path = tmp_path / name
    workbook.save(path)
    return path


def read(path: Path, **options) -> tuple[tuple[str, ...], list[tuple[int, dict[str, str]]]]:
    """Open and read a whole manifest: (columns, [(row number, cells)])."""
    manifest = open_manifest(path, **options)
    return manifest.columns, [(row.number, row.cells) for row in manifest.rows()]


def read_error(path: Path, **options) -> str:
    """The ManifestError message of a manifest that is malformed at open time or later."""
    with pytest.raises(ManifestError) as caught:
        read(path, **options)
    message = str(caught.value)
    assert "\n" not in message.strip()
    return message


# --- CSV encodings -------------------------------------------------------------------------------

@pytest.mark.parametrize("bom", ["", "\ufeff"], ids=["no-bom", "bom"])
def test_csv_utf8_with_or_without_bom(tmp_path, bom):
    path = write_csv(tmp_path, bom + "config_name,config_desc\nx,\u4e2d\u6587\u63cf\u8ff0 caf\u00e9\n")
    columns, rows = read(path)
    assert columns == ("config_name", "config_desc")
    assert rows == [(2, {"config_name": "x", "config_desc": "\u4e2d\u6587\u63cf\u8ff0 caf\u00e9"})]


GBK_TEXT = "config_name,config_desc\nresnet,\u6df1\u5ea6\u5b66\u4e60\u8bad\u7ec3\u914d\u7f6e\n"


@pytest.mark.parametrize(("bom", "encoding"), [("", None), ("\ufeff", None), ("\ufeff", "utf-8"), ("\ufeff", "UTF8"),
                                               ("", "utf-8")])
def test_manifest_knows_whether_it_began_with_a_bom(tmp_path, bom, encoding):
    """The report writers keep the mark (Excel needs it to read UTF-8); ``--encoding utf-8`` does not
    read the mark into the first header."""
    manifest = open_manifest(write_csv(tmp_path, bom + "config_name\nx\n"), encoding=encoding)
    assert manifest.bom is bool(bom)
    assert manifest.columns == ("config_name",)


def test_csv_gbk_with_encoding(tmp_path):
    path = write_csv(tmp_path, GBK_TEXT, encoding="gbk")
    columns, rows = read(path, encoding="gbk")
    assert rows == [(2, {"config_name": "resnet", "config_desc": "\u6df1\u5ea6\u5b66\u4e60\u8bad\u7ec3\u914d\u7f6e"})]


def test_csv_gbk_without_encoding_asks_for_it(tmp_path):
    path = write_csv(tmp_path, GBK_TEXT, encoding="gbk")
    assert "--encoding" in read_error(path)


def test_csv_unknown_encoding(tmp_path):
    path = write_csv(tmp_path, "config_name\nx\n")
    assert "no-such-codec" in read_error(path, encoding="no-such-codec")


# --- header --------------------------------------------------------------------------------------

@pytest.mark.parametrize("header", [" Config_Name ", "CONFIG_NAME", "config_name", "\tconfig_name"])
def test_header_case_and_spaces_ignored(tmp_path, header):
    path = write_csv(tmp_path, f'"{header}", Spec_ID ,WORKER_SERVER_NUM\nx,1,2\n')
    columns, rows = read(path)
    assert columns == ("config_name", "spec_id", "worker_server_num")
    assert rows == [(2, {"config_name": "x", "spec_id": "1", "worker_server_num": "2"})]


def test_param_column_keeps_label_case(tmp_path):
    path = write_csv(tmp_path, "config_name,param.LearningRate, Param.batch_Size ,param.lr,param.LR\nx,0.1,32,1,2\n")
    columns, rows = read(path)
    assert columns == ("config_name", "param.LearningRate", "param.batch_Size", "param.lr", "param.LR")
    assert rows[0][1] == {"config_name": "x", "param.LearningRate": "0.1", "param.batch_Size": "32",
                          "param.lr": "1", "param.LR": "2"}


def test_all_contract_columns_accepted(tmp_path):
    names = ["config_name", "config_desc", "worker_server_num", "app_url", "boot_file_url", "model_id",
             "spec_id", "engine_id", "data_url", "dataset_id", "dataset_version_id", "data_source",
             "parameter", "train_url", "log_url", "user_image_url", "user_command", "project_id"]
    path = write_csv(tmp_path, ",".join(names) + "\n")
    assert open_manifest(path).columns == tuple(names)


@pytest.mark.parametrize(("bad", "nearest"), [
    ("worker_num", "worker_server_num"),
    ("spec_idd", "spec_id"),
    ("Spec-ID", "spec_id"),
    ("datasource", "data_source"),
    ("params", "parameter"),
])
def test_unknown_column_named_with_nearest(tmp_path, bad, nearest):
    path = write_csv(tmp_path, f"config_name,{bad}\nx,1\n")
    message = read_error(path)
    assert bad in message
    assert nearest in message.replace(bad, "")


def test_unknown_column_without_near_name(tmp_path):
    path = write_csv(tmp_path, "config_name,zzzzqqq\nx,1\n")
    message = read_error(path)
    assert "'zzzzqqq' in column B (no such field)" in message
    # the hint: every field name, param.<label>, and how to keep a column of notes
    assert "worker_server_num" in message and "user_image_url" in message and "param.<label>" in message
    assert "docs/manifest.md" in message and "'#'" in message


@pytest.mark.parametrize(("bad", "nearest"), [
    ("workers", "'worker_server_num'"),
    ("Description", "'config_desc'"),
    ("image", "'user_image_url'"),
    ("job_name", "'config_name'"),
    ("dataset version", "'dataset_version_id'"),
])
def test_unknown_column_named_by_a_word_of_a_field(tmp_path, bad, nearest):
    """No field name is near the whole header, but one field has a word like one of its words."""
    message = read_error(write_csv(tmp_path, f"config_name,{bad}\nx,1\n"))
    assert f"did you mean {nearest}?" in message
    assert "Fields:" not in message, "a hint that names the field needs no list"


def test_every_bad_header_in_one_line(tmp_path):
    path = write_csv(tmp_path, "config_name,zzzzqqq,specid,spec_id,param.,spec_id,#note,param.lr,param.lr\n")
    message = read_error(path)
    assert message.startswith(f"{path}: 5 bad columns: ")
    items = ["'zzzzqqq' in column B (no such field)",
             "'specid' in column C (did you mean 'spec_id'?)",
             "'param.' in column E (no parameter label after 'param.')",
             "'spec_id' appears twice (columns D and F)",
             "'param.lr' appears twice (columns H and I)"]
    positions = [message.index(item) for item in items]
    assert positions == sorted(positions), "in column order"
    assert "Fields: config_name," in message  # one list, for the name with no near match
    assert message.count("Fields:") == 1


def test_bad_headers_and_no_config_name(tmp_path):
    message = read_error(write_csv(tmp_path, "name,spec_id,SPEC_ID,Spec_Id\nx,1,1,1\n"))
    assert "2 bad columns" in message
    assert "'name' in column A (did you mean 'config_name'?)" in message
    assert "'spec_id' appears 3 times (columns B, C and D)" in message
    assert message.endswith("; and no config_name column")


@pytest.mark.parametrize(("header", "name"), [
    ("config_name,spec_id,config_name", "config_name"),
    ("config_name,spec_id, SPEC_ID ", "spec_id"),
    ("config_name,param.lr,param.lr", "param.lr"),
])
def test_repeated_column_named(tmp_path, header, name):
    path = write_csv(tmp_path, header + "\nx,1,2\n")
    assert name in read_error(path)


def test_no_config_name_column(tmp_path):
    path = write_csv(tmp_path, "spec_id,worker_server_num\n1,2\n")
    assert "config_name" in read_error(path)


def test_param_column_without_label(tmp_path):
    path = write_csv(tmp_path, "config_name,param.\nx,1\n")
    assert "param." in read_error(path)


def test_hash_columns_ignored(tmp_path):
    path = write_csv(tmp_path, "#status,config_name, # owner ,spec_id\ndone,x,alice,1\n")
    columns, rows = read(path)
    assert rows == [(2, {"config_name": "x", "spec_id": "1"})]


# --- files that are not manifests ----------------------------------------------------------------

@pytest.mark.parametrize("content", ["", None], ids=["empty", "missing"])
def test_empty_or_missing_file(tmp_path, content):
    path = tmp_path / "m.csv"
    if content is not None:
        path.write_text(content)
    assert "m.csv" in read_error(path)


@pytest.mark.parametrize("name", ["m.txt", "m.json", "manifest", "m.xls", "m.tsv"])
def test_unsupported_extension(tmp_path, name):
    path = tmp_path / name
    path.write_text("config_name\nx\n")
    message = read_error(path)
    assert ".csv" in message and ".xlsx" in message


def test_header_only_has_no_rows(tmp_path):
    columns, rows = read(write_csv(tmp_path, "config_name,spec_id\n"))
    assert columns == ("config_name", "spec_id")
    assert rows == []


def test_header_only_without_newline(tmp_path):
    assert read(write_csv(tmp_path, "config_name"))[1] == []


def test_open_returns_manifest(tmp_path):
    manifest = open_manifest(write_csv(tmp_path, "config_name\nx\n"))
    assert isinstance(manifest, Manifest)
    assert list(manifest.rows()) == [Row(2, {"config_name": "x"}, ("x",))]


# --- rows ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "numbers"), [
    ("a,1\nb,2\n", [2, 3]),
    ("a,1\n\nb,2\n", [2, 4]),
    ("\na,1\nb,2\n", [3, 4]),
    ("a,1\n,\n , \nb,2\n", [2, 5]),
    ("a,1\r\n\r\nb,2\r\n", [2, 4]),
    ("a,1\nb,2\n\n\n", [2, 3]),
], ids=["plain", "blank-between", "blank-first", "empty-cells", "crlf", "trailing-blanks"])
def test_blank_rows_skipped_numbers_kept(tmp_path, body, numbers):
    """Row numbers are the spreadsheet's: header 1, first config 2; blank rows keep their numbers."""
    _, rows = read(write_csv(tmp_path, "config_name,spec_id\n" + body))
    assert [number for number, _ in rows] == numbers
    assert [cells["config_name"] for _, cells in rows] == ["a", "b"]


def test_quoted_newline_is_one_row(tmp_path):
    path = write_csv(tmp_path, 'config_name,config_desc\nx,"line one\nline two"\ny,plain\n')
    _, rows = read(path)
    assert rows == [(2, {"config_name": "x", "config_desc": "line one\nline two"}),
                    (3, {"config_name": "y", "config_desc": "plain"})]


@pytest.mark.parametrize("text", ["NA", "None", "null", "NULL", "N/A", "nan", "NaN", "#N/A", "007", "0.010",
                                  "1e3", "TRUE", "-", "3.0"])
def test_cells_kept_as_typed(tmp_path, text):
    path = write_csv(tmp_path, f"config_name,config_desc,param.x\nx,{text},{text}\n")
    assert read(path)[1] == [(2, {"config_name": "x", "config_desc": text, "param.x": text})]


def test_cells_stripped(tmp_path):
    path = write_csv(tmp_path, 'config_name,config_desc,spec_id\n  x  ,"  two words  ",\t3 \n')
    assert read(path)[1] == [(2, {"config_name": "x", "config_desc": "two words", "spec_id": "3"})]


def test_short_row_cells_are_empty(tmp_path):
    path = write_csv(tmp_path, "config_name,spec_id,config_desc\nx\n")
    assert read(path)[1] == [(2, {"config_name": "x", "spec_id": "", "config_desc": ""})]


@pytest.mark.parametrize("body", ["x,1,extra\n", "x,1\ny,2,extra\n", "x,1,\n"],
                         ids=["first-row", "later-row", "trailing-comma"])
def test_row_with_more_cells_than_header(tmp_path, body):
    read_error(write_csv(tmp_path, "config_name,spec_id\n" + body))


def test_value_under_headerless_column_names_row(tmp_path):
    path = write_csv(tmp_path, "config_name,,spec_id\nx,,1\ny,stray,2\n")
    message = read_error(path)
    assert "row 3" in message


def test_headerless_column_may_stay_empty(tmp_path):
    path = write_csv(tmp_path, "config_name,,spec_id\nx,,1\n")
    assert read(path)[1] == [(2, {"config_name": "x", "spec_id": "1"})]


def test_row_numbers_across_read_chunks(tmp_path):
    """Rows are streamed in chunks; numbering carries over (10,000-row chunks)."""
    lines = [f"c{i},1" if i != 10_500 else "," for i in range(2, 10_503)]
    _, rows = read(write_csv(tmp_path, "config_name,spec_id\n" + "\n".join(lines) + "\n"))
    numbers = [number for number, _ in rows]
    assert len(rows) == len(lines) - 1
    for number, cells in rows:
        assert cells["config_name"] == f"c{number}"
    assert 10_500 not in numbers and numbers[-1] == 10_502


# --- Excel ---------------------------------------------------------------------------------------

XLSX_HEADER = ["config_name", "worker_server_num", "spec_id", "param.bs", "config_desc"]


def test_xlsx_cells_are_text(tmp_path):
    path = write_xlsx(tmp_path, [XLSX_HEADER, ["a", 3, 3.0, "007", "NA"], ["b", 2, 1, 0.010, "null"]])
    columns, rows = read(path)
    assert columns == tuple(XLSX_HEADER)
    (n1, first), (n2, second) = rows
    assert (n1, n2) == (2, 3)
    assert first["worker_server_num"] == "3"
    assert first["spec_id"] in {"3", "3.0"}
    assert first["param.bs"] == "007"
    assert first["config_desc"] == "NA"
    assert second["param.bs"] == "0.01"
    assert second["config_desc"] == "null"


def test_xlsx_integer_cells_pass_the_integer_rule(tmp_path):
    path = write_xlsx(tmp_path, [["config_name", "worker_server_num", "spec_id", "model_id", "data_url"],
                                 ["a", 3, 3.0, 5.0, "/bucket/d/"]])
    _, [(number, cells)] = read(path)
    checked = check_row(cells)
    assert checked.problems == ()
    assert checked.body["worker_server_num"] == 3 and checked.body["spec_id"] == 3
    assert checked.body["model_id"] == 5


def test_xlsx_header_normalised_and_hash_ignored(tmp_path):
    path = write_xlsx(tmp_path, [[" Config_Name ", "#note", "Param.LR"], ["  x ", "n", " 0.1 "]])
    assert read(path) == (("config_name", "#note", "param.LR"), [(2, {"config_name": "x", "param.LR": "0.1"})])


def test_xlsx_blank_rows_skipped_numbers_kept(tmp_path):
    path = write_xlsx(tmp_path, [["config_name", "spec_id"], ["a", 1], [None, None], ["", " "], ["b", 2]])
    _, rows = read(path)
    assert rows == [(2, {"config_name": "a", "spec_id": "1"}), (5, {"config_name": "b", "spec_id": "2"})]


def test_xlsx_header_only(tmp_path):
    assert read(write_xlsx(tmp_path, [["config_name", "spec_id"]])) == (("config_name", "spec_id"), [])


def test_xlsx_named_sheet(tmp_path):
    path = write_xlsx(tmp_path, [["config_name"], ["on-first"]],
                      sheets={"configs": [["config_name", "spec_id"], ["on-named", 7]]})
    assert read(path)[1] == [(2, {"config_name": "on-first"})]
    assert read(path, sheet="configs")[1] == [(2, {"config_name": "on-named", "spec_id": "7"})]


def test_xlsx_unknown_sheet(tmp_path):
    path = write_xlsx(tmp_path, [["config_name"], ["x"]])
    assert "nope" in read_error(path, sheet="nope")


def test_unknown_sheet_lists_the_sheets(tmp_path):
    path = write_xlsx(tmp_path, [["config_name"], ["x"]], sheets={"Migration": [["config_name"]], "old": []})
    message = read_error(path, sheet="Migrations")
    assert message == f"{path}: no sheet named 'Migrations'; the workbook's 3 sheets are 'first', 'Migration' and 'old'"


def test_unknown_sheet_in_a_workbook_of_many_lists_the_first_ten(tmp_path):
    path = write_xlsx(tmp_path, [["config_name"]], sheets={f"s{i}": [] for i in range(2, 15)})
    message = read_error(path, sheet="nope")
    assert "the workbook's 14 sheets are 'first', 's2'," in message and "'s10' and 4 more" in message


@pytest.mark.parametrize("sheet", ["migration", "MIGRATION", "Migration", " migration "])
def test_sheet_name_ignores_case_as_excel_does(tmp_path, sheet):
    path = write_xlsx(tmp_path, [["config_name"], ["on-first"]], sheets={"Migration": [["config_name"], ["on-named"]]})
    manifest = open_manifest(path, sheet=sheet)
    assert manifest.sheet == "Migration"
    assert [row.cells["config_name"] for row in manifest.rows()] == ["on-named"]


@pytest.mark.parametrize(("sheet", "expected"), [("1", "on-first"), ("2", "on-second"), ("3", "on-third"),
                                                 (None, "on-first")])
def test_sheet_by_position_counted_from_1(tmp_path, sheet, expected):
    path = write_xlsx(tmp_path, [["config_name"], ["on-first"]],
                      sheets={"second": [["config_name"], ["on-second"]], "third": [["config_name"], ["on-third"]]})
    assert read(path, sheet=sheet)[1] == [(2, {"config_name": expected})]


@pytest.mark.parametrize("sheet", ["0", "4", "99"])
def test_sheet_position_out_of_range(tmp_path, sheet):
    path = write_xlsx(tmp_path, [["config_name"], ["x"]], sheets={"second": [], "third": []})
    message = read_error(path, sheet=sheet)
    assert f"no sheet named {sheet!r}, and no sheet {int(sheet)} counting from 1" in message
    assert "'first', 'second' and 'third'" in message


def test_a_sheet_named_1_wins_over_the_position(tmp_path):
    path = write_xlsx(tmp_path, [["config_name"], ["on-first"]], sheets={"1": [["config_name"], ["on-named-1"]]})
    assert read(path, sheet="1")[1] == [(2, {"config_name": "on-named-1"})]
    assert read(path, sheet="2")[1] == [(2, {"config_name": "on-named-1"})]  # the second sheet, too


def test_xlsx_rows_know_their_number_cells(tmp_path):
    """Cells are text as typed; the row also says which were numbers, for writing it back."""
    path = write_xlsx(tmp_path, [["config_name", "worker_server_num", "spec_id", "param.bs", "param.on", "config_desc"],
                                 ["a", 3, "4", 0.010, True, -2.5]])
    [row] = open_manifest(path).rows()
    assert row.values == ("a", "3", "4", "0.01", "True", "-2.5")
    assert row.numeric == (1, 3, 5)


def test_csv_rows_have_no_number_cells(tmp_path):
    [row] = open_manifest(write_csv(tmp_path, "config_name,spec_id\nx,3\n")).rows()
    assert row.numeric == ()


def test_jsonl_numbers_are_number_cells_with_their_json_text(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"config_name": "x", "spec_id": 3, "param.lr": 0.010, "param.on": true, "config_desc": "7"}\n')
    [row] = open_manifest(path).rows()
    assert row.values == ("x", "3", "0.01", "true", "7")
    assert row.numeric == (1, 2)


@pytest.mark.parametrize("content", [random.Random(1).randbytes(4096), b"PK\x03\x04" + random.Random(2).randbytes(512),
                                     b"config_name\nx\n"],
                         ids=["random", "zip-magic", "csv-text"])
def test_xlsx_corrupt(tmp_path, content):
    path = tmp_path / "m.xlsx"
    path.write_bytes(content)
    assert "m.xlsx" in read_error(path)


def test_xlsx_empty_workbook(tmp_path):
    path = tmp_path / "m.xlsx"
    openpyxl.Workbook().save(path)
    read_error(path)


def test_xlsx_unknown_column(tmp_path):
    path = write_xlsx(tmp_path, [["config_name", "spec_idd"], ["x", 1]])
    message = read_error(path)
    assert "spec_idd" in message and "spec_id" in message.replace("spec_idd", "")


def test_xlsx_value_under_headerless_column(tmp_path):
    path = write_xlsx(tmp_path, [["config_name"], ["x"], ["y", "stray"]])
    assert "row 3" in read_error(path)


@pytest.mark.parametrize("name", ["m.xlsm", "M.XLSX"])
def test_xlsm_and_case_of_extension(tmp_path, name):
    path = write_xlsx(tmp_path, [["config_name", "spec_id"], ["x", 1]], name=name)
    assert read(path)[1] == [(2, {"config_name": "x", "spec_id": "1"})]


def test_sheet_option_on_csv_and_encoding_on_xlsx_are_errors(tmp_path):
    read_error(write_csv(tmp_path, "config_name\nx\n"), sheet="configs")
    read_error(write_xlsx(tmp_path, [["config_name"], ["x"]]), encoding="gbk")


# --- samples -------------------------------------------------------------------------------------

def test_samples_csv_and_xlsx_hold_the_same_rows():
    csv_columns, csv_rows = read(SAMPLES / "training_job_configs.csv")
    xlsx_columns, xlsx_rows = read(SAMPLES / "training_job_configs.xlsx")
    assert csv_columns == xlsx_columns
    assert csv_rows == xlsx_rows
    assert csv_rows and csv_rows[0][0] == 2
    assert [number for number, _ in csv_rows] == list(range(2, 2 + len(csv_rows)))


def test_samples_validate_as_labelled():
    """Rows whose description starts with INVALID fail validation; the others pass."""
    for number, cells in read(SAMPLES / "training_job_configs.csv")[1]:
        checked = check_row(cells)
        invalid = cells["config_desc"].startswith("INVALID")
        assert bool(checked.problems) == invalid, (number, checked.problems)


# --- files as Excel leaves them, through the command line ---------------------------------------

SEMICOLON_TEXT = ('config_name;config_desc;worker_server_num;spec_id;model_id;data_url;parameter\n'
                  'c1;"a; b, c";1;1;7;/bucket/d/;"[{""label"": ""x"", ""value"": ""1;2""}]"\n')


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("batchcfg: error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(("header", "expected"), [
    ("config_name;spec_id;config_desc", ";"),
    ("CONFIG_NAME ; Spec_ID", ";"),
    ("config_name\tparam.lr\t#note", "\t"),
    ("config_name,config_desc", ","),
    ("config_name", ","),
    ("config_name,param.a;b", ","),                   # a label holding ';': still a comma file
    ('config_name,"desc; with; semicolons"', ","),     # an unknown column holding ';'
    ("config_name;param.a,b", ";"),                   # a label holding ',' in a ';' file
    ("spec_id;confg_name", ";"),                      # a typo: still split by ';', then named
    ("hello;world", ","),                             # nothing known either way: the default
])
def test_the_separator_is_found_in_the_header(header, expected):
    from batchcfg.manifest import detect_delimiter

    assert detect_delimiter(header) == expected


@pytest.mark.parametrize("header", ["x" * 200_000, 'config_name;"' + "y" * 200_000 + '"', "config_name;spec_id\rc;1"])
def test_a_header_the_csv_module_refuses_is_one_clear_error_or_read(tmp_path, header):
    """A header cell over the csv module's field limit, or a line ended by a lone CR."""
    path = write_csv(tmp_path, header + "\n")
    try:
        open_manifest(path)
    except ManifestError as exc:
        assert "\n" not in str(exc)


def test_a_semicolon_csv_is_read_with_a_note(tmp_path, capsys):
    from .conftest import cli, read_report

    path = write_csv(tmp_path, SEMICOLON_TEXT, name="excel.csv")
    manifest = open_manifest(path)
    assert manifest.delimiter == ";" and len(manifest.notes) == 1 and not manifest.warnings
    [row] = manifest.rows()
    assert row.cells["config_desc"] == "a; b, c" and row.cells["parameter"] == '[{"label": "x", "value": "1;2"}]'
    assert cli("validate", path, "--report", tmp_path / "r.csv") == 0
    err = capsys.readouterr().err
    assert "INFO: excel.csv: its cells are separated by ';'" in err, "logged"
    assert "batchcfg: excel.csv: its cells are separated by ';', not commas" in err, "and in the summary"
    assert [r["status"] for r in read_report(tmp_path / "r.csv")] == ["valid"]
    assert cli("apply", path, "--sandbox", "--report", tmp_path / "a.csv") == 0
    assert "separated by ';'" in capsys.readouterr().err
    assert [r["status"] for r in read_report(tmp_path / "a.csv")] == ["succeeded"]


def test_a_tab_separated_csv_is_read_with_a_note(tmp_path, capsys):
    from .conftest import cli, read_report

    path = write_csv(tmp_path, "config_name\tworker_server_num\tspec_id\tmodel_id\tdata_url\n"
                               "c1\t2\t1\t7\t/bucket/d/\n", name="tabs.csv")
    assert cli("validate", path, "--report", tmp_path / "r.csv") == 0
    assert "tabs.csv: its cells are separated by tabs" in capsys.readouterr().err
    assert read_report(tmp_path / "r.csv")[0]["status"] == "valid"


def test_a_comma_csv_with_semicolons_in_its_cells_is_a_comma_csv(tmp_path, capsys):
    from .conftest import cli

    path = write_csv(tmp_path, 'config_name,config_desc,parameter\n'
                               'c1,"one; two; three","[{""label"": ""a;b"", ""value"": ""1""}]"\n'
                               'c2,x;y;z,\n')
    manifest = open_manifest(path)
    assert manifest.delimiter == "," and not manifest.notes
    assert [row.cells["config_desc"] for row in manifest.rows()] == ["one; two; three", "x;y;z"]
    cli("validate", path, "--report", tmp_path / "r.csv")
    assert "separated by" not in capsys.readouterr().err


def test_delimiter_flag(tmp_path, capsys):
    from .conftest import cli

    semicolons = write_csv(tmp_path, SEMICOLON_TEXT)
    assert cli("validate", semicolons, "--delimiter", ";", "--report", tmp_path / "1.csv") == 0
    assert "separated by" not in capsys.readouterr().err, "no note: it was given"
    assert cli("validate", semicolons, "--delimiter", ",", "--report", tmp_path / "2.csv") == 2
    assert "bad column" in _one_error_line(capsys.readouterr().err)
    tabs = write_csv(tmp_path, "config_name\tspec_id\nc1\t1\n", name="t.csv")
    for spelling in ("tab", "\\t", "\t", "TAB"):
        assert cli("validate", tabs, "--delimiter", spelling, "--report", tmp_path / "3.csv", "--overwrite") == 0
    capsys.readouterr()
    assert cli("validate", tabs, "--delimiter", "|") == 2
    assert "--delimiter" in _one_error_line(capsys.readouterr().err)
    workbook = write_xlsx(tmp_path, [["config_name"], ["x"]])
    assert cli("validate", workbook, "--delimiter", ";") == 2
    assert "--delimiter" in _one_error_line(capsys.readouterr().err)
    with pytest.raises(ManifestError):
        open_manifest(semicolons, delimiter="|")


def test_a_header_split_by_nothing_known_names_the_separator_to_try(tmp_path, capsys):
    from .conftest import cli

    path = write_csv(tmp_path, "Name;Workers\nc1;1\n")
    assert cli("validate", path) == 2
    assert "--delimiter ';'" in _one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize(("text", "encoding", "named"), [
    ("config_name,config_desc\nc1,café déjà vu – “quoted”\n", "cp1252", ["cp1252"]),
    (GBK_TEXT, "gbk", ["gbk"]),
    ("config_name,config_desc\nc1,\x81 x\n", "latin-1", ["latin-1"]),  # 0x81: neither gbk nor cp1252
])
def test_a_file_that_is_not_utf8_is_told_the_encodings_it_reads_in(tmp_path, capsys, text, encoding, named):
    from .conftest import cli, read_report

    path = write_csv(tmp_path, text, encoding=encoding)
    assert cli("validate", path) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "cannot be read as UTF-8" in line
    for name in named:
        assert f"--encoding {name}" in line, line
    assert cli("validate", path, "--encoding", encoding, "--report", tmp_path / "r.csv") == 0
    assert read_report(tmp_path / "r.csv")[0]["status"] == "valid"
    [row] = open_manifest(path, encoding=encoding).rows()
    assert row.cells["config_desc"] == text.splitlines()[1].split(",", 1)[1]


def test_a_wrong_encoding_given_is_told_the_others(tmp_path, capsys):
    from .conftest import cli

    path = write_csv(tmp_path, "config_name,config_desc\nc1,caf\u00e9 \u2013 x\n", encoding="cp1252")
    assert cli("validate", path, "--encoding", "utf-8") == 2
    assert "--encoding cp1252" in _one_error_line(capsys.readouterr().err)
    path = write_csv(tmp_path, "config_name,config_desc\nc1,\u20ac\n", name="u.csv")
    assert cli("validate", path, "--encoding", "gbk") == 2
    assert "it reads as utf-8 (Excel's CSV UTF-8) or cp1252" in _one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("owner", ["~$m.xlsx", ".~lock.m.xlsx#"])
def test_a_workbook_open_in_excel_gets_a_warning_and_the_run_goes_on(tmp_path, capsys, owner):
    from batchcfg import Options, validate
    from .conftest import cli

    path = write_xlsx(tmp_path, [["config_name", "spec_id"], ["x", 1]])
    (tmp_path / owner).write_bytes(b"\x0bsomeone")
    assert cli("validate", path, "--report", tmp_path / "r.csv") == 0
    err = capsys.readouterr().err
    assert "WARNING: m.xlsx is open in" in err, "logged as a warning"
    assert "batchcfg: m.xlsx is open in" in err and "edits not saved there are not in the file" in err, "summary"
    summary = validate(path, Options.of(report=tmp_path / "r2.csv"))
    assert any("is open in" in note for note in summary.notes)


def test_no_warning_without_the_owner_file(tmp_path, capsys):
    from .conftest import cli

    path = write_xlsx(tmp_path, [["config_name", "spec_id"], ["x", 1]])
    (tmp_path / "~$other.xlsx").write_bytes(b"x")
    assert cli("validate", path, "--report", tmp_path / "r.csv") == 0
    assert "is open in" not in capsys.readouterr().err


@pytest.mark.parametrize(("content", "looks"), [
    (random.Random(3).randbytes(3000), ""),
    (b"PK\x03\x04" + random.Random(4).randbytes(700), ""),
    (b"config_name,spec_id\nx,1\n", "it holds text"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600), "password"),
], ids=["random", "cut-zip", "renamed-csv", "xls-or-encrypted"])
def test_a_damaged_xlsx_says_so(tmp_path, capsys, content, looks):
    from .conftest import cli

    path = tmp_path / "m.xlsx"
    path.write_bytes(content)
    assert cli("validate", path) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "m.xlsx: not a valid .xlsx (damaged, or not an Excel file)" in line and looks in line
    assert "zip" not in line.lower()


def test_a_zip_that_is_no_workbook_says_so(tmp_path, capsys):
    import zipfile
    from .conftest import cli

    path = tmp_path / "m.xlsx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("hello.txt", "not a workbook")
    assert cli("validate", path) == 2
    assert "not a valid .xlsx (damaged, or not an Excel file)" in _one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("name", ["configs", "configs.csv", "."])
def test_a_directory_as_the_manifest_is_one_line(tmp_path, capsys, monkeypatch, name):
    from .conftest import cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / name).mkdir(exist_ok=True)
    assert cli("validate", name) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "is a directory" in line and "(none)" not in line
    assert cli("apply", name, "--sandbox") == 2
    assert "is a directory" in _one_error_line(capsys.readouterr().err)


def test_a_pipe_as_the_manifest_is_one_line_and_never_waits(tmp_path, capsys):
    import os
    from .conftest import cli

    path = tmp_path / "m.csv"
    os.mkfifo(path)
    assert cli("validate", path) == 2
    assert "not a regular file" in _one_error_line(capsys.readouterr().err)
