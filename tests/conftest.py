"""Shared fixtures: a scripted loopback server, the sandbox in process and in its own process,
a fake clock, manifests on disk."""

from __future__ import annotations

import asyncio
import csv
import heapq
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from batchcfg import Options
from batchcfg.clock import SYSTEM_CLOCK, Clock
from batchcfg.sandbox import RunningSandbox, SandboxConfig, serve

PROJECT = SandboxConfig.project_id
# The sandbox's credentials, as environment variables.
SANDBOX_AKSK = {"HUAWEICLOUD_SDK_AK": SandboxConfig.ak, "HUAWEICLOUD_SDK_SK": SandboxConfig.sk}
VALID_CELLS = {"worker_server_num": "1", "spec_id": "1", "model_id": "7", "data_url": "/bucket/data/"}
EARLIER_BODY = {"worker_server_num": 2, "spec_id": 1, "model_id": 7, "data_url": "/bucket/old/"}


def changes(current: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """What sending ``wanted`` would change in ``current``, each change in its text form."""
    from batchcfg.merge import diff

    return [change.text() for change in diff(current, wanted)]


def seed(sandbox: RunningSandbox, names: list[str]) -> RunningSandbox:
    """The sandbox holds these configs (in an earlier state than VALID_CELLS), as a real project would."""
    for name in names:
        sandbox.seed(name, EARLIER_BODY)
    return sandbox


def seed_file(path: Path, names: list[str]) -> Path:
    """The same, as a file for ``batchcfg sandbox --seed``."""
    path.write_text("".join(json.dumps({"config_name": name, **EARLIER_BODY}) + "\n" for name in names))
    return path


# No test may reach a real ECS metadata service (169.254.169.254 answers TCP on some machines):
# the source is off in this process and its children, and its default address is a closed port.
os.environ["BATCHCFG_METADATA_URL"] = "off"


@pytest.fixture(autouse=True)
def no_metadata_service(monkeypatch: pytest.MonkeyPatch) -> None:
    """For library calls given an environment of their own (``Options.of(env=...)``) too."""
    monkeypatch.setattr("batchcfg.metadata.DEFAULT_URL", "http://127.0.0.1:9")


def scrub_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No HUAWEICLOUD_SDK_/BATCHCFG_ variable of the developer's leaks in, and HOME is
    ``tmp_path/home`` (returned, not created)."""
    for name in list(os.environ):
        if name.startswith(("HUAWEICLOUD_SDK_", "BATCHCFG_")):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture
def aksk_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandbox's AK/SK in the environment, as a user exports them."""
    for name, value in SANDBOX_AKSK.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The test never sees the developer's own credentials, project or profile."""
    scrub_env(monkeypatch, tmp_path)
    monkeypatch.setenv("BATCHCFG_METADATA_URL", "off")


def sandbox_options(sandbox: RunningSandbox, report: Path, *, token: bool = False, **extra: Any) -> Options:
    """Options for a run against ``sandbox``: its project, no rate limit, its AK/SK (or its IAM token)."""
    env = {"BATCHCFG_IAM_TOKEN": sandbox.config.token} if token else SANDBOX_AKSK
    return Options.of(endpoint=sandbox.endpoint, project_id=sandbox.config.project_id, rate=0, report=report,
                      env=env, **extra)


def cli(*argv: Any) -> int:
    """The command line as a user meets it; returns the exit code."""
    from batchcfg.cli import main

    return main([str(a) for a in argv])


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


class FakeClock:
    """Virtual time for tests (a :class:`batchcfg.clock.Clock`): ``sleep`` returns once virtual
    time reaches its wake-up, and inside :meth:`running` virtual time jumps to the next wake-up as
    soon as every task is waiting (the event loop has nothing ready to run). A test of a rate, a
    backoff or a ``Retry-After`` then takes as long as its work, not its waits. ``jitter`` adds up
    to that much to every wake-up, as a busy machine would."""

    def __init__(self, start: float = 1000.0, jitter: float = 0.0, seed: int = 1) -> None:
        self.time = start
        self.jitter = jitter
        self._rng = random.Random(seed)
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self.jumps = 0

    def __repr__(self) -> str:
        return f"FakeClock(time={self.time:.3f}, sleepers={len(self._sleepers)}, jumps={self.jumps})"

    def now(self) -> float:
        return self.time

    def advance(self, seconds: float) -> None:
        self.time += seconds

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        wake = self.time + seconds + self._rng.uniform(0, self.jitter)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (wake, next(self._order), future))
        await future  # a cancelled sleep cancels its future, which the mover then skips

    @asynccontextmanager
    async def running(self) -> AsyncIterator[FakeClock]:
        """Move time while the block runs."""
        mover = asyncio.create_task(self._move())
        try:
            yield self
        finally:
            mover.cancel()
            with suppress(asyncio.CancelledError):
                await mover

    async def _move(self) -> None:
        loop = asyncio.get_running_loop()
        quiet = 0
        while True:
            await asyncio.sleep(0)
            quiet = quiet + 1 if not loop._ready else 0  # type: ignore[attr-defined]
            if quiet < 3:  # a few idle turns: I/O that was under way has been picked up
                continue
            while self._sleepers and self._sleepers[0][2].done():
                heapq.heappop(self._sleepers)
            if not self._sleepers:
                await asyncio.sleep(0.0005)  # real time: nothing to wake; wait for real work
                continue
            wake, _, future = heapq.heappop(self._sleepers)
            self.time = max(self.time, wake)
            future.set_result(None)
            self.jumps += 1
            quiet = 0


