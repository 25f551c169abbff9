"""Configs as read back (the Details API): the writable body they hold, and what a row changes.

>>> writable_body({"config_name": "x", "worker_server_num": "2", "spec_id": 1, "model_id": 0,
...                "data_url": "/b/d/", "engine_name": "TensorFlow"})
{'worker_server_num': 2, 'spec_id': 1, 'data_url': '/b/d/'}
>>> changes({"worker_server_num": 1, "spec_id": 1}, {"worker_server_num": 2})
['worker_server_num: 1 -> 2']
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .cells import parse_integer
from .schema import BODY_FIELDS, INTEGER_FIELDS, check_parameter

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
            parsed = parse_integer(str(value)) if not isinstance(value, bool) else None
            value = parsed if isinstance(parsed, int) else value
        elif field == "parameter" and isinstance(value, list):
            value = check_parameter(value)[0]
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
