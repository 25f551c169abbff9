"""The rules of "Modifying a Training Job Configuration", on a request body: types, lengths,
ranges, path forms, and the fields that go together or exclude each other.

The tool checks each row's body by these rules (:mod:`batchcfg.cells` reads the cells into a body
first), and the sandbox checks the bodies it receives by the same ones.

>>> [str(p) for p in check_body({"worker_server_num": 0, "spec_id": 1, "model_id": 5, "data_url": "/bucket/d/"})]
['worker_server_num: 0 is not between 1 and 2147483647']
"""

from __future__ import annotations

import json
import re

import orjson
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
REQUIRED_FIELDS = ("worker_server_num", "spec_id")
# The alternatives of the code and of the data: a config has exactly one of each group. A row
# that sets one alternative drops the others from the config it changes (merge.py).
ALTERNATIVES = ((("model_id",), ("app_url", "boot_file_url")),
                (("data_url",), ("dataset_id", "dataset_version_id"), ("data_source",)))
UNSET_COLUMN = "unset"  # names the fields a row clears
# Manifest columns (docs/contract.md), besides any number of ``param.<label>`` columns.
COLUMNS = ("config_name", *BODY_FIELDS, "project_id", UNSET_COLUMN)

CONFIG_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
PROJECT_ID_RE = re.compile(r"[0-9a-f]{32}")
# An OBS path as the API documents it: /bucket/key..., bucket names as OBS allows them.
_OBS_RE = re.compile(r"/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](?:/[^/]+)*/?")
_IMAGE_RE = re.compile(
    r"[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)+"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[0-9a-f]{64})?")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")  # what no field but the free-text ones may hold
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


def describe(problems: list[Problem]) -> str:
    """``column: message`` for each problem; codes shown where they differ from the first."""
    first = problems[0].code
    return "; ".join(str(p) if p.code == first else f"{p} ({p.code})" for p in problems)


def encode_body(body: Mapping[str, Any]) -> bytes:
    """A request body as sent: compact JSON, fields in the API's order, non-ASCII kept. The one
    serialisation of a body: ``--resume`` matches rows on its SHA-256. orjson makes it: the same
    bytes as ``json.dumps(separators=(",", ":"), ensure_ascii=False)`` for every body a row makes
    (text and whole numbers), twenty times faster; the standard library takes what orjson refuses."""
    try:
        return orjson.dumps(body)
    except TypeError:  # orjson.JSONEncodeError: a number beyond 64 bits, a lone surrogate
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def check_config_name(name: str) -> Problem | None:
    """``config_name`` goes into the URL path: 1-64 letters, digits, ``_`` or ``-``, nothing else."""
    if not name:
        return Problem("config_name", errors.REQUIRED, "required")
    if not CONFIG_NAME_RE.fullmatch(name):
        return Problem("config_name", errors.FORMAT,
                       f"{show(name)} is not 1-64 letters, digits, '_' or '-'")
    return None


def check_project_id(project_id: str, column: str = "project_id") -> Problem | None:
    """A project id is 32 lowercase hex characters; it goes into the URL path."""
    if not PROJECT_ID_RE.fullmatch(project_id):
        return Problem(column, errors.FORMAT, f"{show(project_id)} is not 32 lowercase hex characters")
    return None


def check_body(body: Mapping[str, Any], *, skip: set[str] | frozenset[str] = frozenset(),
               deferred: list[Problem] | None = None) -> list[Problem]:
    """The API's rules on a request body (parsed JSON). Fields in ``skip`` are known unreadable:
    they are neither checked again nor reported missing. With ``deferred`` given, ``body`` is only
    what a row changes: the problems of the rules that need the whole config (required fields,
    fields that go together, a custom image's boot command) go there instead, to wait for the
    body merged over the current config."""
    problems: list[Problem] = []
    whole_rules = problems if deferred is None else deferred
    present = {field for field in BODY_FIELDS if body.get(field) not in (None, "", [])} | set(skip)

    for field in body:
        if field not in BODY_FIELDS:
            problems.append(Problem(field, errors.FORMAT, "not a field of this API"))

    for field, maximum in INTEGER_FIELDS.items():
        if field in body and field not in skip:
            value = body[field]
            if not isinstance(value, int) or isinstance(value, bool):
                problems.append(Problem(field, errors.TYPE, f"{show(value)} is not an integer"))
            elif not 1 <= value <= maximum:
                problems.append(Problem(field, errors.RANGE, f"{value} is not between 1 and {maximum}"))
    for field in REQUIRED_FIELDS:
        if field not in present:
            whole_rules.append(Problem(field, errors.REQUIRED, "required"))

    for field in STRING_FIELDS:
        if field in body and field not in skip:
            problems.extend(_check_string(field, body[field]))

    problems.extend(_check_code(body, present, whole_rules))
    problems.extend(_check_data(body, present, skip, whole_rules))
    if "user_command" in present and "user_image_url" not in present:
        whole_rules.append(Problem("user_command", errors.CONFLICT,
                                "is the boot command of a custom image: set user_image_url too"))
    if "parameter" in body and "parameter" not in skip:
        problems.extend(check_parameter(body["parameter"])[1])
    return problems


