"""The rules of "Modifying a Training Job Configuration": manifest cells -> request body, or problems.

Two layers, so that the sandbox checks bodies by exactly the rules the tool checks rows by:

- :func:`check_row` turns one row's text cells into a typed body (``BATCHCFG.TYPE`` problems when a
  cell cannot be read), then applies :func:`check_body`.
- :func:`check_body` applies the API's rules to a JSON body: types, lengths, ranges, path forms,
  and the fields that go together or exclude each other.

>>> row = check_row({"config_name": "resnet", "worker_server_num": "2", "spec_id": "1",
...                  "model_id": "5", "data_url": "/bucket/data/"})
>>> row.body, row.problems
({'worker_server_num': 2, 'model_id': 5, 'spec_id': 1, 'data_url': '/bucket/data/'}, ())
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import errors

PARAM_PREFIX = "param."
MAX_CELL_CHARS = 32 * 1024
MAX_DESC_CHARS = 256
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1

# Request body fields, in the order of the API page.
STRING_FIELDS = ("config_desc", "app_url", "boot_file_url", "data_url", "dataset_id",
                 "dataset_version_id", "train_url", "log_url", "user_image_url", "user_command")
INTEGER_FIELDS = {"worker_server_num": INT32_MAX, "model_id": INT64_MAX, "spec_id": INT64_MAX,
                  "engine_id": INT64_MAX}
JSON_FIELDS = ("parameter", "data_source")
BODY_FIELDS = ("config_desc", "worker_server_num", "app_url", "boot_file_url", "model_id", "parameter",
               "spec_id", "data_url", "dataset_id", "dataset_version_id", "data_source", "engine_id",
               "train_url", "log_url", "user_image_url", "user_command")
OBS_FIELDS = ("app_url", "boot_file_url", "data_url", "train_url", "log_url")
# Manifest columns (CONTRACT.md), besides any number of ``param.<label>`` columns.
COLUMNS = ("config_name", *BODY_FIELDS, "project_id")

CONFIG_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
PROJECT_ID_RE = re.compile(r"[0-9a-f]{32}")
_INTEGER_RE = re.compile(r"[+-]?[0-9]+(?:\.0*)?")
# An OBS path as the API documents it: /bucket/key..., bucket names as OBS allows them.
_OBS_RE = re.compile(r"/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](?:/[^/]+)*/?")
_IMAGE_RE = re.compile(
    r"[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)+"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[0-9a-f]{64})?")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_EXCEPT_SPACE_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # tab and newline allowed
_FREE_TEXT_FIELDS = ("config_desc", "user_command")
_PARAMETER_KEYS = {"label", "value"}
_DATA_SOURCE_KEYS = {"dataset_id", "dataset_version", "type", "data_url"}


@dataclass(frozen=True, slots=True)
class Problem:
    """One broken rule: the column it is about, a local error code, and what is wrong."""

    column: str
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.column}: {self.message}"


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


def check_config_name(name: str) -> Problem | None:
    """``config_name`` goes into the URL path: 1-64 letters, digits, ``_`` or ``-``, nothing else."""
    if not name:
        return Problem("config_name", errors.REQUIRED, "required")
    if not CONFIG_NAME_RE.fullmatch(name):
        return Problem("config_name", errors.FORMAT,
                       f"{_show(name)} is not 1-64 letters, digits, '_' or '-'")
    return None


def check_project_id(project_id: str, column: str = "project_id") -> Problem | None:
    """A project id is 32 lowercase hex characters; it goes into the URL path."""
    if not PROJECT_ID_RE.fullmatch(project_id):
        return Problem(column, errors.FORMAT, f"{_show(project_id)} is not 32 lowercase hex characters")
    return None


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
            value = _parse_integer(text)
            if value is None:
                problems.append(Problem(field, errors.TYPE, f"{_show(text)} is not an integer"))
                unreadable.add(field)
            elif value is _TOO_LARGE:
                problems.append(Problem(field, errors.RANGE, f"{_show(text)} is far too large"))
                unreadable.add(field)
            else:
                body[field] = value
        elif field in JSON_FIELDS:
            try:
                body[field] = json.loads(text, parse_int=_Number, parse_float=_Number,
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
        body["parameter"], param_problems = _check_parameter(body.get("parameter", _ABSENT), param_cells)
        problems.extend(param_problems)

    problems.extend(check_body(body, skip=unreadable))
    ordered = {field: body[field] for field in BODY_FIELDS if field in body}
    return CheckedRow(name, project_id, ordered, tuple(problems))


def check_body(body: Mapping[str, Any], *, skip: set[str] | frozenset[str] = frozenset()) -> list[Problem]:
    """The API's rules on a request body (parsed JSON). Fields in ``skip`` are known unreadable:
    they are neither checked again nor reported missing."""
    problems: list[Problem] = []
    present = {field for field in BODY_FIELDS if body.get(field) not in (None, "")} | set(skip)

    for field in body:
        if field not in BODY_FIELDS:
            problems.append(Problem(field, errors.FORMAT, "not a field of this API"))

    for field, maximum in INTEGER_FIELDS.items():
        if field in body and field not in skip:
            value = body[field]
            if not isinstance(value, int) or isinstance(value, bool):
                problems.append(Problem(field, errors.TYPE, f"{_show(value)} is not an integer"))
            elif not 1 <= value <= maximum:
                problems.append(Problem(field, errors.RANGE, f"{value} is not between 1 and {maximum}"))
    for field in ("worker_server_num", "spec_id"):
        if field not in present:
            problems.append(Problem(field, errors.REQUIRED, "required"))

    for field in STRING_FIELDS:
        if field in body and field not in skip:
            problems.extend(_check_string(field, body[field]))

    problems.extend(_check_code(body, present, skip))
    problems.extend(_check_data(body, present, skip))
    if "user_command" in present and "user_image_url" not in present:
        problems.append(Problem("user_command", errors.CONFLICT,
                                "is the boot command of a custom image: set user_image_url too"))
    if "parameter" in body and "parameter" not in skip:
        problems.extend(_check_parameter(body["parameter"])[1])
    return problems


def _check_string(field: str, value: Any) -> list[Problem]:
    if not isinstance(value, str):
        return [Problem(field, errors.TYPE, f"{_show(value)} is not a string")]
    if len(value) > MAX_CELL_CHARS:
        return [Problem(field, errors.RANGE, f"longer than {MAX_CELL_CHARS} characters")]
    control = _CONTROL_EXCEPT_SPACE_RE if field in _FREE_TEXT_FIELDS else _CONTROL_RE
    if control.search(value):
        return [Problem(field, errors.FORMAT, "contains a control character")]
    if field == "config_desc" and len(value) > MAX_DESC_CHARS:
        return [Problem(field, errors.RANGE, f"{len(value)} characters, at most {MAX_DESC_CHARS}")]
    if field in OBS_FIELDS and value:
        return _check_obs_path(field, value)
    if field == "user_image_url" and value and not _IMAGE_RE.fullmatch(value):
        return [Problem(field, errors.FORMAT,
                        f"{_show(value)} is not an SWR image such as swr.example.com/org/image:tag")]
    return []


def _check_obs_path(field: str, value: str) -> list[Problem]:
    if "://" in value:
        return [Problem(field, errors.FORMAT, f"{_show(value)}: write OBS paths as /bucket/path/, "
                                              "without a scheme")]
    if not _OBS_RE.fullmatch(value) or "/../" in value + "/" or "/./" in value + "/":
        return [Problem(field, errors.FORMAT,
                        f"{_show(value)} is not an OBS path such as /bucket/dir/")]
    if field == "boot_file_url" and value.endswith("/"):
        return [Problem(field, errors.FORMAT, f"{_show(value)} is a directory, not a boot file")]
    return []


def _check_code(body: Mapping[str, Any], present: set[str], skip: set[str] | frozenset[str]) -> list[Problem]:
    """Exactly one of model_id, or app_url together with boot_file_url."""
    has_app, has_boot = "app_url" in present, "boot_file_url" in present
    if "model_id" in present and (has_app or has_boot):
        column = "app_url" if has_app else "boot_file_url"
        return [Problem(column, errors.CONFLICT, "model_id (built-in algorithm) excludes "
                                                 "app_url and boot_file_url: set one or the other")]
    if has_app != has_boot:
        missing, given = ("boot_file_url", "app_url") if has_app else ("app_url", "boot_file_url")
        return [Problem(missing, errors.CONFLICT, f"goes together with {given}: set both")]
    if not has_app and "model_id" not in present:
        return [Problem("model_id", errors.REQUIRED, "set model_id, or app_url and boot_file_url")]
    app, boot = body.get("app_url"), body.get("boot_file_url")
    if has_app and isinstance(app, str) and isinstance(boot, str):
        directory = app if app.endswith("/") else app + "/"
        if not boot.startswith(directory):
            return [Problem("boot_file_url", errors.CONFLICT, f"{_show(boot)} is not inside app_url "
                                                              f"{_show(directory)}")]
    return []


def _check_data(body: Mapping[str, Any], present: set[str], skip: set[str] | frozenset[str]) -> list[Problem]:
    """Exactly one of data_url, dataset_id + dataset_version_id, or data_source."""
    problems = []
    has_id, has_version = "dataset_id" in present, "dataset_version_id" in present
    if has_id != has_version:
        missing, given = ("dataset_version_id", "dataset_id") if has_id else ("dataset_id", "dataset_version_id")
        problems.append(Problem(missing, errors.CONFLICT, f"goes together with {given}: set both"))
    chosen = [name for name, on in (("data_url", "data_url" in present),
                                    ("dataset_id", has_id or has_version),
                                    ("data_source", "data_source" in present)) if on]
    if not chosen:
        problems.append(Problem("data_url", errors.REQUIRED,
                                "set one of data_url, dataset_id + dataset_version_id, or data_source"))
    elif len(chosen) > 1:
        problems.append(Problem(chosen[1], errors.CONFLICT,
                                f"excludes {chosen[0]}: set only one of data_url, "
                                "dataset_id + dataset_version_id, or data_source"))
    if "data_source" in body and "data_source" not in skip:
        problems.extend(_check_data_source(body["data_source"]))
    return problems


def _check_data_source(value: Any) -> list[Problem]:
    if not isinstance(value, list) or not value:
        return [Problem("data_source", errors.TYPE, "must be a non-empty JSON array of objects")]
    problems = []
    kinds = set()
    for index, entry in enumerate(value):
        column = f"data_source[{index}]"
        if not isinstance(entry, dict):
            problems.append(Problem(column, errors.TYPE, "must be a JSON object"))
            continue
        unknown = sorted(set(entry) - _DATA_SOURCE_KEYS)
        if unknown:
            problems.append(Problem(column, errors.TYPE, f"unknown key {unknown[0]!r}; keys are "
                                                         + ", ".join(sorted(_DATA_SOURCE_KEYS))))
            continue
        bad = [key for key, item in entry.items() if not isinstance(item, str) or isinstance(item, _Number)]
        if bad:
            problems.append(Problem(column, errors.TYPE, f"{bad[0]} must be a string"))
            continue
        kind = entry.get("type") or ("obs" if entry.get("data_url") else "dataset")
        if kind not in ("obs", "dataset"):
            problems.append(Problem(column, errors.FORMAT, f"type {_show(kind)} is not obs or dataset"))
            continue
        kinds.add(kind)
        has_dataset = bool(entry.get("dataset_id") or entry.get("dataset_version"))
        if kind == "obs":
            if has_dataset:
                problems.append(Problem(column, errors.CONFLICT, "type obs excludes dataset_id and "
                                                                 "dataset_version"))
            elif not entry.get("data_url"):
                problems.append(Problem(column, errors.REQUIRED, "type obs needs data_url"))
            else:
                problems.extend(Problem(column, p.code, p.message)
                                for p in _check_obs_path("data_url", entry["data_url"]))
        elif entry.get("data_url"):
            problems.append(Problem(column, errors.CONFLICT, "type dataset excludes data_url"))
        elif not (entry.get("dataset_id") and entry.get("dataset_version")):
            problems.append(Problem(column, errors.CONFLICT, "type dataset needs dataset_id and "
                                                             "dataset_version together"))
    if len(kinds) > 1:
        problems.append(Problem("data_source", errors.CONFLICT, "mixes obs and dataset entries"))
    return problems


def _check_parameter(value: Any, cells: Sequence[tuple[str, str, str]] = ()
                     ) -> tuple[list[dict[str, str]], list[Problem]]:
    """Check ``parameter`` entries, plus ``(column, label, text)`` of ``param.<label>`` cells.

    Returns the entries with values as strings (the API page's sample sends numbers, its table
    says String: we send strings, and accept either), and the problems found.
    """
    problems: list[Problem] = []
    entries: list[tuple[str, Any, Any]] = []
    if value is not _ABSENT and not isinstance(value, list):
        problems.append(Problem("parameter", errors.TYPE,
                                'must be a JSON array of {"label", "value"} objects'))
    for index, entry in enumerate(value if isinstance(value, list) else ()):
        column = f"parameter[{index}]"
        if not isinstance(entry, dict) or "label" not in entry or set(entry) - _PARAMETER_KEYS:
            problems.append(Problem(column, errors.TYPE, 'must be an object {"label": ..., "value": ...}'))
        else:
            entries.append((column, entry["label"], entry.get("value", "")))
    entries.extend(cells)

    params: list[dict[str, str]] = []
    seen: dict[str, str] = {}
    for column, label, item in entries:
        if not isinstance(label, str) or isinstance(label, _Number) or not label:
            problems.append(Problem(column, errors.TYPE, "label must be a non-empty string"))
            continue
        if isinstance(item, bool):
            text = "true" if item else "false"
        elif isinstance(item, str | int | float):
            text = str(item)
        else:
            problems.append(Problem(column, errors.TYPE, f"value of {label!r} must be a string"))
            continue
        if label in seen:
            problems.append(Problem(column, errors.CONFLICT, f"label {label!r} is also set in {seen[label]}"))
            continue
        seen[label] = column
        params.append({"label": str(label), "value": text})
    return params, problems


_ABSENT = object()  # no parameter JSON cell
_TOO_LARGE = object()


class _Number(str):
    """A JSON number kept as the text it was typed as (``0.010`` stays ``"0.010"``)."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_integer(text: str) -> int | object | None:
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


