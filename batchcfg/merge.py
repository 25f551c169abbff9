"""Configs as the API returns them, and what a row does to them: read-modify-write.

- :func:`writable_body`: the writable fields of a Details answer (read-only fields dropped).
- :class:`Patch`: what one row asks for. By default a row changes only what it names
  (:meth:`Patch.over`): its fields are laid over the config as read; a field it sets from one
  alternative of the code or data group drops the other alternatives; ``param.<label>`` cells set
  one parameter each; the ``unset`` column clears. With ``--replace`` the row is the whole body.
- :func:`check_details`: a Details answer is of the config asked for, its fields typed as the API
  promises, or it is refused (never laid under a row, never backed up as its "before").
- :func:`diff`: every field the PUT would change, removals included, as
  :class:`~batchcfg.change.Change` records, compared as the API returns values: an empty string,
  an empty list and the documented defaults (``engine_id`` 1, ``model_id`` 0) mean "unset"; a
  parameter value that is a JSON number compares by value with the other side (``0.010`` equals
  ``0.01``), two strings compare by their text, without surrounding white space (manifest cells
  drop it).

>>> current = writable_body({"config_name": "x", "worker_server_num": 1, "spec_id": 1, "model_id": 7,
...                          "data_url": "/bucket/d/", "log_url": "/bucket/log/", "engine_id": 1,
...                          "parameter": [{"label": "lr", "value": 0.01}], "engine_name": "TF"})
>>> patch = Patch({"worker_server_num": 2, "dataset_id": "ds", "dataset_version_id": "v1"}, {"lr": "0.010"})
>>> [change.text() for change in diff(current, patch.over(current))]
['worker_server_num: 1 -> 2', 'data_url: "/bucket/d/" -> (unset)', 'dataset_id: (unset) -> "ds"', 'dataset_version_id: (unset) -> "v1"']
>>> check_details("x", {"config_name": "y", "worker_server_num": 1})
"config_name: the answer is for 'y', not 'x'"
"""

from __future__ import annotations

import json
import math

import orjson
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .cells import parse_integer
from .change import Change
from .schema import (ALTERNATIVES, BODY_FIELDS, INTEGER_FIELDS, JSON_FIELDS, PARAM_PREFIX, STRING_FIELDS, UNSET_COLUMN,
                     encode_body, show)

DEFAULTS: dict[str, Any] = {"engine_id": 1, "model_id": 0}  # what the API assumes when a field is unset
# Where a read config carries more than one alternative of a group, the first present here wins:
# the Details answer may fill data_url from a data_source, and app_url may come back beside a
# built-in algorithm (model_id).
_READ_PRECEDENCE = (ALTERNATIVES[0], ALTERNATIVES[1][::-1])


def writable_body(details: Mapping[str, Any]) -> dict[str, Any]:
    """The writable fields of a config as the Details API returns it: read-only fields dropped,
    unset values (``""``, ``[]``, ``model_id`` 0) dropped, integers as integers, parameter values
    as they came (a JSON number stays a number, for :func:`diff`)."""
    body: dict[str, Any] = {}
    for name in BODY_FIELDS:
        value = details.get(name)
        if _blank(value) or (name == "model_id" and value in (0, "0")):
            continue  # engine_id 1 stays: the body sent carries what was read
        if name in INTEGER_FIELDS and type(value) is not int:  # (a checked answer's are ints already)
            parsed = parse_integer(str(value)) if not isinstance(value, bool) else None
            value = parsed if isinstance(parsed, int) else value
        elif name == "parameter" and isinstance(value, list):
            value = [{"label": str(p.get("label")), "value": p.get("value", "")} for p in value
                     if isinstance(p, dict) and p.get("label") not in (None, "")]
        body[name] = value
    for group in _READ_PRECEDENCE:
        present = [names for names in group if any(name in body for name in names)]
        for names in present[1:]:
            for name in names:
                body.pop(name, None)
    return body


