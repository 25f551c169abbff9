"""A manifest row's text cells -> a typed request body, or problems, each naming its column.

:func:`check_row` reads each cell by its field's type (``BATCHCFG.TYPE`` problems when a cell
cannot be read), adds the ``param.<label>`` columns to ``parameter``, then applies the API's rules
(:func:`batchcfg.schema.check_body`). A row changes only what it names: an empty cell keeps the
current value, the ``unset`` column names the fields the row clears, and the rules that need the
whole config wait for it (``deferred``); with ``replace`` the row is the whole config.

>>> row = check_row({"config_name": "resnet", "worker_server_num": "2", "spec_id": "1",
...                  "model_id": "5", "data_url": "/bucket/data/"})
>>> row.body, row.problems
({'worker_server_num': 2, 'model_id': 5, 'spec_id': 1, 'data_url': '/bucket/data/'}, ())
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import errors
from .schema import (ABSENT, BODY_FIELDS, INTEGER_FIELDS, JSON_FIELDS, MAX_CELL_CHARS, PARAM_PREFIX,
                     REQUIRED_FIELDS, UNSET_COLUMN, JsonNumber, Problem, check_body, check_config_name,
                     check_parameter, check_project_id, show)

_INTEGER_RE = re.compile(r"[+-]?[0-9]+(?:\.0*)?")


@dataclass(frozen=True, slots=True)
class CheckedRow:
    """A row after validation, when ``problems`` is empty: the fields it sets (``body``; all of
    them with ``replace``), its ``param.<label>`` cells when it has no ``parameter`` cell
    (``labels``), the fields it clears (``unset``), and the rules that wait for the current
    config (``deferred``: they run on the merged body)."""

    config_name: str
    project_id: str
    body: dict[str, Any]
    problems: tuple[Problem, ...]
    labels: dict[str, str] = field(default_factory=dict)
    unset: tuple[str, ...] = ()
    deferred: tuple[Problem, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


def check_row(cells: Mapping[str, str], *, default_project_id: str = "",
              project_required: bool = False, replace: bool = False) -> CheckedRow:
    """Validate one manifest row. ``cells`` maps column names to stripped text; ``""`` = not set.

    Every problem of the row is reported, each naming its column. ``project_id`` falls back to
    ``default_project_id``; when ``project_required`` a row without either is a problem. By
    default a row changes only what it names (read-modify-write): the rules that need the whole
    config are ``deferred``. With ``replace`` the row is the whole config, checked whole.
    """
    problems: list[Problem] = []
    too_long = {column for column, text in cells.items() if len(text) > MAX_CELL_CHARS}
    problems.extend(Problem(column, errors.RANGE, f"longer than {MAX_CELL_CHARS} characters")
                    for column in sorted(too_long))
    name = "" if "config_name" in too_long else cells.get("config_name", "")
    if "config_name" not in too_long and (problem := check_config_name(name)) is not None:
        problems.append(problem)
    project_id = cells.get("project_id", "") or default_project_id
    if project_id:
        if (problem := check_project_id(project_id[:MAX_CELL_CHARS])) is not None:
            problems.append(problem)
    elif project_required:
        problems.append(Problem("project_id", errors.REQUIRED,
                                "no project_id cell, and no --project-id or HUAWEICLOUD_SDK_PROJECT_ID"))

    body: dict[str, Any] = {}
    unreadable = set(too_long) | {"parameter"}  # parameter is checked here, with its columns
    for key in BODY_FIELDS:
        text = cells.get(key, "")
        if not text or key in too_long:
            continue
        value, problem = _read_cell(key, text)
        if problem is None:
            body[key] = value
        else:
            problems.append(problem)
            unreadable.add(key)

    param_cells = [(column, column[len(PARAM_PREFIX):], text) for column, text in cells.items()
                   if column.startswith(PARAM_PREFIX) and text and column not in too_long]
    labels: dict[str, str] = {}
    if "parameter" in body or param_cells:
        parameter, param_problems = check_parameter(body.get("parameter", ABSENT), param_cells)
        problems.extend(param_problems)
        if "parameter" in body or replace:
            body["parameter"] = parameter  # the whole list
        else:
            labels = {entry["label"]: entry["value"] for entry in parameter}  # label by label

    ordered = {key: body[key] for key in BODY_FIELDS if key in body}
    if replace:
        problems.extend(check_body(body, skip=unreadable))
        return CheckedRow(name, project_id, ordered, tuple(problems))
    unset = _unset(cells.get(UNSET_COLUMN, ""), ordered, labels)
    problems.extend(unset[1])
    deferred: list[Problem] = []
    problems.extend(check_body(body, skip=unreadable, deferred=deferred))
    return CheckedRow(name, project_id, ordered, tuple(problems), labels, unset[0], tuple(deferred))


def _read_cell(key: str, text: str) -> tuple[Any, Problem | None]:
    """One cell's value by its field's type, or the problem that keeps it from being read."""
    if key in INTEGER_FIELDS:
        value = parse_integer(text)
        if value is None:
            return None, Problem(key, errors.TYPE, f"{show(text)} is not an integer")
        if value is _TOO_LARGE:
            return None, Problem(key, errors.RANGE, f"{show(text)} is far too large")
        return value, None
    if key not in JSON_FIELDS:
        return text, None
    try:
        value = json.loads(text, parse_int=JsonNumber, parse_float=JsonNumber, parse_constant=_reject_constant)
    except ValueError as exc:
        return None, Problem(key, errors.TYPE, f"not valid JSON ({_json_reason(exc)})")
    except RecursionError:
        return None, Problem(key, errors.TYPE, "JSON nested too deeply")
    if key == "data_source" and not (isinstance(value, list) and value):
        return None, Problem(key, errors.TYPE, "must be a non-empty JSON array of objects (the unset column clears it)")
    return value, None


def _unset(text: str, body: Mapping[str, Any], labels: Mapping[str, str]) -> tuple[tuple[str, ...], list[Problem]]:
    """The ``unset`` cell: the fields (and ``param.<label>``) the row clears, separated by commas,
    semicolons or spaces; and its problems."""
    names = tuple(dict.fromkeys(re.split(r"[\s,;]+", text.strip()))) if text.strip() else ()
    problems = []
    for name in names:
        label = name[len(PARAM_PREFIX):] if name.startswith(PARAM_PREFIX) else None
        if label is None and name not in BODY_FIELDS:
            problems.append(Problem(UNSET_COLUMN, errors.FORMAT, f"{show(name)} is not a field of this API"))
        elif name in REQUIRED_FIELDS:
            problems.append(Problem(UNSET_COLUMN, errors.REQUIRED, f"{name} is required: it cannot be cleared"))
        elif name in body or (label is not None and (label in labels or "parameter" in body)):
            problems.append(Problem(UNSET_COLUMN, errors.CONFLICT, f"{name} is both set and cleared in this row"))
    return names, problems


_TOO_LARGE = object()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_integer(text: str) -> int | object | None:
    """The integer a cell holds (``3``, ``3.0``); None if it is not one; ``_TOO_LARGE`` for one
    with more digits than any Long (``int()`` refuses over 4,300 digits anyway)."""
    if not _INTEGER_RE.fullmatch(text):
        return None
    digits = text.split(".", 1)[0]
    significant = digits.lstrip("+-").lstrip("0")
    if len(significant) > 19:
        return _TOO_LARGE
    value = int(significant or "0")
    return -value if digits.startswith("-") else value


def _json_reason(exc: ValueError) -> str:
    return exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)


