"""``batchcfg export``: the configs of a project as a manifest that ``apply`` reads back unchanged.

The names come from the List API, page by page (up to 1,000 a page, until ``config_total_count``
names are in hand or a page comes back empty: one page is never trusted to be all), filtered by
a name pattern (``fnmatch``; its longest literal part goes to List's ``search_content``) and a
config type. Each config is then read (Details) through the run's sender, like any row.

The manifest has the columns ``apply`` reads, its cells as text. Parameters get a
``param.<label>`` column each when that is lossless (every label a plain header, no empty value,
at most :data:`MAX_PARAM_COLUMNS` labels in all); otherwise the ``parameter`` JSON column holds
each config's whole list. A ``#exported`` column (ignored by the loader) says when the export
ran, and marks the file as batchcfg's: its cells defused for spreadsheets are read back as they
were.

>>> columns, rows = manifest_table([("a", "p", {"worker_server_num": 2, "spec_id": 1, "model_id": 7,
...     "data_url": "/b/d/", "parameter": [{"label": "lr", "value": 0.01}]})], project_column=False, when="t")
>>> [(c, v) for c, v in zip(columns, rows[0]) if v]
[('config_name', 'a'), ('worker_server_num', '2'), ('spec_id', '1'), ('model_id', '7'), ('data_url', '/b/d/'), ('param.lr', '0.01'), ('#exported', 't')]
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UsageError
from .files import write_table
from .manifest import EXPORT_MARKER
from .schema import PARAM_PREFIX

if TYPE_CHECKING:
    from .client import Client
    from .sender import Sender

PER_PAGE = 1000  # the most List gives a page
MAX_PARAM_COLUMNS = 50
EXPORT_SUFFIXES = (".csv", ".xlsx", ".jsonl")
# The manifest's columns, in the order of the samples: as a person reads a config.
COLUMNS = ("config_name", "config_desc", "worker_server_num", "spec_id", "engine_id", "model_id", "app_url",
           "boot_file_url", "data_url", "dataset_id", "dataset_version_id", "data_source", "parameter",
           "train_url", "log_url", "user_image_url", "user_command")


async def list_names(client: Client, sender: Sender, project_id: str, *, pattern: str | None = None,
                     config_type: str | None = None) -> list[str]:
    """The names of the project's configs that match ``pattern``, sorted. A List call that fails
    stops the export before anything is read (a :class:`UsageError`)."""
    query = [("per_page", str(PER_PAGE)), ("sortBy", "config_name"), ("order", "asc")]
    literal = max(re.split(r"[*?]+|\[[^\]]*\]?", pattern or ""), key=len)  # what every match contains
    if literal:
        query.append(("search_content", literal))
    if config_type:
        query.append(("config_type", config_type))
    names: dict[str, None] = {}
    page, pages = 1, None
    while pages is None or page <= pages:
        answer = await sender.call(partial(client.list_configs, project_id, [*query, ("page", str(page))]))
        if answer is None:
            raise UsageError(f"export: stopped while listing the configs ({sender.stop_reason})")
        configs, total = (answer.body or {}).get("configs"), (answer.body or {}).get("config_total_count")
        if not answer.ok or not isinstance(configs, list):
            raise UsageError(f"export: cannot list the configs of project {project_id}: "
                             f"{answer.error_code or 'no configs'} {answer.error_message}".rstrip())
        names.update((c["config_name"], None) for c in configs
                     if isinstance(c, dict) and isinstance(c.get("config_name"), str))
        if not configs or (isinstance(total, int) and len(names) >= total):
            break
        pages = -(-total // PER_PAGE) + 1 if isinstance(total, int) else None  # one more, in case it grew
        page += 1
    return sorted(name for name in names if pattern is None or fnmatch.fnmatchcase(name, pattern))


def manifest_table(configs: Iterable[tuple[str, str, dict[str, Any]]], *, project_column: bool,
                   when: str) -> tuple[list[str], list[list[str]]]:
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
        values.update({"config_name": name, "project_id": project_id, EXPORT_MARKER: when})
        rows.append([values.get(column, "") for column in columns])
    return columns, rows


def write_manifest(path: Path, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """The manifest as ``.csv`` (with a byte order mark, for Excel), ``.xlsx`` (text cells) or
    ``.jsonl``, atomically."""
    write_table(path, columns, rows, raw=path.suffix.lower() == ".jsonl", bom=True, sheet="configs")


def _param_labels(lists: Sequence[list[dict[str, Any]]]) -> list[str] | None:
    """The labels for ``param.<label>`` columns, in first-seen order; None when those columns
    would lose something (then the ``parameter`` JSON column is used)."""
    labels: dict[str, None] = {}
    for parameters in lists:
        for entry in parameters:
            label, value = str(entry.get("label", "")), entry.get("value")
            plain_value = isinstance(value, str | int | float) and not isinstance(value, bool) and value != ""
            if not label or label != label.strip() or not plain_value:
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