@dataclass(frozen=True)
class Patch:
    """What one row asks for: the fields it sets (``parameter``: the whole list), its
    ``param.<label>`` values when it sets no whole list, and the fields it clears."""

    fields: dict[str, Any]
    labels: dict[str, str] = field(default_factory=dict)
    unset: tuple[str, ...] = ()

    def encode(self) -> bytes:
        """The patch as a job's body: the fields, ``param.<label>`` keys, and ``unset``. A row
        that names every field encodes as exactly the body it sends with ``--replace``."""
        data = dict(self.fields)
        data.update({PARAM_PREFIX + label: value for label, value in self.labels.items()})
        if self.unset:
            data[UNSET_COLUMN] = list(self.unset)
        return encode_body(data)

    @classmethod
    def decode(cls, body: bytes) -> Patch:
        data = orjson.loads(body)
        unset = tuple(data.pop(UNSET_COLUMN, ()))
        labels = {key[len(PARAM_PREFIX):]: data.pop(key) for key in list(data) if key.startswith(PARAM_PREFIX)}
        return cls(data, labels, unset)

    def kept(self, current: Mapping[str, Any], columns: Iterable[str]) -> list[str]:
        """The fields of ``columns`` (the manifest's) that this row leaves empty while ``current``
        holds a value for them: kept as they are, as a row changes only what it names."""
        labels = {p["label"]: p["value"] for p in current.get("parameter") or []}
        kept = []
        for column in columns:
            if column.startswith(PARAM_PREFIX):
                label = column[len(PARAM_PREFIX):]
                if label not in self.labels and "parameter" not in self.fields and column not in self.unset \
                        and not _blank(labels.get(label)):
                    kept.append(column)
            elif column in BODY_FIELDS and column not in self.fields and column not in self.unset \
                    and not _unset(column, current.get(column)):
                kept.append(column)
        return kept

    def over(self, current: Mapping[str, Any]) -> dict[str, Any]:
        """The whole body to send: ``current`` with this row laid over it."""
        body = dict(current)
        for group in ALTERNATIVES:
            chosen = [names for names in group if any(name in self.fields for name in names)]
            if chosen:
                for names in group:
                    if names not in chosen:
                        for name in names:
                            body.pop(name, None)
        body.update(self.fields)
        cleared = {name[len(PARAM_PREFIX):] for name in self.unset if name.startswith(PARAM_PREFIX)}
        if self.labels or cleared:
            values = {p["label"]: p["value"] for p in body.get("parameter") or []}
            values.update(self.labels)
            body["parameter"] = [{"label": label, "value": value} for label, value in values.items()
                                 if label not in cleared]
        for name in self.unset:
            body.pop(name, None)
        return whole(current, body)


def whole(current: Mapping[str, Any], target: Mapping[str, Any]) -> dict[str, Any]:
    """The body that turns ``current`` into ``target`` on a server that merges as on one that
    replaces: ``target``'s fields, and each field ``current`` holds that ``target`` clears, sent
    empty (``""``, ``[]``: how the Details API shows an unset field). A cleared ``model_id`` or
    ``engine_id`` is left out: the API has no empty integer."""
    body = sendable(target)
    for name in BODY_FIELDS:
        if name not in body and not _blank(current.get(name)) and name not in INTEGER_FIELDS:
            body[name] = [] if name in JSON_FIELDS else ""
    return {name: body[name] for name in BODY_FIELDS if name in body}


def sendable(body: Mapping[str, Any]) -> dict[str, Any]:
    """A body as the Modify API takes it: fields in the API's order, unset ones left out,
    parameter values as strings (the API's table says String)."""
    out = {name: body[name] for name in BODY_FIELDS if name in body and not _blank(body[name])}
    if "parameter" in out:
        out["parameter"] = [{"label": p["label"], "value": _text(p.get("value"))} for p in out["parameter"]]
    return out


