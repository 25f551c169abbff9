"""``batchcfg export``: the configs of a project as a manifest that ``apply`` reads back unchanged.

The names come from the List API, page by page (up to 1,000 a page; one page is never trusted to
be all), filtered by a name pattern (``fnmatch``; its longest literal part goes to List's
``search_content``) and a config type. Each config is then read (Details) through the run's
sender, like any row. An export is:

- **bounded**: paging stops at a page that is empty, that adds no new name (a server that repeats
  its pages), or that is short once ``config_total_count`` names are in hand; and at
  :data:`MAX_LIST_PAGES` pages or :data:`MAX_EXPORT_NAMES` names whatever the server says;
- **complete, or it says so**: :attr:`Listing.shortfall` names what List did not give (fewer
  distinct names than it counted, a full last page, a cap, entries without a name), and the
  export then exits 1, with the file written all the same;
- **reproducible**: the same configs give byte-identical files (no time in them; an ``.xlsx``
  file's creation time is pinned);
- **exact**: every value goes in as it is, control characters too (in ``.xlsx`` as its
  ``_xHHHH_`` escapes, which the loader reads back). A config a format cannot hold exactly
  (U+FFFE or U+FFFF, or a cell over Excel's 32,767 characters, in ``.xlsx``) is refused for that
  format: its row is ``invalid``, and the message points to ``.jsonl``.

The manifest has the columns ``apply`` reads, its cells as text. Parameters get a
``param.<label>`` column each when that is lossless (every label a plain header, no empty value,
at most :data:`MAX_PARAM_COLUMNS` labels in all); otherwise the ``parameter`` JSON column holds
each config's whole list. A ``#exported`` column (ignored by the loader) marks the file as
batchcfg's, so that its cells defused for spreadsheets are read back as they were; its value is
the same in every row and every export.

>>> columns, rows = manifest_table([("a", "p", {"worker_server_num": 2, "spec_id": 1, "model_id": 7,
...     "data_url": "/b/d/", "parameter": [{"label": "lr", "value": 0.01}]})], project_column=False)
>>> [(c, v) for c, v in zip(columns, rows[0]) if v]
[('config_name', 'a'), ('worker_server_num', '2'), ('spec_id', '1'), ('model_id', '7'), ('data_url', '/b/d/'), ('param.lr', '0.01'), ('#exported', 'batchcfg export')]
"""

from __future__ import annotations

import fnmatch
import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import errors
from .errors import UsageError
from .files import XLSX_MAX_CELL_CHARS, XLSX_UNWRITABLE, write_table
from .manifest import EXPORT_MARKER, IGNORED_PREFIX
from .model import INVALID, SUCCEEDED, Job, Outcome
from .schema import CONTROL_RE, PARAM_PREFIX

if TYPE_CHECKING:
    from .client import Client
    from .sender import Action, Sender

log = logging.getLogger(__name__)

PER_PAGE = 1000  # the most List gives a page
MAX_LIST_PAGES = 10_000  # List calls an export makes at most, whatever the server answers
MAX_EXPORT_NAMES = 1_000_000  # names an export holds at most: apply's default --max-rows reads them all back
MAX_PARAM_COLUMNS = 50
EXPORT_SUFFIXES = (".csv", ".xlsx", ".jsonl")
EXPORT_MARK = "batchcfg export"  # every #exported cell: the same in every export, so that two exports diff clean
EXPORT_CREATED = datetime(1980, 1, 1, tzinfo=timezone.utc)  # an .xlsx export's creation time, as its zip dates
# The manifest's columns, in the order of the samples: as a person reads a config.
COLUMNS = ("config_name", "config_desc", "worker_server_num", "spec_id", "engine_id", "model_id", "app_url",
           "boot_file_url", "data_url", "dataset_id", "dataset_version_id", "data_source", "parameter",
           "train_url", "log_url", "user_image_url", "user_command")

# Why List paging stopped.
END = "end"              # an empty page, or a short one once the count was in hand
REPEAT = "repeat"        # a page that added no new name
PAGES_CAP = "pages cap"  # MAX_LIST_PAGES
NAMES_CAP = "names cap"  # MAX_EXPORT_NAMES