def _check_string(field: str, value: Any) -> list[Problem]:
    if not isinstance(value, str):
        return [Problem(field, errors.TYPE, f"{show(value)} is not a string")]
    if len(value) > MAX_CELL_CHARS:
        return [Problem(field, errors.RANGE, f"longer than {MAX_CELL_CHARS} characters")]
    control = _CONTROL_EXCEPT_SPACE_RE if field in _FREE_TEXT_FIELDS else CONTROL_RE
    if control.search(value):
        return [Problem(field, errors.FORMAT, "contains a control character")]
    if field == "config_desc" and len(value) > MAX_DESC_CHARS:
        return [Problem(field, errors.RANGE, f"{len(value)} characters, at most {MAX_DESC_CHARS}")]
    if field in OBS_FIELDS and value:
        return _check_obs_path(field, value)
    if field == "user_image_url" and value and not _IMAGE_RE.fullmatch(value):
        return [Problem(field, errors.FORMAT,
                        f"{show(value)} is not an SWR image such as swr.example.com/org/image:tag")]
    return []


def _check_obs_path(field: str, value: str) -> list[Problem]:
    if "://" in value:
        return [Problem(field, errors.FORMAT, f"{show(value)}: write OBS paths as /bucket/path/, "
                                              "without a scheme")]
    if not _OBS_RE.fullmatch(value) or "/../" in value + "/" or "/./" in value + "/":
        return [Problem(field, errors.FORMAT,
                        f"{show(value)} is not an OBS path such as /bucket/dir/")]
    if field == "boot_file_url" and value.endswith("/"):
        return [Problem(field, errors.FORMAT, f"{show(value)} is a directory, not a boot file")]
    return []


def _check_code(body: Mapping[str, Any], present: set[str], whole_rules: list[Problem]) -> list[Problem]:
    """Exactly one of model_id, or app_url together with boot_file_url. The problems of the rules
    that need the whole config go to ``whole_rules``."""
    has_app, has_boot = "app_url" in present, "boot_file_url" in present
    if "model_id" in present and (has_app or has_boot):
        column = "app_url" if has_app else "boot_file_url"
        return [Problem(column, errors.CONFLICT, "model_id (built-in algorithm) excludes "
                                                 "app_url and boot_file_url: set one or the other")]
    if has_app != has_boot:
        missing, given = ("boot_file_url", "app_url") if has_app else ("app_url", "boot_file_url")
        whole_rules.append(Problem(missing, errors.CONFLICT, f"goes together with {given}: set both"))
        return []
    if not has_app and "model_id" not in present:
        whole_rules.append(Problem("model_id", errors.REQUIRED, "set model_id, or app_url and boot_file_url"))
        return []
    app, boot = body.get("app_url"), body.get("boot_file_url")
    if has_app and has_boot and isinstance(app, str) and isinstance(boot, str):
        directory = app if app.endswith("/") else app + "/"
        if not boot.startswith(directory):
            return [Problem("boot_file_url", errors.CONFLICT, f"{show(boot)} is not inside app_url "
                                                              f"{show(directory)}")]
    return []


def _check_data(body: Mapping[str, Any], present: set[str], skip: set[str] | frozenset[str],
                whole_rules: list[Problem]) -> list[Problem]:
    """Exactly one of data_url, dataset_id + dataset_version_id, or data_source. The problems of
    the rules that need the whole config go to ``whole_rules``."""
    problems = []
    has_id, has_version = "dataset_id" in present, "dataset_version_id" in present
    if has_id != has_version:
        missing, given = ("dataset_version_id", "dataset_id") if has_id else ("dataset_id", "dataset_version_id")
        whole_rules.append(Problem(missing, errors.CONFLICT, f"goes together with {given}: set both"))
    chosen = [name for name, on in (("data_url", "data_url" in present),
                                    ("dataset_id", has_id or has_version),
                                    ("data_source", "data_source" in present)) if on]
    if not chosen:
        whole_rules.append(Problem("data_url", errors.REQUIRED,
                                "set one of data_url, dataset_id + dataset_version_id, or data_source"))
    elif len(chosen) > 1:
        problems.append(Problem(chosen[1], errors.CONFLICT,
                                f"excludes {chosen[0]}: set only one of data_url, "
                                "dataset_id + dataset_version_id, or data_source"))
    if "data_source" in present and "data_source" not in skip:
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
        bad = [key for key, item in entry.items() if not isinstance(item, str) or isinstance(item, JsonNumber)]
        if bad:
            problems.append(Problem(column, errors.TYPE, f"{bad[0]} must be a string"))
            continue
        kind = entry.get("type") or ("obs" if entry.get("data_url") else "dataset")
        if kind not in ("obs", "dataset"):
            problems.append(Problem(column, errors.FORMAT, f"type {show(kind)} is not obs or dataset"))
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


def check_parameter(value: Any, cells: Sequence[tuple[str, str, str]] = ()
                     ) -> tuple[list[dict[str, str]], list[Problem]]:
    """Check ``parameter`` entries, plus ``(column, label, text)`` of ``param.<label>`` cells.

    Returns the entries with values as strings (the API page's sample sends numbers, its table
    says String: we send strings, and accept either), and the problems found.
    """
    problems: list[Problem] = []
    entries: list[tuple[str, Any, Any]] = []
    if value is not ABSENT and not isinstance(value, list):
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
        if not isinstance(label, str) or isinstance(label, JsonNumber) or not label:
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


ABSENT = object()  # check_parameter: no parameter JSON cell


class JsonNumber(str):
    """A JSON number kept as the text it was typed as (``0.010`` stays ``"0.010"``)."""


def show(value: Any, limit: int = 60) -> str:
    """A value quoted for a message, shortened, with control characters made visible."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"
