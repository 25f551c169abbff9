"""Shared fixtures: a scripted loopback server for the runner, the sandbox, manifests on disk."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from batchcfg.sandbox import RunningSandbox, SandboxConfig, serve

PROJECT = SandboxConfig.project_id
VALID_CELLS = {"worker_server_num": "1", "spec_id": "1", "model_id": "7", "data_url": "/bucket/data/"}
EARLIER_BODY = {"worker_server_num": 2, "spec_id": 1, "model_id": 7, "data_url": "/bucket/old/"}


def seed(sandbox: RunningSandbox, names: list[str]) -> RunningSandbox:
    """The sandbox holds these configs (in an earlier state than VALID_CELLS), as a real project would."""
    for name in names:
        sandbox.seed(name, EARLIER_BODY)
    return sandbox


def seed_file(path: Path, names: list[str]) -> Path:
    """The same, as a file for ``batchcfg sandbox --seed``."""
    path.write_text("".join(json.dumps({"config_name": name, **EARLIER_BODY}) + "\n" for name in names))
    return path


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The test never sees the developer's own credentials, project or profile."""
    for name in list(os.environ):
        if name.startswith(("HUAWEICLOUD_SDK_", "BATCHCFG_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def cli(*argv: Any) -> int:
    """The command line as a user meets it: a usage error's SystemExit becomes its exit code."""
    from batchcfg.cli import main

    try:
        return main([str(a) for a in argv])
    except SystemExit as exc:
        return int(exc.code or 0)


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def valid_manifest(path: Path, names: list[str]) -> Path:
    """A manifest of valid rows, one per config name."""
    header = ["config_name", *VALID_CELLS]
    return write_csv(path, header, [[name, *VALID_CELLS.values()] for name in names])


@dataclass
class Seen:
    """One request as the scripted server received it."""

    at: float
    method: str
    name: str
    body: bytes
    headers: dict[str, str]


@dataclass
class ScriptedServer:
    """A loopback server whose answers per config name follow a script, one step per attempt.

    A step is ``(status, json_body)``, ``(status, json_body, headers)``, ``"reset"`` (drop the
    connection), ``("sleep", seconds)`` (answer 200 after a delay) or ``("raw", status, text)``.
    Names without a script get ``200 {"is_success": true}``; ``latency`` delays every answer.
    """

    scripts: dict[str, list[Any]] = field(default_factory=dict)
    latency: float = 0.0
    seen: list[Seen] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    url: str = ""

    def attempts(self, name: str) -> list[Seen]:
        return [s for s in self.seen if s.name == name]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.seen.append(Seen(time.monotonic(), request.method, name, await request.read(),
                              dict(request.headers)))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            script = self.scripts.get(name) or []
            step = script.pop(0) if script else (200, {"is_success": True})
            headers = {"X-Request-Id": f"req-{len(self.seen)}"}
            if step == "reset":
                assert request.transport is not None
                request.transport.close()
                return web.Response(status=200)
            if step[0] == "sleep":
                await asyncio.sleep(step[1])
                return web.json_response({"is_success": True}, headers=headers)
            if step[0] == "raw":
                return web.Response(status=step[1], text=step[2], headers=headers)
            headers.update(step[2] if len(step) > 2 else {})
            return web.json_response(step[1], status=step[0], headers=headers)
        finally:
            self.in_flight -= 1


@pytest.fixture
async def scripted() -> AsyncIterator[ScriptedServer]:
    server = ScriptedServer()
    app = web.Application()
    app.router.add_route("*", "/v1/{project}/training-job-configs/{name}", server.handle)
    test_server = TestServer(app, host="127.0.0.1")
    await test_server.start_server()
    server.url = str(test_server.make_url("")).rstrip("/")
    yield server
    await test_server.close()


@pytest.fixture
def sandbox_factory() -> Callable[..., Any]:
    """``async with sandbox_factory(fail_rate=...) as sandbox``: a sandbox on a free port."""

    def make(**config: Any) -> Any:
        return serve(SandboxConfig(**config))

    return make


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    """A sandbox holding one config, ``cfg-1``."""
    async with serve(SandboxConfig()) as running:
        yield seed(running, ["cfg-1"])


def read_report(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".xlsx":
        import openpyxl

        rows = list(openpyxl.load_workbook(path).active.iter_rows(values_only=True))
        return [{str(k): "" if v is None else str(v) for k, v in zip(rows[0], row)} for row in rows[1:]]
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))