@dataclass(frozen=True)
class Listing:
    """What List gave: the names that match (sorted), and how the paging ended."""

    names: list[str]
    listed: int = 0           # distinct names List gave, before the pattern
    total: int | None = None  # the largest config_total_count a page said (None: no page said one)
    pages: int = 0
    last_full: bool = False   # the last page read held a full PER_PAGE names
    unnamed: int = 0          # entries of List with no config name
    stopped: str = END

    @property
    def shortfall(self) -> str:
        """What the export may lack, as one line for the summary; "" when List gave every name
        it counted and paging ended by itself."""
        lacks = []
        if self.total is not None and self.listed < self.total:
            lacks.append(f"List counted {self.total:,} configs (config_total_count) but gave {self.listed:,} "
                         "distinct names")
        elif self.total is None and self.stopped != END:
            lacks.append(f"List gave no count, and its last page read was full: there may be more than the "
                         f"{self.listed:,} names it gave")
        if self.stopped == REPEAT and lacks:
            lacks.append(f"its page {self.pages} repeated names already listed")
        if self.stopped in (PAGES_CAP, NAMES_CAP):
            cap = f"{MAX_LIST_PAGES:,} pages" if self.stopped == PAGES_CAP else f"{MAX_EXPORT_NAMES:,} names"
            lacks.append(f"listing stopped at the cap of {cap}"
                         + (" with the last page full: there may be more" if self.last_full else ""))
        if self.unnamed:
            lacks.append(f"{self.unnamed:,} entries of List had no config name")
        return f"export incomplete: {'; '.join(lacks)}. The file holds the configs listed" if lacks else ""


async def list_names(client: Client, sender: Sender, project_id: str, *, pattern: str | None = None,
                     config_type: str | None = None) -> Listing:
    """The names of the project's configs that match ``pattern``, sorted, and how complete the
    listing is (:attr:`Listing.shortfall`). A List call that fails stops the export before
    anything is read (a :class:`UsageError`)."""
    query = [("per_page", str(PER_PAGE)), ("sortBy", "config_name"), ("order", "asc")]
    literal = max(re.split(r"[*?]+|\[[^\]]*\]?", pattern or ""), key=len)  # what every match contains
    if literal:
        query.append(("search_content", literal))
    if config_type:
        query.append(("config_type", config_type))
    names: dict[str, None] = {}
    total: int | None = None
    unnamed = page = 0
    while True:
        page += 1
        answer = await sender.call(partial(client.list_configs, project_id, [*query, ("page", str(page))]))
        if answer is None:
            raise UsageError(f"export: stopped while listing the configs ({sender.stop_reason})")
        body = answer.body if isinstance(answer.body, dict) else {}
        configs, count = body.get("configs"), body.get("config_total_count")
        if not answer.ok or not isinstance(configs, list):
            raise UsageError(f"export: cannot list the configs of project {project_id}: "
                             f"{answer.error_code or 'no configs'} {answer.error_message}".rstrip())
        if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
            total = max(total or 0, count)
        before, capped = len(names), False
        for entry in configs:
            name = entry.get("config_name") if isinstance(entry, dict) else None
            if not isinstance(name, str) or not name:
                unnamed += 1
            elif len(names) < MAX_EXPORT_NAMES:
                names[name] = None
            else:
                capped = capped or name not in names
        full = len(configs) >= PER_PAGE
        stopped = (END if not configs or (not full and (total is None or len(names) >= total))
                   else REPEAT if len(names) == before
                   else NAMES_CAP if capped or len(names) >= MAX_EXPORT_NAMES and full
                   else PAGES_CAP if page >= MAX_LIST_PAGES
                   else "")
        if stopped:
            break
        if page % 100 == 0:
            log.info("export: listing: %d names in %d pages of List so far", len(names), page)
    listing = Listing(sorted(name for name in names if pattern is None or fnmatch.fnmatchcase(name, pattern)),
                      len(names), total, page, full, unnamed, stopped)
    log.info("export: List gave %d names in %d pages (config_total_count %s); %d match",
             listing.listed, page, "none" if total is None else total, len(listing.names))
    return listing


def fitting(read: Action, found: dict[int, dict[str, Any]], suffix: str) -> Action:
    """``read`` (which puts each config's writable body in ``found``), and then the config
    refused, its row ``invalid`` and its body dropped, when a ``suffix`` file cannot hold it
    exactly (:func:`unfit`)."""
    async def action(sender: Sender, job: Job, outcome: Outcome) -> Outcome:
        outcome = await read(sender, job, outcome)
        if outcome.status == SUCCEEDED:
            problem = unfit(found[job.row], suffix)
            if problem is not None:
                del found[job.row]
                outcome.status, (outcome.error_code, outcome.error_message) = INVALID, problem
        return outcome
    return action


