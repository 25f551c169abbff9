"""The online preflight: what a project offers for training, and the rows that ask for more.

Per project, ``GET /v1/{project_id}/job/resource-specs?job_type=train`` and
``GET /v1/{project_id}/job/ai-engines?job_type=train`` are read once (``validate --online``,
``apply --preflight``). A row is then ``invalid`` when its ``spec_id`` is not one of the specs
(``BATCHCFG.SPEC``), its ``worker_server_num`` exceeds that spec's ``max_num``
(``BATCHCFG.RANGE``), or its ``engine_id`` is not one of the engines (``BATCHCFG.ENGINE``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

from . import errors
from .client import Client
from .errors import ENGINE, SPEC, UsageError
from .schema import Problem
from .sender import Sender

SPECS_PATH = "/v1/{project_id}/job/resource-specs"
ENGINES_PATH = "/v1/{project_id}/job/ai-engines"
QUERY = (("job_type", "train"),)


@dataclass(frozen=True)
class Catalog:
    """A project's training specs (``spec_id`` -> ``max_num``, 0 when not given) and engine ids."""

    project_id: str
    specs: dict[int, int]
    engines: frozenset[int]

    def problems(self, body: dict[str, Any]) -> list[Problem]:
        found = []
        spec, workers = body.get("spec_id"), body.get("worker_server_num")
        if spec is None:
            pass  # a row that keeps the current spec: checked by the Modify API itself
        elif spec not in self.specs:
            offered = ", ".join(str(s) for s in sorted(self.specs)) or "none"
            found.append(Problem("spec_id", SPEC, f"{spec} is not a training spec of project "
                                                  f"{self.project_id} (specs: {offered})"))
        elif self.specs[spec] and isinstance(workers, int) and workers > self.specs[spec]:
            found.append(Problem("worker_server_num", errors.RANGE,
                                 f"{workers} is more than spec {spec} allows ({self.specs[spec]})"))
        engine = body.get("engine_id")
        if engine is not None and engine not in self.engines:
            offered = ", ".join(str(e) for e in sorted(self.engines)) or "none"
            found.append(Problem("engine_id", ENGINE, f"{engine} is not a training engine of project "
                                                      f"{self.project_id} (engines: {offered})"))
        return found


async def fetch(client: Client, sender: Sender, project_ids: Iterable[str]) -> dict[str, Catalog]:
    """The catalog of each project, read through the run's sender (rate limit, retries, stops).
    A project whose catalog cannot be read stops the run before anything is sent (a
    :class:`UsageError`)."""
    catalogs = {}
    for project_id in sorted(set(project_ids)):
        specs = await _read(client, sender, SPECS_PATH.format(project_id=project_id), "specs")
        engines = await _read(client, sender, ENGINES_PATH.format(project_id=project_id), "engines")
        catalogs[project_id] = Catalog(
            project_id,
            {int(s["spec_id"]): int(s.get("max_num") or 0) for s in specs if _has_int(s, "spec_id")},
            frozenset(int(e["engine_id"]) for e in engines if _has_int(e, "engine_id")))
    return catalogs


async def _read(client: Client, sender: Sender, path: str, key: str) -> list[dict[str, Any]]:
    answer = await sender.call(partial(client.request, "GET", path, b"", query=QUERY))
    if answer is None:
        raise UsageError(f"preflight: stopped before {path}?job_type=train could be read ({sender.stop_reason})")
    items = (answer.body or {}).get(key)
    if not answer.ok or not isinstance(items, list):
        raise UsageError(f"preflight: cannot read {path}?job_type=train: "
                         f"{answer.error_code or 'no ' + key} {answer.error_message}".rstrip())
    return [item for item in items if isinstance(item, dict)]


def _has_int(item: dict[str, Any], key: str) -> bool:
    try:
        int(item[key])
    except (KeyError, TypeError, ValueError):
        return False
    return True