def _show(value: Any, limit: int = 60) -> str:
    """A value quoted for a message, shortened, with control characters made visible."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


# -- configs as read back (the Details API) -----------------------------------------------------

UNSET = "(unset)"
# Where a read config carries more than one of these, the first present wins: the Details answer
# fills data_url from a data_source, and app_url may come back beside a built-in algorithm.
_DATA_PRECEDENCE = ("data_source", ("dataset_id", "dataset_version_id"), "data_url")


def writable_body(details: Mapping[str, Any]) -> dict[str, Any]:
    """A config as the Details API returns it -> the body the Modify API takes, normalised the way
    the tool sends it: read-only fields dropped, empty values dropped, integers as integers,
    parameter values as strings. Where the answer carries several data fields, ``data_source``
    wins over ``dataset_id`` + ``dataset_version_id``, which win over ``data_url``; where it
    carries ``model_id``, ``app_url`` and ``boot_file_url`` are dropped."""
    body: dict[str, Any] = {}
    for field in BODY_FIELDS:
        value = details.get(field)
        if value is None or value == "" or value == [] or (field == "model_id" and value in (0, "0")):
            continue  # model_id 0: no built-in algorithm
        if field in INTEGER_FIELDS:
            parsed = _parse_integer(str(value)) if not isinstance(value, bool) else None
            value = parsed if isinstance(parsed, int) else value
        elif field == "parameter" and isinstance(value, list):
            value = _check_parameter(value)[0]
        body[field] = value
    if body.get("model_id"):
        body.pop("app_url", None)
        body.pop("boot_file_url", None)
    for rank, fields in enumerate(_DATA_PRECEDENCE):
        names = (fields,) if isinstance(fields, str) else fields
        if any(name in body for name in names):
            for later in _DATA_PRECEDENCE[rank + 1:]:
                for name in (later,) if isinstance(later, str) else later:
                    body.pop(name, None)
            break
    return {field: body[field] for field in BODY_FIELDS if field in body}


def changes(current: Mapping[str, Any], wanted: Mapping[str, Any], *, every_field: bool = False) -> list[str]:
    """What sending ``wanted`` would change in ``current``: ``field: old -> new`` for each field
    ``wanted`` sets (or, with ``every_field``, each field either sets), ``parameter`` label by
    label (``parameter.lr: 0.01 -> 0.02``)."""
    fields = [f for f in BODY_FIELDS if f in wanted or (every_field and f in current)]
    found = []
    for field in fields:
        old, new = current.get(field), wanted.get(field)
        if field == "parameter" and isinstance(old or [], list) and isinstance(new or [], list):
            before = {p.get("label"): p.get("value") for p in old or [] if isinstance(p, dict)}
            after = {p.get("label"): p.get("value") for p in new or [] if isinstance(p, dict)}
            for label in [*after, *(k for k in before if k not in after)]:
                if before.get(label) != after.get(label):
                    found.append(f"parameter.{label}: {_shown(before.get(label))} -> {_shown(after.get(label))}")
        elif old != new:
            found.append(f"{field}: {_shown(old)} -> {_shown(new)}")
    return found


def _shown(value: Any) -> str:
    if value is None:
        return UNSET
    if isinstance(value, str):
        text = value
    elif type(value) is int:  # most values: the JSON text, without json.dumps' cost
        text = str(value)
    else:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= 80 else text[:77] + "..."