def diff(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[Change]:
    """What sending ``wanted`` (a whole body) would change in ``current``: a record for every
    field that differs, removals included; ``parameter`` label by label."""
    found = []
    for name in BODY_FIELDS:
        old, new = current.get(name), wanted.get(name)
        if old == new and type(old) is type(new):
            continue  # most fields: the same on both sides
        if name == "parameter":
            before, after = _labels(old), _labels(new)
            for label in [*after, *(k for k in before if k not in after)]:
                if not _same_value(before.get(label), after.get(label)):  # shown as sent: text
                    found.append(Change(name, _text_or_none(before.get(label)), _text_or_none(after.get(label)), label))
        else:
            old_unset, new_unset = _unset(name, old), _unset(name, new)
            if old_unset != new_unset or (not old_unset and _stripped(old) != _stripped(new)):
                found.append(Change(name, None if old_unset else old, None if new_unset else new))
    return found


def check_details(config_name: str, details: Mapping[str, Any]) -> str | None:
    """What is wrong with a Details answer for ``config_name``, naming the field, or None. An
    answer for another config (a misrouted gateway, a caching proxy) or with a field of the wrong
    type is never laid under a row: the row would PUT another config's body, or crash."""
    name = details.get("config_name")
    if name != config_name:
        return (f"config_name: the answer is for {show(name)}, not {config_name!r}" if name is not None
                else "config_name: the answer does not say which config it is")
    for field_name in BODY_FIELDS:
        value = details.get(field_name)
        if value is None:
            continue
        if field_name in STRING_FIELDS and not isinstance(value, str):
            return f"{field_name}: {show(value, 40)} is not a string"
        if field_name in INTEGER_FIELDS and (not isinstance(value, int) or isinstance(value, bool)):
            return f"{field_name}: {show(value, 40)} is not an integer"
        if field_name in JSON_FIELDS and not (isinstance(value, list) and all(isinstance(e, dict) for e in value)):
            return f"{field_name}: {show(value, 40)} is not a list of objects"
    labels: set[str] = set()
    for entry in details.get("parameter") or []:
        label, value = entry.get("label"), entry.get("value")
        if not isinstance(label, str) or not label:
            return f"parameter: label {show(label, 40)} is not a non-empty string"
        if label in labels:
            return f"parameter: label {label!r} appears twice"
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            return f"parameter: the value of {label!r}, {show(value, 40)}, is not a string or a number"
        labels.add(label)
    return None


# What a Details answer says about the answer rather than the config: not compared.
ANSWER_FIELDS = frozenset({"is_success", "error_code", "error_message", "error_msg", "request_id"})


def exact_differences(expected: Mapping[str, Any], shown: Mapping[str, Any]) -> list[str]:
    """The fields in which two Details answers of a config differ, compared strictly: every
    field, read-only and unknown ones too, strings as they are (white space counts), numbers by
    type and value. For the one irreversible action, a delete."""
    names = (set(expected) | set(shown)) - ANSWER_FIELDS
    return sorted(name for name in names if name not in expected or name not in shown
                  or _exact(expected[name]) != _exact(shown[name]))


def _exact(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _unset(name: str, value: Any) -> bool:
    """Whether a field holds no value of its own: absent, empty, or the API's default."""
    return _blank(_stripped(value)) or (name in DEFAULTS and value == DEFAULTS[name] and not isinstance(value, bool))


def _stripped(value: Any) -> Any:
    """Surrounding white space is not part of a value: manifest cells drop it."""
    return value.strip() if isinstance(value, str) else value


def _blank(value: Any) -> bool:
    return value is None or value == "" or value == []


def _labels(value: Any) -> dict[Any, Any]:
    if not isinstance(value or [], list):
        return {"": value}  # not the API's shape: compared whole
    return {p.get("label"): p.get("value") for p in value or [] if isinstance(p, dict)}


def _same_value(a: Any, b: Any) -> bool:
    """Parameter values: a JSON number read back compares by value, two strings by their text."""
    if a is None or b is None:
        return a is b
    if _is_number(a) or _is_number(b):
        x, y = _number(a), _number(b)
        return x is not None and x == y
    return bool(_stripped(a) == _stripped(b))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(value: Any) -> float | None:
    if _is_number(value):
        return float(value)
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _text_or_none(value: Any) -> str | None:
    return None if value is None else _text(value)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else "" if value is None else str(value)