def unfit(body: Mapping[str, Any], suffix: str) -> tuple[str, str] | None:
    """(error code, message) when a config cannot go into a ``suffix`` file exactly: in ``.xlsx``
    a cell with U+FFFE or U+FFFF (XML cannot hold them) or over Excel's 32,767 characters. CSV
    and JSON lines hold every value."""
    if suffix != ".xlsx":
        return None
    for column, text in _cells(body):
        if found := XLSX_UNWRITABLE.search(text):
            return (errors.FORMAT, f"{column} holds U+{ord(found.group()):04X}, which an .xlsx file cannot hold: "
                                   "not exported; export to .jsonl or .csv, which keep it")
        if len(text) > XLSX_MAX_CELL_CHARS:
            return (errors.RANGE, f"{column} is {len(text):,} characters, more than an Excel cell holds "
                                  f"({XLSX_MAX_CELL_CHARS:,}): not exported; export to .jsonl or .csv")
    return None


def _cells(body: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """Every cell a config may be written as: its fields, each parameter's label and value."""
    for key, value in body.items():
        yield key, _cell(value)
    for entry in body.get("parameter") or []:
        if isinstance(entry, dict):
            label = str(entry.get("label", ""))
            yield PARAM_PREFIX + label, label
            yield PARAM_PREFIX + label, _cell(entry.get("value"))


def manifest_table(configs: Iterable[tuple[str, str, dict[str, Any]]], *,
                   project_column: bool) -> tuple[list[str], list[list[str]]]:
    """The header and the rows of the manifest for (name, project, writable body) configs."""
    configs = list(configs)
    labels = _param_labels([body.get("parameter") or [] for _, _, body in configs])
    columns = [c for c in COLUMNS if c != "parameter" or labels is None]
    at = columns.index("train_url")
    columns[at:at] = [PARAM_PREFIX + label for label in labels or ()]
    if project_column:
        columns.append("project_id")
    columns.append(EXPORT_MARKER)
    rows = []
    for name, project_id, body in configs:
        values = {key: _cell(value) for key, value in body.items()}
        values.update({PARAM_PREFIX + str(p["label"]): _cell(p["value"]) for p in body.get("parameter") or []})
        values.update({"config_name": name, "project_id": project_id, EXPORT_MARKER: EXPORT_MARK})
        rows.append([values.get(column, "") for column in columns])
    return columns, rows


def write_manifest(path: Path, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """The manifest as ``.csv`` (with a byte order mark, for Excel), ``.xlsx`` (text cells) or
    ``.jsonl``, atomically: values exact (control characters kept), and no time in the file."""
    write_table(path, columns, rows, raw=path.suffix.lower() == ".jsonl", bom=True, sheet="configs", exact=True,
                created=EXPORT_CREATED)


def refused_by_apply(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> list[tuple[str, str]]:
    """The rows that hold a control character which the manifest's own rules refuse (so that
    ``plan`` and ``apply`` would call them ``invalid`` as they are): (config name, problems)."""
    from .cells import check_row
    from .schema import describe

    refused = []
    for row in rows:
        if any(CONTROL_RE.search(value) for value in row):
            cells = {column: value.strip() for column, value in zip(columns, row) if not column.startswith(IGNORED_PREFIX)}
            problems = check_row(cells).problems
            if problems:
                refused.append((cells.get("config_name", ""), describe(list(problems))))
    return refused


def _param_labels(lists: Sequence[list[dict[str, Any]]]) -> list[str] | None:
    """The labels for ``param.<label>`` columns, in first-seen order; None when those columns
    would lose something (then the ``parameter`` JSON column is used)."""
    labels: dict[str, None] = {}
    for parameters in lists:
        for entry in parameters:
            label, value = str(entry.get("label", "")), entry.get("value")
            plain_value = isinstance(value, str | int | float) and not isinstance(value, bool) and value != ""
            if not label or label != label.strip() or not label.isprintable() or not plain_value:
                return None  # a header is stripped, and an empty cell means "keep"
            labels[label] = None
    return list(labels) if len(labels) <= MAX_PARAM_COLUMNS else None


def _cell(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
