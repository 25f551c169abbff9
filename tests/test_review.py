"""A plan a reviewer can approve at a glance, and surfaces that agree (issue 20).

- Changes are records from end to end: whatever a value holds (``; ``, `` -> ``, quotes, new
  lines, ``(unset)``, Chinese, bidi controls), the screen, the report, the saved plan and the page
  each give back exactly the fields that differ between the config as read and the body sent.
- A migration's plan leads with a headline and totals by field, every removal shown, and points
  out the emptied cells that keep their values.
- An interrupted run and its resume each keep a page, and each page agrees with its report.
- The counts of "more rows with other codes" are exact.
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
import shlex
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchcfg.change import Change, parse, render
from batchcfg.model import FAILED, Outcome, Summary
from batchcfg.sandbox import SandboxConfig, serve
from batchcfg.schema import BODY_FIELDS
from batchcfg.screen import show_summary

from .conftest import PROJECT, SANDBOX_ENV, cli, read_report, seed_file, write_csv
from .test_html import Page, page_agrees_with_report
from .test_screen import answer_in_terminal

# What a value may hold that a text form could take for its own: separators, arrows, quotes, new
# lines, the word for "no value", other scripts, bidi controls.
NASTY = ["; ", " -> ", ": ", '"', "'", "\\", "\n", "\t", "(unset)", "深度学习", "café", "\u202e", "\u2066", "x", "7"]
values = st.lists(st.sampled_from(NASTY), min_size=1, max_size=6).map("".join)
any_value = st.one_of(st.none(), values, st.integers(-5, 10**12), st.lists(st.fixed_dictionaries({"k": values}),
                                                                           max_size=2))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(BODY_FIELDS), st.one_of(st.none(), values), any_value, any_value),
                min_size=1, max_size=8))
def test_the_text_form_gives_back_exactly_the_changes(fields: list[tuple[str, str | None, Any, Any]]) -> None:
    changes = [Change(field, before, after, label if field == "parameter" else None)
               for field, label, before, after in fields if before is not None or after is not None]
    text = render(changes)
    assert [(name, kind) for name, kind, _, _ in parse(text)] == [(c.name, c.kind) for c in changes]
    assert [(before, after) for _, _, before, after in parse(text)] == [(c.before, c.after) for c in changes]
    assert not re.search("[\n\t\x7f-\x9f\u202a-\u202e\u2066-\u2069]", text), "nothing raw that a reader acts on"
    shortened = render(changes, limit=10)  # as a screen shows them: names and kinds still parse back
    assert [(name, kind) for name, kind, _, _ in parse(shortened)] == [(c.name, c.kind) for c in changes]


def nasty(rng: random.Random, *, free: bool = False) -> str:
    """A value a manifest cell may hold: free text (config_desc) may hold new lines and tabs."""
    pieces = [piece for piece in NASTY if free or piece not in ("\n", "\t")]
    return "x" + "".join(rng.choice(pieces) for _ in range(rng.randint(1, 5))) + "y"


def test_screen_report_saved_plan_and_page_give_back_the_same_changes(tmp_path: Path) -> None:
    """20 configs; each row sets some fields to values built to fool a text form, clears others
    with unset, and sets a parameter whose label is not plain. On a terminal (pty), the plan's
    diff; then the report's changes column, the saved plan's records and the page's rows: each
    gives back, row by row, exactly the fields that differ."""
    rng = random.Random(20261208)
    label = 'a; b -> "c"'
    seeds, rows, expected = [], [], {}
    for i in range(20):
        name = f"c{i:02d}"
        seeds.append({"config_name": name, "config_desc": f"seed {i}", "worker_server_num": 1, "spec_id": 1,
                      "model_id": 7, "data_url": "/bucket/data/", "train_url": "/bucket/out/", "log_url": "/bucket/log/",
                      "parameter": [{"label": "lr", "value": "0.1"}, {"label": label, "value": "old"}]})
        row = {"config_name": name}
        changed: dict[str, str] = {}
        if rng.random() < 0.7:
            row["config_desc"] = nasty(rng, free=True)
            changed["config_desc"] = "change"
        if rng.random() < 0.5:
            row["train_url"] = f"/bucket/{nasty(rng)}/"
            changed["train_url"] = "change"
        if rng.random() < 0.5:
            row[f"param.{label}"] = nasty(rng)
            changed[f'parameter.{json.dumps(label)}'] = "change"
        if rng.random() < 0.5:
            row["param.new"] = nasty(rng)
            changed["parameter.new"] = "add"
        clear = [field for field in ("log_url", "param.lr") if rng.random() < 0.4]
        row["unset"] = " ".join(clear)
        changed.update({"parameter.lr" if field == "param.lr" else field: "remove" for field in clear})
        if not changed:
            row["worker_server_num"] = "2"
            changed["worker_server_num"] = "change"
        rows.append(row)
        expected[name] = changed
    header = ["config_name", "config_desc", "worker_server_num", "train_url", f"param.{label}", "param.new", "unset"]
    manifest = write_csv(tmp_path / "m.csv", header, [[row.get(column, "") for column in header] for row in rows])
    from .conftest import SandboxProcess

    (tmp_path / "seed.jsonl").write_text("".join(json.dumps(seed, ensure_ascii=False) + "\n" for seed in seeds))
    sandbox = SandboxProcess("--seed", str(tmp_path / "seed.jsonl"))
    try:
        env = {**SANDBOX_ENV, "HOME": str(tmp_path), "TERM": "xterm"}
        shown, code = answer_in_terminal(["plan", str(manifest), "--endpoint", sandbox.endpoint, "--out", "plan.jsonl",
                                          "--html", "page.html", "--report", "r.csv"], env, tmp_path, "")
    finally:
        sandbox.close()
    assert code == 0, shown

    def named(found: list[tuple[str, str]]) -> dict[str, str]:
        return dict(found)

    screen: dict[str, dict[str, str]] = {}
    current = None
    for line in re.sub(r"\x1b\[[0-9;]*m", "", shown).replace("\r\n", "\n").splitlines():
        if match := re.fullmatch(r"row \d+ (c\d\d):", line):
            current = screen.setdefault(match.group(1), {})
        elif line.startswith("    ") and current is not None:
            current.update(named([(n, k) for n, k, _, _ in parse(line.strip())]))
        else:
            current = None
    report = {r["config_name"]: named([(n, k) for n, k, _, _ in parse(r["changes"])])
              for r in read_report(tmp_path / "r.csv")}
    saved = {r["config_name"]: named([(Change.of_json(c).name, c["kind"]) for c in r["changes"]])
             for r in map(json.loads, (tmp_path / "plan.jsonl").read_text(encoding="utf-8").splitlines()[1:])}
    page = Page((tmp_path / "page.html").read_text(encoding="utf-8"))
    on_page: dict[str, dict[str, str]] = {}
    listed: dict[str, str] = {}
    for record in page.records:  # in the page's order: a row, then its changes
        if "data-row" in record["attrs"]:
            listed = on_page.setdefault(record["cells"][1], {})
        elif "data-kind" in record["attrs"]:
            listed[record["attrs"]["data-change"]] = record["attrs"]["data-kind"]
    for surface, found in (("screen", screen), ("report", report), ("saved plan", saved), ("page", on_page)):
        assert found == expected, surface


def test_a_300_config_migration_plan_leads_with_its_headline_and_every_removal(tmp_path: Path,
                                                                                 capsys: pytest.CaptureFixture[str],
                                                                                 aksk_env: None) -> None:
    """Export 300 configs, edit the sheet as a person would in Excel (40 worker counts, 20
    parameters, 5 fields cleared with unset, 5 cells emptied), plan it."""
    names = [f"cfg-{i:03d}" for i in range(300)]

    async def scenario() -> None:
        async with serve(SandboxConfig()) as sandbox:
            for i, name in enumerate(names):
                sandbox.seed(name, {"config_desc": f"nightly {i}", "worker_server_num": 2, "spec_id": 1, "model_id": 7,
                                    "data_url": "/bucket/data/", "log_url": f"/bucket/log/{i}/",
                                    "train_url": f"/bucket/out/{i}/", "parameter": [{"label": "lr", "value": "0.1"}]})
            flags = ["--endpoint", sandbox.endpoint, "--project-id", PROJECT, "--rate", "0"]
            assert await anyio.to_thread.run_sync(cli, "export", tmp_path / "e.csv", *flags) == 0
            edit(tmp_path / "e.csv", tmp_path / "m.csv")
            capsys.readouterr()
            assert await anyio.to_thread.run_sync(cli, "plan", tmp_path / "m.csv", *flags, "--report",
                                                  tmp_path / "p.csv", "--html", tmp_path / "p.html") == 0

    anyio.run(scenario)
    err = capsys.readouterr().err
    assert ("batchcfg: plan: 0 to create, 65 to change, 235 unchanged, 0 missing, 0 invalid, 0 in conflict; "
            "5 rows to change lose a value\n") in err
    by_field = err.split("batchcfg: changes by field:\n")[1]
    assert by_field.startswith("    log_url: removed x3\n"), by_field
    assert "    train_url: removed x2\n" in by_field, "every removal, whatever the bound"
    assert "    worker_server_num: changed x40\n        2 -> 4  x40\n" in by_field
    assert '    parameter.lr: changed x20\n        "0.1" -> "0.05"  x20\n' in by_field
    assert ("batchcfg: 5 empty cells in 5 rows kept the config's value (a row changes only what it names): to clear "
            "a field, name it in the row's unset column\n") in err
    page = Page((tmp_path / "p.html").read_text(encoding="utf-8"))
    assert list(page.find("data-field"))[:2] == ["log_url", "train_url"]
    assert {k: int(re.sub(r"\D", "", v["text"])) for k, v in page.find("data-headline").items()}["lose_a_value"] == 5
    assert "5 empty cells in 5 rows kept" in page.all_text()


def edit(exported: Path, manifest: Path) -> None:
    """The edits a person makes in a spreadsheet."""
    with exported.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for i, row in enumerate(rows):
        if i < 40:
            row["worker_server_num"] = "4"
        elif i < 60:
            row["param.lr"] = "0.05"
        elif i < 65:
            row["unset"] = "log_url" if i < 63 else "train_url"
            row["log_url" if i < 63 else "train_url"] = ""
        elif i < 70:
            row["config_desc"] = ""  # emptied: kept, and said so
    columns = [*rows[0].keys()]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns if "unset" in columns else [*columns, "unset"])
    writer.writeheader()
    writer.writerows(rows)
    manifest.write_text(out.getvalue(), encoding="utf-8")


def test_an_interrupted_run_and_its_resume_each_keep_a_page_that_agrees_with_its_report(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from .conftest import SandboxProcess

    names = [f"c{i:02d}" for i in range(60)]
    sandbox = SandboxProcess("--latency-ms", "20", "--fail-rate", "0.05",
                             "--seed", str(seed_file(tmp_path / "seed.jsonl", names)))
    monkeypatch.chdir(tmp_path)
    for name, value in SANDBOX_ENV.items():
        monkeypatch.setenv(name, value)
    try:
        manifest = write_csv(tmp_path / "m.csv", ["config_name", "worker_server_num"], [[n, "3"] for n in names])
        first = cli("apply", manifest, "--endpoint", sandbox.endpoint, "--rate", "30", "--max-retries", "0",
                    "--deadline", "0.6", "--html", "run.html", "--report", "r1.csv")
        err = capsys.readouterr().err
        assert first == 1
        resume = shlex.split(err.split("next: to resume: ")[1].splitlines()[0])
        assert resume[0] == "batchcfg" and "--html" in resume and resume[resume.index("--html") + 1] == "run-2.html"
        deadline = resume.index("--deadline")  # the same command: this time with time enough
        second = cli(*resume[1:deadline], *resume[deadline + 2:], "--max-retries", "5", "--rate", "0",
                     "--report", "r2.csv")
    finally:
        sandbox.close()
    assert second == 0
    assert (tmp_path / "run.html").exists() and (tmp_path / "run-2.html").exists()
    for page, report in (("run.html", "r1.csv"), ("run-2.html", "r2.csv")):
        shown = page_agrees_with_report(tmp_path / page, tmp_path / report)
        records = read_report(tmp_path / report)
        for code, row in shown.find("data-code").items():  # the first rows of each code, in row order
            listed = [int(n) for n in re.findall(r"row (\d+) ", row["cells"][4])]
            assert listed == sorted(int(r["row"]) for r in records if r["error_code"] == code)[:len(listed)]
    first_records = read_report(tmp_path / "r1.csv")
    assert {r["status"] for r in first_records} >= {"succeeded", "cancelled"}
    assert all(r["http_status"] == "" and r["changes"] == "" and r["error_code"] == "BATCHCFG.CANCELLED"
               for r in first_records if r["status"] == "cancelled")


def test_the_count_of_other_error_codes_is_exact(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    summary = Summary(Counter(), tmp_path / "r.csv")
    for row in range(2, 100_002):
        summary.note(Outcome(row, f"c{row}", PROJECT, FAILED, 400, f"E.{row}", "no"))
    show_summary(summary)
    err = capsys.readouterr().err
    assert "batchcfg: ... and 99,995 more rows with 99,995 other error codes: see the report\n" in err
    assert err.count("    row ") == 5, "the five codes shown, one row each"


def test_verbose_names_each_rows_kept_cells(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            aksk_env: None) -> None:
    manifest = write_csv(tmp_path / "m.csv", ["config_name", "worker_server_num", "log_url"], [["a", "3", ""]])

    async def scenario() -> int:
        async with serve(SandboxConfig()) as sandbox:
            sandbox.seed("a", {"worker_server_num": 1, "spec_id": 1, "model_id": 7, "data_url": "/b/d/",
                               "log_url": "/b/log/"})
            return await anyio.to_thread.run_sync(cli, "plan", manifest, "--endpoint", sandbox.endpoint, "--project-id",
                                                  PROJECT, "-v", "--report", tmp_path / "p.csv")

    assert anyio.run(scenario) == 0
    err = capsys.readouterr().err
    assert "row 2 a: empty cells kept the config's value: log_url" in err
    assert "batchcfg: 1 empty cell in 1 row kept the config's value" in err

