"""A manifest row's text cells -> a typed request body, or problems, each naming its column.

:func:`check_row` reads each cell by its field's type (``BATCHCFG.TYPE`` problems when a cell
cannot be read), adds the ``param.<label>`` columns to ``parameter``, then applies the API's rules
(:func:`batchcfg.schema.check_body`).

>>> row = check_row({"config_name": "resnet", "worker_server_num": "2", "spec_id": "1",
...                  "model_id": "5", "data_url": "/bucket/data/"})
>>> row.body, row.problems
({'worker_server_num': 2, 'model_id': 5, 'spec_id': 1, 'data_url': '/bucket/data/'}, ())
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import errors
from .schema import (ABSENT, BODY_FIELDS, INTEGER_FIELDS, JSON_FIELDS, MAX_CELL_CHARS, PARAM_PREFIX, JsonNumber,
                     Problem, check_body, check_config_name, check_parameter, check_project_id, show)

_INTEGER_RE = re.compile(r"[+-]?[0-9]+(?:\.0*)?")


@dataclass(frozen=True, slots=True)
class CheckedRow:
    """A row after validation: the request body when ``problems`` is empty."""

    config_name: str
    project_id: str
    body: dict[str, Any]
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def check_row(cells: Mapping[str, str], *, default_project_id: str = "",
              project_required: bool = False) -> CheckedRow:
    """Validate one manifest row. ``cells`` maps column names to stripped text; ``""`` = not set.

    Every problem of the row is reported, each naming its column. ``project_id`` falls back to
    ``default_project_id``; when ``project_required`` a row without either is a problem.
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
    for field in BODY_FIELDS:
        text = cells.get(field, "")
        if not text or field in too_long:
            continue
        if field in INTEGER_FIELDS:
            value = parse_integer(text)
            if value is None:
                problems.append(Problem(field, errors.TYPE, f"{show(text)} is not an integer"))
                unreadable.add(field)
            elif value is _TOO_LARGE:
                problems.append(Problem(field, errors.RANGE, f"{show(text)} is far too large"))
                unreadable.add(field)
            else:
                body[field] = value
        elif field in JSON_FIELDS:
            try:
                body[field] = json.loads(text, parse_int=JsonNumber, parse_float=JsonNumber,
                                         parse_constant=_reject_constant)
            except ValueError as exc:
                problems.append(Problem(field, errors.TYPE, f"not valid JSON ({_json_reason(exc)})"))
                unreadable.add(field)
            except RecursionError:
                problems.append(Problem(field, errors.TYPE, "JSON nested too deeply"))
                unreadable.add(field)
        else:
            body[field] = text

    param_cells = [(column, column[len(PARAM_PREFIX):], text) for column, text in cells.items()
                   if column.startswith(PARAM_PREFIX) and text and column not in too_long]
    if "parameter" in body or param_cells:
        body["parameter"], param_problems = check_parameter(body.get("parameter", ABSENT), param_cells)
        problems.extend(param_problems)

    problems.extend(check_body(body, skip=unreadable))
    ordered = {field: body[field] for field in BODY_FIELDS if field in body}
    return CheckedRow(name, project_id, ordered, tuple(problems))


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


