"""What the docs quote is what the commands print.

A user who copies a command from README.md or docs/ must get what the page says. Three checks:

- **The README's walk-through** (the ``sh`` block under "A walk-through") runs as written, line by
  line, in a scratch directory where the README's first command ran just before (as it would on a
  user's machine), against a sandbox the test starts, seeded as the walk-through's
  ``batchcfg sandbox --seed`` line says. Each comment's claim (every status's row count, and the
  exit code) must be what the command printed, and a rollback may only roll back backups the
  walk-through wrote itself. The first command's own claims (its status line, its exit code) are
  checked too.
- **Transcripts.** A ``` block of ``$ command`` lines with their output, marked with
  ``<!-- docs-test -->`` on the line above, runs in a scratch directory of its own against a fresh
  sandbox holding the walk-through's configs (``samples/earlier_state.jsonl``), at the endpoint
  the docs use (``http://127.0.0.1:8765``, replaced by the test's). Its output must match line by
  line, allowing for times, rates, latencies, ports and file names; a ``...`` line stands for
  any lines. ``$ echo $?`` shows the exit code. ``<!-- docs-test: m.csv -->`` first writes the
  nearest ``csv`` block above as ``m.csv`` (``a.csv, b.csv``: the two nearest, in page order).
  Other commands (``sed``, ``printf``, ``cat``) run in bash.
- **Every summary line quoted** in a ``` block of README.md and docs/, run here or not (the
  300-row walk-through of docs/walkthrough.md needs a throttling, failing sandbox and minutes),
  has the current format: the status counts add up, a plan's headline, ``changes by field:``
  (never the old ``changes:``), every change in its text form (``log_url: "/bucket/log/" ->
  (unset)``), the sending line and the conflict line as printed today. Changes quoted in the
  prose's code spans must parse too.

Commands run in process (:func:`tests.conftest.cli`, in a worker thread while the sandbox serves
in the test's event loop), with ``BATCHCFG_RATE=0``: at the docs' ``--rate 10`` only the timings
differ, and those are not compared.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import anyio
import pytest

from batchcfg.change import parse
from batchcfg.model import CONFLICT, STATUSES
from batchcfg.sandbox import RunningSandbox, SandboxConfig, serve
from batchcfg.sandbox.data import read_seed

from .conftest import cli, scrub_env

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DOC_ENDPOINT = "http://127.0.0.1:8765"  # the endpoint of `batchcfg sandbox`, as the docs show it
WALKTHROUGH_SEED = SAMPLES / "earlier_state.jsonl"
MARKER = re.compile(r"^\s*<!--\s*docs-test(?::\s*(?P<files>[^>]*?))?\s*-->\s*$")


# --- the pages' code blocks ----------------------------------------------------------------------

@dataclass
class Block:
    """A fenced block of a page: its language, its lines (without the fence's indent), whether it
    is marked ``<!-- docs-test -->`` and the files the mark asks for, and the csv blocks above it."""

    page: Path
    line: int
    lang: str
    lines: list[str]
    marked: bool = False
    files: list[str] = field(default_factory=list)
    csv_above: list[list[str]] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    found: list[Block] = []
    csvs: list[list[str]] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    number = 0
    while number < len(lines):
        fence = re.match(r"^(\s*)```(\w*)\s*$", lines[number])
        if fence is None:
            number += 1
            continue
        indent, lang = len(fence.group(1)), fence.group(2)
        start = number
        body: list[str] = []
        number += 1
        while number < len(lines) and lines[number].strip() != "```":
            text = lines[number]
            body.append(text[indent:] if text[:indent].strip() == "" else text.lstrip())
            number += 1
        number += 1
        above = next((lines[i] for i in range(start - 1, -1, -1) if lines[i].strip()), "")
        mark = MARKER.match(above)
        files = [name.strip() for name in (mark.group("files") or "").split(",") if name.strip()] if mark else []
        found.append(Block(page, start + 1, lang, body, mark is not None, files, list(csvs)))
        if lang == "csv":
            csvs.append(body)
    return found


def all_blocks() -> list[Block]:
    return [block for page in PAGES for block in blocks(page)]


# --- running commands as the docs show them ------------------------------------------------------

@dataclass
class Ran:
    """A command's exit code and what it printed (stderr, then stdout, as a pipe shows them)."""

    code: int
    err: str = ""
    out: str = ""

    @property
    def lines(self) -> list[str]:
        return self.err.splitlines() + self.out.splitlines()


class Shell:
    """A scratch directory with ``samples`` in it, the sandbox's credentials and project in the
    environment, and the sandbox at ``endpoint``: command lines run as a user's shell would."""

    def __init__(self, directory: Path, endpoint: str, capsys: pytest.CaptureFixture[str],
                 monkeypatch: pytest.MonkeyPatch) -> None:
        self.directory = directory
        self.endpoint = endpoint
        self.capsys = capsys
        self.monkeypatch = monkeypatch
        self.last = 0
        scrub_env(monkeypatch, directory)
        monkeypatch.setenv("BATCHCFG_METADATA_URL", "off")
        monkeypatch.setenv("BATCHCFG_RATE", "0")  # the docs run at --rate 10: only the timings differ
        monkeypatch.setenv("HUAWEICLOUD_SDK_AK", SandboxConfig.ak)
        monkeypatch.setenv("HUAWEICLOUD_SDK_SK", SandboxConfig.sk)
        monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", SandboxConfig.project_id)
        monkeypatch.chdir(directory)
        if not (directory / "samples").exists():
            (directory / "samples").symlink_to(SAMPLES)

    async def run(self, line: str) -> Ran:
        """One command line: an assignment (``export A=B``, ``E=...``, ``unset A``), a batchcfg
        command (in process), or anything else (in bash)."""
        words = shlex.split(line, comments=True)
        if words and words[0] == "unset":
            for name in words[1:]:
                self.monkeypatch.delenv(name, raising=False)
            return Ran(0)
        if words and words[0] == "export":
            words = words[1:]
        if words and all(re.fullmatch(r"[A-Za-z_]\w*=.*", word) for word in words):
            for word in words:
                name, _, value = word.partition("=")
                self.monkeypatch.setenv(name, value)
            return Ran(0)
        if words and Path(words[0]).name == "batchcfg":
            expanded = shlex.split(os.path.expandvars(line.replace(DOC_ENDPOINT, self.endpoint)), comments=True)
            assert not any("*" in word and word not in quoted(line) for word in expanded), (
                f"an unquoted glob, which the shell would expand: {line}")
            self.capsys.readouterr()
            code = await anyio.to_thread.run_sync(cli, *expanded[1:])
            out, err = self.capsys.readouterr()
            ran = Ran(code, err, out)
        elif line.strip() == "echo $?":
            ran = Ran(0, out=f"{self.last}\n")
        else:
            done = await anyio.to_thread.run_sync(lambda: subprocess.run(
                ["bash", "-c", line.replace(DOC_ENDPOINT, self.endpoint)], cwd=self.directory, capture_output=True,
                text=True, env=dict(os.environ), timeout=30))
            ran = Ran(done.returncode, done.stderr, done.stdout)
        self.last = ran.code
        return ran


def quoted(line: str) -> set[str]:
    """The words of ``line`` written in quotes, which the shell does not expand."""
    return {match.group(2) for match in re.finditer(r"(['\"])(.*?)\1", line)}


@asynccontextmanager
async def sandbox_holding(seed: Path) -> AsyncIterator[RunningSandbox]:
    """The sandbox, holding the configs of a ``--seed`` file."""
    async with serve(SandboxConfig()) as sandbox:
        for record in read_seed(seed):
            sandbox.seed(record.pop("config_name"), record, record.pop("project_id", ""))
        yield sandbox


def normal(line: str, directory: Path) -> str:
    """A line of output with what differs from run to run made alike: times, rates, latencies,
    ports, the scratch directory."""
    line = line.rstrip().replace(f"{directory}/", "").replace(str(directory), ".")
    line = re.sub(r"\d{8}T\d{6}Z(-\d+)?", "<time>", line)
    line = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(\+00:00|Z)?", "<time>", line)
    line = re.sub(r" in \d+(\.\d+)? s, \d+(\.\d+)? requests/s", " in <t> s, <r> requests/s", line)
    line = re.sub(r"\b(p50|p95|p99) \d+ ms", r"\1 <n> ms", line)
    return re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:<port>", line)


def agrees(expected: list[str], actual: list[str]) -> bool:
    """``actual`` is ``expected``, where a ``...`` line of ``expected`` stands for any lines."""
    @cache
    def match(i: int, j: int) -> bool:
        if i == len(expected):
            return j == len(actual)
        if expected[i].strip() == "...":
            return any(match(i + 1, k) for k in range(j, len(actual) + 1))
        return j < len(actual) and expected[i] == actual[j] and match(i + 1, j + 1)

    return match(0, 0)


def counts(ran: Ran) -> dict[str, int]:
    """The rows per status of a run's summary (its ``N rows: ...`` line and its conflicts line)."""
    found: dict[str, int] = {}
    for line in ran.err.splitlines():
        if match := re.fullmatch(r"batchcfg: [\d,]+ rows?: (.*)", line):
            found.update({status: int(n.replace(",", "")) for n, status in re.findall(r"(\d[\d,]*) (\w+)", match[1])})
        elif match := re.match(r"batchcfg: ([\d,]+) conflicts?: ", line):
            found[CONFLICT] = int(match[1].replace(",", ""))
    return found


# --- the README's walk-through -------------------------------------------------------------------

def readme_section(title: str | None) -> str:
    """A section of the README (None: the part above the first section)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text.split("\n## ", 1)[0] if title is None else text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def claims(comment: str) -> tuple[dict[str, int], int | None]:
    """A comment's claims: rows per status (``8 succeeded, 3 invalid``), and ``exit N``."""
    rows = {status: int(n) for n, status in re.findall(r"(\d+) (\w+)", comment) if status in STATUSES}
    code = re.search(r"\bexit (\d+)", comment)
    return rows, int(code[1]) if code else None


def test_the_readme_walkthrough_does_what_its_comments_say(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    setup = readme_section(None).split("```sh\n", 1)[1].split("```", 1)[0]
    first = next(line for line in setup.splitlines() if "--sandbox" in line).split("&&")[-1].strip()
    first_claims = readme_section(None).split("```", 2)[2]
    walk = readme_section("A walk-through").split("```sh\n", 1)[1].split("```", 1)[0].splitlines()
    sandbox_line = next(line for line in walk if re.search(r"batchcfg sandbox\b", line))
    seed = Path(shlex.split(sandbox_line, comments=True)[shlex.split(sandbox_line).index("--seed") + 1])
    assert shlex.split(sandbox_line, comments=True)[-1] == "&" and (ROOT / seed).is_file(), sandbox_line

    async def scenario() -> None:
        async with sandbox_holding(ROOT / seed) as sandbox:
            shell = Shell(tmp_path, sandbox.endpoint, capsys, monkeypatch)
            ran = await shell.run(first)  # a user tries the README's first command first, here
            said = re.search(r"`(\d+ rows: [^`]+)`", first_claims)
            exits = re.search(r"\bexits (\d+)", first_claims)
            assert said and f"batchcfg: {said[1]}\n" in ran.err, (first, ran.err)
            assert exits and ran.code == int(exits[1]), (first, ran.code)
            first_backups = set(re.findall(r"backup \(for rollback\): (\S+)", ran.err))
            ours: set[str] = set()
            for line in walk:
                command, _, comment = line.partition("#")
                if not command.strip() or line == sandbox_line or command.split()[0] == "kill":
                    continue
                ran = await shell.run(command)
                if Path(command.split()[0]).name != "batchcfg":
                    continue
                rows, code = claims(comment)
                assert code is not None, f"the comment does not say how it exits: {line}"
                assert (counts(ran), ran.code) == (rows, code), f"{line}\nprinted (exit {ran.code}):\n{ran.err}"
                written = set(re.findall(r"backup \(for rollback\): (\S+)", ran.err))
                ours |= written
                if " rollback " in command:
                    words = shlex.split(command)[2:]
                    named = {name for word in words if not word.startswith("-") and "/" not in word
                             for name in (glob.glob(word) or [word]) if name.endswith(".jsonl")}
                    assert named and named <= ours and not named & first_backups, (
                        f"{line}\nrolls back {sorted(named)}; the walk-through wrote {sorted(ours)}, "
                        f"the README's first command {sorted(first_backups)}")

    anyio.run(scenario)


# --- marked transcripts --------------------------------------------------------------------------

def transcripts() -> list[Block]:
    return [block for block in all_blocks() if block.marked]


def test_some_transcripts_are_marked() -> None:
    marked = transcripts()
    assert len(marked) >= 8 and {block.page.name for block in marked} >= {"report.md", "manifest.md",
                                                                          "migrations.md"}, [b.where for b in marked]


def steps(block: Block) -> Iterator[tuple[str, list[str]]]:
    """The transcript's commands, each with the lines of output shown under it."""
    command: str | None = None
    shown: list[str] = []
    for line in block.lines:
        if line.startswith("$ "):
            if command is not None:
                yield command, shown
            command, shown = line[2:], []
        else:
            assert command is not None, f"{block.where}: output before any command"
            shown.append(line)
    assert command is not None, f"{block.where}: a transcript has '$ ' command lines"
    yield command, shown


@pytest.mark.parametrize("block", transcripts(), ids=lambda block: block.where)
def test_a_transcript_prints_what_the_page_shows(block: Block, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    assert len(block.files) <= len(block.csv_above), f"{block.where}: fewer csv blocks above than {block.files}"
    for name, lines in zip(block.files, block.csv_above[len(block.csv_above) - len(block.files):]):
        (tmp_path / name).write_text("\n".join(lines) + "\n", encoding="utf-8")

    async def scenario() -> None:
        async with sandbox_holding(WALKTHROUGH_SEED) as sandbox:
            shell = Shell(tmp_path, sandbox.endpoint, capsys, monkeypatch)
            for command, shown in steps(block):
                ran = await shell.run(command)
                expected = [normal(line, tmp_path) for line in shown]
                actual = [normal(line, tmp_path) for line in ran.lines]
                assert agrees(expected, actual), (
                    f"{block.where}: $ {command}\n--- the page shows:\n" + "\n".join(expected)
                    + "\n--- the command printed:\n" + "\n".join(actual))

    anyio.run(scenario)


# --- the format of every quoted summary line -----------------------------------------------------

COUNTED = [status for status in STATUSES if status != CONFLICT]  # the conflicts have a line of their own
SENDING = re.compile(r"[\d,]+ requests? \([\d,]+ retr(?:y|ies)\) in \d+\.\d s, \d+\.\d+ requests/s"
                     r"(; latency p50 \d+ ms, p95 \d+ ms)?(; read-to-write window p50 \d+ ms, p99 \d+ ms)?")
HEADLINE = re.compile(r"plan: [\d,]+ to create, [\d,]+ to change, [\d,]+ unchanged, [\d,]+ missing, [\d,]+ invalid, "
                      r"[\d,]+ in conflict(, [\d,]+ failed to read)?(, [\d,]+ cancelled)?; "
                      r"([\d,]+ rows to change lose|1 row to change loses) a value")
CONFLICTS = re.compile(r"[\d,]+ conflicts?: changed since, not sent \(rollback: --force sends anyway, but never "
                       r"deletes; a saved plan: plan again\)")
BY_FIELD = re.compile(r"[a-z_]+(\.\S+)?: ((removed|changed|added) x[\d,]+)(, (changed|added) x[\d,]+)*")


def change_problem(text: str) -> str | None:
    """Why ``text`` is not changes in their text form (``NAME: BEFORE -> AFTER; ...``), or None."""
    try:
        found = parse(text)
    except ValueError as exc:
        return str(exc)
    for name, _, before, after in found:
        if name.startswith("parameter.") and not all(value is None or isinstance(value, str)
                                                     for value in (before, after)):
            return f"{name}: a parameter's values are strings, shown in quotes"
    return None


def format_problems(block: Block) -> Iterator[str]:
    listing = ""  # what the indented lines below belong to: a row's diff, or the changes by field
    lines = [line.split("  # ")[0] if line.startswith("$ ") else line for line in block.lines]
    for number, line in enumerate(lines):
        where = f"{block.page.relative_to(ROOT)}:{block.line + 1 + number}: {line.strip()}"
        text = line.removeprefix("batchcfg: ")
        if line.startswith("batchcfg: ") or not line.startswith(" "):
            listing = ""
        if re.fullmatch(r"row \d+ \S+:", line):
            listing = "row"
        elif text == "changes by field:":
            listing = "fields"
        elif text == "changes:" or "more kinds of change" in text:
            yield f"{where}: the summary's old layout (now 'changes by field:', each field's rows by kind)"
        elif line.strip() == "..." or not line.startswith(("batchcfg: ", " ")):
            continue
        elif listing == "row" and line.startswith("    "):
            problem = change_problem(line.strip())
            if problem:
                yield f"{where}: not a change in its text form ({problem})"
        elif listing == "fields" and re.match(r" {8}\S", line):
            value, _, rows = line.strip().rpartition("  x")
            problem = None if value.startswith("... and") else change_problem("f: " + value)
            if problem or not (value.startswith("... and") or rows.replace(",", "").isdigit()):
                yield f"{where}: not a value change and its rows ({problem})"
        elif listing == "fields" and re.match(r" {4}\S", line):
            if not (BY_FIELD.fullmatch(line.strip()) or line.strip().startswith("... and ")):
                yield f"{where}: not a field and its rows by kind"
        elif match := re.fullmatch(r"([\d,]+) rows?: (.*)", text):
            rows = int(match[1].replace(",", ""))
            parts = [] if match[2] == "none" else match[2].split(", ")
            said = [re.fullmatch(r"([\d,]+) (\w+)", part) for part in parts]
            if not all(said) or any(m[2] not in COUNTED for m in said if m):
                yield f"{where}: not counts per status"
                continue
            statuses = [m[2] for m in said if m]
            if statuses != sorted(statuses, key=COUNTED.index) or (match[2] == "none") != (rows == 0):
                yield f"{where}: the statuses are not in the order the summary gives them"
            following = lines[number + 1].removeprefix("batchcfg: ") if number + 1 < len(lines) else ""
            conflicts = re.match(r"([\d,]+) conflicts?: ", following)
            total = sum(int(m[1].replace(",", "")) for m in said if m) + (int(conflicts[1]) if conflicts else 0)
            if total != rows and "..." not in lines[number + 1:number + 2]:
                yield f"{where}: the counts add up to {total}, not {rows}"
        elif re.match(r"[\d,]+ conflicts?: ", text) and not CONFLICTS.fullmatch(text):
            yield f"{where}: not the conflicts line as printed"
        elif re.match(r"[\d,]+ requests? \(", text) and not SENDING.fullmatch(text):
            yield f"{where}: not the sending line as printed"
        elif text.startswith("plan: ") and not HEADLINE.fullmatch(text):
            yield f"{where}: not a plan's headline as printed"


def test_every_quoted_summary_line_has_the_current_format() -> None:
    problems = [problem for block in all_blocks() for problem in format_problems(block)]
    assert not problems, "quoted output that the commands no longer print:\n" + "\n".join(problems)


def test_changes_quoted_in_the_prose_are_in_their_text_form() -> None:
    """A code span that reads as a change (``worker_server_num: 3 -> 2``) parses as the text form."""
    problems = []
    for page in PAGES:
        prose = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
        for span in re.findall(r"`([^`\n]+)`", prose):
            if re.match(r"[a-z_]+(\.\S+)?: .* -> ", span) and not span.startswith("conflict:"):
                problem = change_problem(span[:-1] if span.count(")") > span.count("(") else span)
                if problem:
                    problems.append(f"{page.relative_to(ROOT)}: `{span}` ({problem})")
    assert not problems, "changes not in their text form:\n" + "\n".join(problems)
