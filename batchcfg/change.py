"""A change: one field of one config, its value before and after. Made once, where a row is laid
over the config as read (:func:`batchcfg.merge.diff`); every surface (screen, report, saved plan,
page) renders these records, and none of them reads another's text back.

The text form (the report's ``changes`` column, the screen) is ``NAME: BEFORE -> AFTER``, changes
joined by ``; ``:

- ``NAME`` is the field (``worker_server_num``), or ``parameter.LABEL`` for one parameter; a label
  that is not only letters, digits, ``_``, ``-`` and ``.`` is written as a JSON string
  (``parameter."learning rate"``).
- ``BEFORE`` and ``AFTER`` are ``(unset)`` for no value, else JSON: a string in double quotes with
  JSON's escapes (``\\"``, ``\\n``, ``\\u001b``; bidi and other invisible formatting characters are
  escaped too), a number as a number, a list as compact JSON.

So a value holding ``; ``, `` -> ``, quotes, new lines or ``(unset)`` stays inside its quotes, and
:func:`parse` gives back exactly the changes rendered (with ``limit``, a long value is shortened
on screen: the names and kinds still parse back).

>>> text = render([Change("config_desc", "nightly; log_url: x -> (unset)", "new"), Change("log_url", "/b/log/")])
>>> text
'config_desc: "nightly; log_url: x -> (unset)" -> "new"; log_url: "/b/log/" -> (unset)'
>>> [(name, kind) for name, kind, _, _ in parse(text)]
[('config_desc', 'change'), ('log_url', 'remove')]
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import orjson

ADD, CHANGE, REMOVE = "add", "change", "remove"
KINDS = (REMOVE, CHANGE, ADD)  # the order a reviewer reads them in: what is lost first
UNSET = "(unset)"
SEPARATOR = "; "
ARROW = " -> "
_PLAIN_LABEL = re.compile(r"[A-Za-z0-9_.-]+")
_FIELD = re.compile(r"[a-z_]+")
# Characters JSON leaves raw that a terminal or a reader would act on: DEL and the C1 controls
# (\x9b starts an escape sequence on some terminals), bidi controls and marks, zero widths, the
# BOM. Here they are escaped too, so a value can neither drive a terminal nor reorder a line.
_INVISIBLE = re.compile("[\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")
_DECODER = json.JSONDecoder()


class Change(NamedTuple):
    """One field's change: ``before`` and ``after`` are None when the field has no value;
    ``label`` names the parameter when ``field`` is ``parameter``. (A named tuple: rows make
    many, and a journal line keeps them as short arrays.)"""

    field: str
    before: Any = None
    after: Any = None
    label: str | None = None

    @property
    def kind(self) -> str:
        """``add`` (no value before), ``remove`` (none after) or ``change``."""
        return ADD if self.before is None else REMOVE if self.after is None else CHANGE

    @property
    def name(self) -> str:
        """``worker_server_num``, or ``parameter.<label>`` (a label that is not plain as JSON)."""
        if self.label is None:
            return self.field
        return f"{self.field}.{self.label if _PLAIN_LABEL.fullmatch(self.label) else quote(self.label)}"

    def as_json(self) -> dict[str, Any]:
        """The record as a saved plan and the page keep it."""
        return {"field": self.field, "label": self.label, "kind": self.kind, "before": self.before,
                "after": self.after}

    @classmethod
    def of_json(cls, data: dict[str, Any]) -> Change:
        return cls(data["field"], data.get("before"), data.get("after"), data.get("label"))

    def text(self, limit: int | None = None) -> str:
        """``NAME: BEFORE -> AFTER``; with ``limit``, long values shortened (for a screen)."""
        return f"{self.name}: {value_text(self.before, limit)}{ARROW}{value_text(self.after, limit)}"


def render(changes: Iterable[Change], limit: int | None = None) -> str:
    """The changes as one line of text (see the module)."""
    return SEPARATOR.join(change.text(limit) for change in changes)


def quote(text: str) -> str:
    """A string as JSON, invisible formatting characters escaped as well."""
    try:
        quoted = orjson.dumps(text).decode()  # json.dumps(ensure_ascii=False)'s text, many times faster
    except orjson.JSONEncodeError:  # a lone surrogate
        quoted = json.dumps(text, ensure_ascii=False)
    return _escaped(quoted)


def value_text(value: Any, limit: int | None = None) -> str:
    """One value as the text form writes it: ``(unset)``, a JSON string or JSON. With ``limit``,
    a string longer than that is cut and ends with ``…`` (inside the quotes)."""
    if value is None:
        return UNSET
    if isinstance(value, str):
        if limit is not None and len(value) > limit:
            value = value[: max(1, limit - 1)] + "…"
        return quote(value)
    if type(value) is int:
        return str(value)
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if limit is not None and len(text) > limit:
        return quote(text[: max(1, limit - 1)] + "…")  # cut JSON is no JSON: shown as text
    return _escaped(text)


def _escaped(json_text: str) -> str:
    """JSON text with the invisible formatting characters JSON leaves raw escaped as well."""
    return _INVISIBLE.sub(lambda m: f"\\u{ord(m.group()):04x}", json_text) if _INVISIBLE.search(json_text) else json_text


def parse(text: str) -> list[tuple[str, str, Any, Any]]:
    """The changes of a rendered text, as (name, kind, before, after); a text that is not one
    raises ValueError. Labels come back as written in the name."""
    found: list[tuple[str, str, Any, Any]] = []
    position = 0
    while position < len(text):
        if found:
            position = _expect(text, position, SEPARATOR)
        name, position = _name(text, position)
        position = _expect(text, position, ": ")
        before, position = _value(text, position)
        position = _expect(text, position, ARROW)
        after, position = _value(text, position)
        kind = ADD if before is None else REMOVE if after is None else CHANGE
        found.append((name, kind, before, after))
    return found


def _name(text: str, position: int) -> tuple[str, int]:
    match = _FIELD.match(text, position)
    if match is None:
        raise ValueError(f"no field name at {position}")
    name, position = match.group(), match.end()
    if text.startswith(".", position):  # a parameter's label
        position += 1
        if text.startswith('"', position):
            label, end = _DECODER.raw_decode(text, position)
            name += "." + text[position:end]
            position = end
        else:
            match = _PLAIN_LABEL.match(text, position)
            if match is None:
                raise ValueError(f"no label at {position}")
            name, position = f"{name}.{match.group()}", match.end()
    return name, position


def _value(text: str, position: int) -> tuple[Any, int]:
    if text.startswith(UNSET, position):
        return None, position + len(UNSET)
    try:
        return _DECODER.raw_decode(text, position)
    except json.JSONDecodeError as exc:
        raise ValueError(f"no value at {position}: {exc.msg}") from None


def _expect(text: str, position: int, token: str) -> int:
    if not text.startswith(token, position):
        raise ValueError(f"expected {token!r} at {position}")
    return position + len(token)


MAX_NAMES = 200          # fields and parameter labels totalled one by one; more labels share a line
MAX_VALUE_KINDS = 1000   # by-value lines kept ("3 -> 4"); every field's kinds are counted whatever this bound
VALUE_CHARS = 40         # of a value in a by-value line
OTHER_LABELS = "parameter.(other labels)"


class Totals:
    """The changes of many rows, totalled as a reviewer reads them, in memory that does not grow
    with the rows: per field (a parameter's label is a field of its own), how many rows remove,
    change or add it; under each, the rows per value change (``3 -> 4``); the configs to create,
    per field they set; and how many rows lose a value. Fields that lose values come first."""

    def __init__(self) -> None:
        self.fields: dict[str, Counter[str]] = {}       # name -> kind -> rows
        self.values: Counter[tuple[str, str, Any, Any]] = Counter()  # (name, kind, before, after) -> rows
        self.created: Counter[str] = Counter()         # name -> configs to create with it set
        self.changed_rows = 0
        self.created_rows = 0
        self.losing_rows = 0  # rows that remove at least one value

    def __repr__(self) -> str:
        return f"Totals(changed_rows={self.changed_rows}, created_rows={self.created_rows}, fields={len(self.fields)})"

    def add(self, changes: Sequence[Change], *, creating: bool = False) -> None:
        """One row's changes (``creating``: of a config that does not exist yet)."""
        if creating:
            self.created_rows += 1
            for change in changes:
                self.created[self._name(change, self.created)] += 1
            return
        self.changed_rows += 1
        self.losing_rows += any(change.kind == REMOVE for change in changes)
        for change in changes:
            name = self._name(change, self.fields)
            counted = self.fields.get(name)
            if counted is None:
                counted = self.fields[name] = Counter()
            counted[change.kind] += 1
            key = (name, change.kind, _short(change.before), _short(change.after))
            if key in self.values or len(self.values) < MAX_VALUE_KINDS:
                self.values[key] += 1

    def __bool__(self) -> bool:
        return bool(self.changed_rows or self.created_rows)

    def ranked(self) -> list[tuple[str, Counter[str]]]:
        """The fields, those that lose values first (most removals first), then by rows."""
        return sorted(self.fields.items(), key=lambda item: (-item[1][REMOVE], -sum(item[1].values()), item[0]))

    def shown(self, limit: int) -> tuple[list[tuple[str, Counter[str]]], list[tuple[str, Counter[str]]]]:
        """The fields a summary shows (the first ``limit``, and every one that loses values,
        whatever the limit), and the others."""
        ranked = self.ranked()
        shown = [item for number, item in enumerate(ranked) if number < limit or item[1][REMOVE]]
        return shown, ranked[len(shown):]

    def by_value(self, name: str) -> list[tuple[str, str, str, int]]:
        """A field's value changes (kind, before, after, rows), values in their text form, most
        rows first, removals first on a tie."""
        found = [(kind, _shown(before), _shown(after), rows)
                 for (field, kind, before, after), rows in self.values.items() if field == name]
        return sorted(found, key=lambda item: (-item[3], KINDS.index(item[0]), item[1], item[2]))

    @staticmethod
    def _name(change: Change, known: dict[str, Any]) -> str:
        name = change.name
        return OTHER_LABELS if change.label is not None and name not in known and len(known) >= MAX_NAMES else name


class _Rendered(str):
    """A value kept as its text form already (a list: not hashable as it is)."""


def _short(value: Any) -> Any:
    """A value as a by-value line keys it: a string cut where it is shown cut; a list as its text."""
    if isinstance(value, str):
        return value if len(value) <= VALUE_CHARS else value[:VALUE_CHARS + 1]  # still long: shown cut, with …
    return value if value is None or isinstance(value, int | float) else _Rendered(value_text(value, VALUE_CHARS))


def _shown(key: Any) -> str:
    return key if isinstance(key, _Rendered) else value_text(key, VALUE_CHARS)


def field_kind(kinds: Counter[str]) -> str:
    """A field's rows per kind in one word: ``remove`` when any row removes it, ``add`` when
    every row adds it, else ``change``."""
    return REMOVE if kinds[REMOVE] else ADD if set(kinds) == {ADD} else CHANGE


def summed(kinds: Counter[str]) -> str:
    """``removed x8, changed x3, added x1``: a field's rows per kind, what is lost first."""
    words = {REMOVE: "removed", CHANGE: "changed", ADD: "added"}
    return ", ".join(f"{words[kind]} x{kinds[kind]:,}" for kind in KINDS if kinds[kind])
