"""Reports and failed-row manifests that open well in Excel (batchcfg.report, batchcfg.files).

- A CSV report or failed-row manifest starts with a byte order mark exactly when the manifest did.
- An ``.xlsx`` failed-row manifest keeps the manifest's number cells numbers, and its text text.
- An ``.xlsx`` report has a named sheet, a frozen header, a filter and column widths that fit.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from batchcfg.change import Change
from batchcfg.files import write_table
from batchcfg.manifest import open_manifest
from batchcfg.model import FAILED, INVALID, SUCCEEDED, Outcome
from batchcfg.report import COLUMNS, write_failed_manifest, write_report

CHINESE = "\u6df1\u5ea6\u5b66\u4e60\u8bad\u7ec3\u914d\u7f6e"  # a Chinese description
BOM = codecs.BOM_UTF8


def outcomes() -> list[Outcome]:
    return [Outcome(2, "resnet", "p" * 32, SUCCEEDED, 200, attempts=1, changes=(Change("config_desc", None, CHINESE),)),
            Outcome(3, "=bad", "p" * 32, INVALID, error_code="BATCHCFG.FORMAT", error_message="config_name: bad")]


def write_xlsx(path: Path, rows: list[list[Any]], title: str = "configs") -> Path:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = title
    for values in rows:
        sheet.append(values)
    workbook.save(path)
    return path


def cells(path: Path) -> list[list[openpyxl.cell.Cell]]:
    return [list(row) for row in openpyxl.load_workbook(path).active.iter_rows()]


# --- byte order marks ----------------------------------------------------------------------------

@pytest.mark.parametrize("bom", [True, False])
def test_csv_report_has_a_bom_when_asked(tmp_path: Path, bom: bool) -> None:
    path = write_report(tmp_path / "r.csv", outcomes(), bom=bom)
    data = path.read_bytes()
    assert data.startswith(BOM) is bom
    assert data.count(BOM) == int(bom)
    assert CHINESE in data.decode("utf-8-sig")


def test_bom_is_for_csv_only(tmp_path: Path) -> None:
    assert not write_report(tmp_path / "r.jsonl", outcomes(), bom=True).read_bytes().startswith(BOM)
    assert write_report(tmp_path / "r.xlsx", outcomes(), bom=True).read_bytes().startswith(b"PK")


@pytest.mark.parametrize("bom", [True, False])
@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_failed_manifest_keeps_the_manifests_bom(tmp_path: Path, bom: bool, suffix: str) -> None:
    source = tmp_path / "m.csv"
    source.write_bytes((BOM if bom else b"") + f"config_name,config_desc\nx,{CHINESE}\ny,ok\n".encode())
    manifest = open_manifest(source)
    failed = tmp_path / f"failed{suffix}"
    assert write_failed_manifest(manifest, {2: (INVALID, "BATCHCFG.FORMAT: bad")}, failed) == 1
    if suffix == ".csv":
        data = failed.read_bytes()
        assert data.startswith(BOM) is bom
        assert data.decode("utf-8-sig").splitlines() == [
            "config_name,config_desc,#status,#error", f"x,{CHINESE},invalid,BATCHCFG.FORMAT: bad"]
    else:
        assert [[c.value for c in row] for row in cells(failed)] == [
            ["config_name", "config_desc", "#status", "#error"], ["x", CHINESE, "invalid", "BATCHCFG.FORMAT: bad"]]


def test_a_csv_failed_manifest_fed_back_keeps_its_bom(tmp_path: Path) -> None:
    source = tmp_path / "m.csv"
    source.write_bytes(BOM + f"config_name,config_desc\nx,{CHINESE}\n".encode())
    first, second = tmp_path / "f1.csv", tmp_path / "f2.csv"
    write_failed_manifest(open_manifest(source), {2: (FAILED, "HTTP.500: boom")}, first)
    write_failed_manifest(open_manifest(first), {2: (FAILED, "HTTP.500: boom")}, second)
    assert second.read_bytes() == first.read_bytes() and first.read_bytes().startswith(BOM)


# --- numbers in an .xlsx failed-row manifest -----------------------------------------------------

XLSX_HEADER = ["config_name", "worker_server_num", "spec_id", "param.bs", "param.lr", "config_desc", "#note"]


def test_xlsx_failed_manifest_keeps_numbers_numbers_and_text_text(tmp_path: Path) -> None:
    source = write_xlsx(tmp_path / "m.xlsx", [XLSX_HEADER,
                                              ["a", 3, "4", "007", 0.010, -2, "-note"],
                                              ["b", 1, 1, 32, "0.02", "text", 5],
                                              ["c", 2.0, 1e20, "3", 1.5, CHINESE, None]])
    failed = tmp_path / "failed.xlsx"
    write_failed_manifest(open_manifest(source), {2: (INVALID, "x"), 4: (FAILED, "y")}, failed)
    header, first, second = cells(failed)
    assert [c.value for c in header] == [*XLSX_HEADER, "#status", "#error"]
    assert [c.value for c in first] == ["a", 3, "4", "007", 0.01, -2, "'-note", "invalid", "x"]
    assert [c.data_type for c in first] == ["s", "n", "s", "s", "n", "n", "s", "s", "s"]
    assert [c.value for c in second] == ["c", 2, 1e20, "3", 1.5, CHINESE, None, "failed", "y"]
    assert [c.data_type for c in second[:6]] == ["s", "n", "n", "s", "n", "s"]


def test_xlsx_failed_manifest_fed_back_reads_the_same_cells(tmp_path: Path) -> None:
    source = write_xlsx(tmp_path / "m.xlsx", [XLSX_HEADER[:-1], ["a", 3, "4", "007", 0.010, "-x"]])
    failed, again = tmp_path / "failed.xlsx", tmp_path / "again.xlsx"
    write_failed_manifest(open_manifest(source), {2: (INVALID, "x")}, failed)
    [original] = open_manifest(source).rows()
    [read_back] = open_manifest(failed).rows()
    assert read_back.cells == original.cells
    assert read_back.numeric == original.numeric
    write_failed_manifest(open_manifest(failed), {2: (INVALID, "x")}, again)
    assert [[(c.value, c.data_type) for c in row] for row in cells(again)] == \
           [[(c.value, c.data_type) for c in row] for row in cells(failed)]


def test_csv_manifest_gives_an_xlsx_failed_manifest_of_text(tmp_path: Path) -> None:
    source = tmp_path / "m.csv"
    source.write_text("config_name,worker_server_num,param.lr\nx,3,0.010\n")
    failed = tmp_path / "failed.xlsx"
    write_failed_manifest(open_manifest(source), {2: (INVALID, "x")}, failed)
    row = cells(failed)[1]
    assert [(c.value, c.data_type) for c in row[:3]] == [("x", "s"), ("3", "s"), ("0.010", "s")]


def test_xlsx_manifest_gives_a_csv_failed_manifest_as_before(tmp_path: Path) -> None:
    source = write_xlsx(tmp_path / "m.xlsx", [["config_name", "worker_server_num", "config_desc"], ["x", 3, -2]])
    failed = tmp_path / "failed.csv"
    write_failed_manifest(open_manifest(source), {2: (INVALID, "x")}, failed)
    assert failed.read_text(encoding="utf-8").splitlines()[1] == "x,3,'-2,invalid,x"


@pytest.mark.parametrize(("title", "expected"), [("Migration", "Migration"), ("History", "failed rows")])
def test_xlsx_failed_manifest_sheet_is_named_as_the_manifests(tmp_path: Path, title: str, expected: str) -> None:
    source = write_xlsx(tmp_path / "m.xlsx", [["config_name"], ["x"]], title=title)
    failed = tmp_path / "failed.xlsx"
    write_failed_manifest(open_manifest(source, sheet=title.lower()), {2: (INVALID, "x")}, failed)
    assert openpyxl.load_workbook(failed).sheetnames == [expected]


def test_xlsx_failed_manifest_of_a_csv_manifest_sheet(tmp_path: Path) -> None:
    source = tmp_path / "m.csv"
    source.write_text("config_name\nx\n")
    failed = tmp_path / "failed.xlsx"
    write_failed_manifest(open_manifest(source), {2: (INVALID, "x")}, failed)
    assert openpyxl.load_workbook(failed).sheetnames == ["failed rows"]


# --- .xlsx reports -------------------------------------------------------------------------------

def test_xlsx_report_has_frozen_header_filter_and_widths(tmp_path: Path) -> None:
    path = write_report(tmp_path / "r.xlsx", outcomes())
    workbook = openpyxl.load_workbook(path)
    assert workbook.sheetnames == ["report"]
    sheet = workbook.active
    assert sheet.freeze_panes == "A2"
    last = openpyxl.utils.get_column_letter(len(COLUMNS))
    assert sheet.auto_filter.ref == f"A1:{last}3"
    assert [c.value for c in next(sheet.iter_rows())] == list(COLUMNS)
    widths = {letter: int(dimension.width) for letter, dimension in sheet.column_dimensions.items()}  # + Excel's padding
    assert widths["A"] == len("row") + 2
    assert widths["B"] == len("config_name") + 2
    assert widths["C"] == 32 + 2  # the project id, longer than the header
    assert sheet["B3"].value == "'=bad"  # defused


def test_xlsx_report_sheet_name(tmp_path: Path) -> None:
    path = write_report(tmp_path / "r.xlsx", outcomes(), sheet="apply")
    assert openpyxl.load_workbook(path).sheetnames == ["apply"]


def test_xlsx_widths_count_chinese_characters_twice_and_are_capped(tmp_path: Path) -> None:
    path = tmp_path / "t.xlsx"
    write_table(path, ["a", "b", "c"], [[CHINESE, "x" * 500, "short\n" + "y" * 20]])
    dimensions = openpyxl.load_workbook(path).active.column_dimensions
    widths = [int(dimensions[letter].width) for letter in "ABC"]  # xlsxwriter adds Excel's padding
    assert widths == [2 * len(CHINESE) + 2, 60, 20 + 2]  # wide characters; the cap; the longest line


def test_xlsx_report_without_rows(tmp_path: Path) -> None:
    sheet = openpyxl.load_workbook(write_report(tmp_path / "r.xlsx", [])).active
    assert sheet.freeze_panes == "A2" and sheet.max_row == 1


def test_a_csv_report_keeps_the_manifests_byte_order_mark(tmp_path: Path) -> None:
    """Through a run: a manifest with a BOM gives a report with one (Excel reads Chinese right)."""
    from batchcfg import Options, validate

    with_bom, without = tmp_path / "bom.csv", tmp_path / "plain.csv"
    text = "config_name,config_desc,worker_server_num\nc1,中文 描述,2\n"
    with_bom.write_bytes(b"\xef\xbb\xbf" + text.encode())
    without.write_bytes(text.encode())
    validate(with_bom, Options.of(report=tmp_path / "r1.csv"))
    validate(without, Options.of(report=tmp_path / "r2.csv"))
    assert (tmp_path / "r1.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    assert not (tmp_path / "r2.csv").read_bytes().startswith(b"\xef\xbb\xbf")
