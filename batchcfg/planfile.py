"""Saved plans: ``plan --out FILE`` writes what it planned, ``apply FILE`` sends exactly that.

A saved plan is JSON lines: a first line ``{"batchcfg_plan": 1, ...}``, then one line per row that
would change: ``row``, ``project_id``, ``config_name``, ``before`` (the config as planned
against; ``null`` for one to create) and ``send`` (the whole body the PUT or POST sends). A plan
can be reviewed, kept with a change ticket, and applied later: ``apply`` reads each config again
and refuses a row whose config changed since it was planned (``conflict``), so what is sent is
what was reviewed, on what was reviewed.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from .errors import UsageError
from .files import json_lines, open_lines, write_all
from .model import Job
from .schema import encode_body

MARKER = "batchcfg_plan"
VERSION = 1


def is_plan(path: Path) -> bool:
    """Whether ``path`` is a saved plan (a ``.jsonl`` file whose first line says so)."""
    if path.suffix.lower() != ".jsonl" or not path.is_file():
        return False
    with path.open("rb") as handle:
        try:
            first = orjson.loads(handle.readline() or b"null")
        except orjson.JSONDecodeError:
            return False
    return isinstance(first, dict) and first.get(MARKER) == VERSION


class PlanWriter:
    """The saved plan being written: opened exclusively (or replaced with ``overwrite``)."""

    def __init__(self, path: Path, *, overwrite: bool = False, **about: Any) -> None:
        if path.suffix.lower() != ".jsonl":
            raise UsageError(f"--out {path}: a saved plan is a .jsonl file")
        if path.exists() and not overwrite:
            raise UsageError(f"{path} exists (an earlier plan?): choose another --out, or --overwrite")
        path.unlink(missing_ok=True)
        self.path = path
        self.rows = 0
        self._handle: io.FileIO = open_lines(path)
        header = {MARKER: VERSION, "time": datetime.now(timezone.utc).isoformat(timespec="seconds"), **about}
        write_all(self._handle, orjson.dumps(header, option=orjson.OPT_APPEND_NEWLINE))

    def __repr__(self) -> str:
        return f"PlanWriter({str(self.path)!r}, rows={self.rows})"

    def add(self, job: Job, before: dict[str, Any] | None, send: dict[str, Any]) -> None:
        record = {"row": job.row, "project_id": job.project_id, "config_name": job.config_name,
                  "before": before, "send": send}
        write_all(self._handle, orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
        self.rows += 1

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> PlanWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def planned_jobs(path: Path) -> Iterator[Job]:
    """The rows of a saved plan as jobs: the body holds ``before`` and ``send``; the hash is the
    hash of what is sent (what ``--resume`` matches on)."""
    from .schema import check_config_name, check_project_id

    for number, record in enumerate(json_lines(path), start=1):
        if MARKER in record:
            continue
        project_id, name = str(record.get("project_id", "")), str(record.get("config_name", ""))
        if check_config_name(name) is not None or check_project_id(project_id) is not None \
                or not isinstance(record.get("send"), dict):
            raise UsageError(f"{path}: line {number} is not a planned row")
        send = encode_body(record["send"])
        yield Job(int(record.get("row", number)), project_id, name,
                  orjson.dumps({"before": record.get("before"), "send": record["send"]}),
                  hashlib.sha256(send).hexdigest())
