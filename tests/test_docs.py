"""The documentation keeps up with the CLI, and stays inside the repository.

- Every command (``batchcfg validate``, ``batchcfg config show``, ...) and every option string of
  every command (``--rate``, ``--no-backup``, ``-v``, ...) appears somewhere in ``docs/*.md``.
- No page of README.md or docs/ points outside the repository (to the sibling folder of shared
  specs, or to an absolute ``/work/...`` path): a clone has neither.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
HELP = {"-h", "--help"}


def _subcommands(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def _walk(parser: argparse.ArgumentParser,
          path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """The parser and every subcommand under it, nested ones too (``config show``), with their paths."""
    yield path, parser
    for name, sub in _subcommands(parser):
        yield from _walk(sub, (*path, name))


def _docs_text() -> str:
    pages = sorted(DOCS.glob("*.md"))
    assert pages, f"no documentation pages in {DOCS}"
    return "\n".join(page.read_text(encoding="utf-8") for page in pages)


def _mentions(text: str, word: str) -> bool:
    """``word`` appears on its own: ``--token`` is not found inside ``--token-file``."""
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text) is not None


def test_every_command_and_flag_is_documented() -> None:
    from batchcfg.cli import build_parser

    text = _docs_text()
    commands: set[str] = set()
    flags: dict[str, set[str]] = {}
    for path, parser in _walk(build_parser()):
        if path:
            commands.add("batchcfg " + " ".join(path))
        for action in parser._actions:
            for option in action.option_strings:
                if option not in HELP:
                    flags.setdefault(option, set()).add(" ".join(path) or "batchcfg")

    assert {"batchcfg validate", "batchcfg apply", "batchcfg config show"} <= commands, commands
    assert {"--rate", "--no-backup", "-v"} <= flags.keys(), sorted(flags)
    missing_commands = sorted(command for command in commands if command not in text)
    missing_flags = sorted(flag for flag in flags if not _mentions(text, flag))
    assert not missing_commands and not missing_flags, (
        "not documented anywhere in docs/*.md:\n"
        + "".join(f"  command {command}\n" for command in missing_commands)
        + "".join(f"  flag {flag} (of {', '.join(sorted(flags[flag]))})\n" for flag in missing_flags))


# Paths that leave the repository. "/home/work/..." inside a container's command line is not one.
OUTSIDE = re.compile(r"\.\./shared|(?<![\w.-])/work/")


def test_docs_point_nowhere_outside_the_repository() -> None:
    pages = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
    found = [f"{page.relative_to(ROOT)}:{number}: {line.strip()}"
             for page in pages
             for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
             if OUTSIDE.search(line)]
    assert not found, "paths outside the repository:\n" + "\n".join(found)


def _anchors(page: Path) -> set[str]:
    """The anchors GitHub makes of a page's headings: lower case, punctuation dropped, - for spaces."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_relative_links_resolve() -> None:
    """Every relative Markdown link in README.md and docs/ names a file of the repository, and a
    heading of it when the link has an anchor."""
    pages = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            resolved = (page.parent / file).resolve() if file else page
            if not resolved.is_relative_to(ROOT) or not resolved.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
            elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "links that lead nowhere in the repository:\n" + "\n".join(broken)