@pytest.fixture
async def fake_clock() -> AsyncIterator[FakeClock]:
    """A :class:`FakeClock` that moves for the length of the test."""
    clock = FakeClock()
    async with clock.running():
        yield clock


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
    Names without a script get ``200 {"is_success": true}``, as a faithful server would: a PUT's
    body is kept, and a GET answers the config asked for (what was PUT, else :data:`EARLIER_BODY`).
    ``latency`` delays every answer, on ``clock`` (a ``sleep`` step waits in real time: it is for
    timeouts, which aiohttp measures).
    """

    scripts: dict[str, list[Any]] = field(default_factory=dict)
    latency: float = 0.0
    seen: list[Seen] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    url: str = ""
    clock: Clock = SYSTEM_CLOCK
    stored: dict[str, dict[str, Any]] = field(default_factory=dict)

    def attempts(self, name: str) -> list[Seen]:
        return [s for s in self.seen if s.name == name]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.seen.append(Seen(self.clock.now(), request.method, name, await request.read(),
                              dict(request.headers)))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency:
                await self.clock.sleep(self.latency)
            script = self.scripts.get(name) or []
            step = script.pop(0) if script else self._faithful(request.method, name, self.seen[-1].body)
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

    def _faithful(self, method: str, name: str, body: bytes) -> tuple[int, dict[str, Any]]:
        if method == "PUT":
            self.stored[name] = json.loads(body)
        elif method == "GET":
            return 200, {"is_success": True, "config_name": name, **self.stored.get(name, EARLIER_BODY)}
        return 200, {"is_success": True}


async def listing(request: web.Request) -> web.Response:
    """The List API's answer a run's preflight reads: no configs to list (a test server's)."""
    return web.json_response({"is_success": True, "config_total_count": 0, "configs": []})


@pytest.fixture
async def scripted() -> AsyncIterator[ScriptedServer]:
    server = ScriptedServer()
    app = web.Application()
    app.router.add_route("*", "/v1/{project}/training-job-configs/{name}", server.handle)
    app.router.add_get("/v1/{project}/training-job-configs", listing)
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
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


SANDBOX_ENV = {"PATH": os.environ.get("PATH", ""), "HOME": "/nonexistent", "PYTHONPATH": os.getcwd(),
               "BATCHCFG_METADATA_URL": "off",
               **SANDBOX_AKSK, "HUAWEICLOUD_SDK_PROJECT_ID": PROJECT}


class SandboxProcess:
    """``batchcfg sandbox`` in its own process: it outlives the runs the tests kill."""

    def __init__(self, *flags: str) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "batchcfg", "sandbox", "--port", "0", *flags],
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                        env=SANDBOX_ENV)
        assert self.process.stdout is not None
        self.endpoint = self.process.stdout.readline().split()[2]

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.endpoint + path, timeout=10) as response:
            return json.loads(response.read())

    def close(self) -> None:
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=10)
        if self.process.stdout:
            self.process.stdout.close()


KILL_TEST_NAMES = [f"cfg-{i:04d}" for i in range(2000)]  # more than 22 killed runs can send


@pytest.fixture
def sandbox_process(tmp_path: Path) -> Iterator[SandboxProcess]:
    """``batchcfg sandbox`` holding the configs of :data:`KILL_TEST_NAMES`."""
    sandbox = SandboxProcess("--seed", str(seed_file(tmp_path / "seed.jsonl", KILL_TEST_NAMES)))
    yield sandbox
    sandbox.close()
