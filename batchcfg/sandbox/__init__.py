"""The sandbox: an embedded stand-in for the ModelArts training-job-config API, on loopback.

It serves the whole v1 family of "training job configuration" APIs for its project, as the docs
describe them: Create (``POST .../training-job-configs``), List (``GET`` of the same path, paged,
sorted and searched), Details (``GET .../training-job-configs/{name}``), Modify (``PUT``: replaces
the writable fields) and Delete, and the resource specs and engines of ``.../job/``. Details,
Modify and Delete answer 404 ``ModelArts.0102`` for a config it does not hold (seed it with
:meth:`RunningSandbox.seed`, ``--seed FILE``, a Create, or ``create_missing``); a method the API
does not have on one of its paths gets a ModelArts-style 405 (:mod:`.app` lists every answer).

Modify replaces a config's writable fields by the body (``put_semantics="replace"``, the
default). The API's documents do not say whether it does; the sandbox can also ``"merge"`` (fields
the body leaves out are kept; an empty value clears) or ``"ignore-empty"`` (as merge, and an empty
value is ignored too), so that a run's read-back (:mod:`batchcfg.verify`) can be seen at work.

Same paths, same authentication checks (IAM token, or an ``SDK-HMAC-SHA256`` signature verified
with the signer's own functions, ``X-Sdk-Date`` within 15 minutes, five bad signatures lock the
AK for five minutes), same error bodies, the same body rules as the tool (:mod:`batchcfg.schema`),
an ``X-Request-Id`` on every answer, and injected faults: 503s, 429 throttling with
``Retry-After``, latency. Time is injected (a :class:`~batchcfg.clock.Clock`), so that tests of
throttling run on a fake clock.

- :mod:`.app`: the routes and what each answers;
- :mod:`.listing`: the List API's parameters and pages;
- :mod:`.gateway`: what the API gateway does before ModelArts sees a request (authentication,
  throttling) and its error bodies;
- :mod:`.data`: resource specs, engines, the Details and List views of a config, seeds.

>>> async def try_it():
...     async with serve(SandboxConfig(fail_rate=0.1)) as sandbox:
...         print(sandbox.endpoint, sandbox.config.project_id)
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ..auth import Signer
from ..clock import SYSTEM_CLOCK, Clock
from ..settings import SANDBOX_HOST
from .data import earlier_state, read_seed, seed_earlier_states

MAX_BODY_BYTES = 12 * 1024 * 1024  # the gateway refuses larger bodies

PUT_SEMANTICS = ("replace", "merge", "ignore-empty")

__all__ = ["PUT_SEMANTICS", "RunningSandbox", "SandboxConfig", "SandboxState", "create_app", "earlier_state",
           "max_starts_in_window", "read_seed", "seed_earlier_states", "serve"]


@dataclass(frozen=True)
class SandboxConfig:
    """The sandbox's project, its fixed test credentials, and the faults to inject."""

    project_id: str = "9f2c4b7d1e6a40c8b3d5e7f90a1b2c3d"
    token: str = "sandbox-iam-token"
    ak: str = "SANDBOXAK7Q2M4X9T0B1C"
    sk: str = "sandbox-secret-key-for-local-tests-only"
    fail_rate: float = 0.0       # share of requests answered 503
    throttle_rps: float = 0.0    # accepted requests per second; beyond: 429 APIGW.0308 (0 = none)
    latency_ms: float = 0.0      # added to every answer
    seed: int | None = None      # for reproducible injected failures
    create_missing: bool = False  # a PUT to a config it does not hold creates it (an extension: Create is POST)
    put_semantics: str = "replace"  # Modify: "replace" the writable fields, "merge" into them, or "ignore-empty"


@dataclass
class SandboxState:
    """What the sandbox stored and saw, for tests and ``GET /_sandbox/stats``."""

    configs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # writable bodies
    created: dict[tuple[str, str], int] = field(default_factory=dict)  # create_time, epoch ms
    starts: list[float] = field(default_factory=list)  # time.monotonic() of every API request
    statuses: Counter[int] = field(default_factory=Counter)
    methods: Counter[str] = field(default_factory=Counter)
    puts: list[tuple[float, str, str]] = field(default_factory=list)  # (time.time(), project, name)
    creates: list[tuple[float, str, str]] = field(default_factory=list)  # the same, of each Create
    deletes: list[tuple[float, str, str]] = field(default_factory=list)  # the same, of each Delete
    operations: Counter[str] = field(default_factory=Counter)  # "list", "create", "details", ...
    in_flight: int = 0
    max_in_flight: int = 0
    accepted: deque[float] = field(default_factory=deque)
    ak_failures: Counter[str] = field(default_factory=Counter)
    ak_locked_until: dict[str, float] = field(default_factory=dict)

    def stats(self) -> dict[str, Any]:
        """Request counts, statuses, methods, API operations, stored configs and peaks."""
        return {"requests": len(self.starts), "max_in_flight": self.max_in_flight,
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
                "methods": dict(self.methods), "operations": dict(self.operations),
                "configs": len(self.configs), "creates": len(self.creates), "deletes": len(self.deletes),
                "max_per_second": max_starts_in_window(self.starts)}


def max_starts_in_window(starts: list[float], window: float = 1.0) -> int:
    """The most request starts in any ``window`` seconds (half-open), from sorted times."""
    best, first = 0, 0
    for last, start in enumerate(starts):
        while start - starts[first] >= window:
            first += 1
        best = max(best, last - first + 1)
    return best


@dataclass
class RunningSandbox:
    """A sandbox serving on ``endpoint``; its ``state`` shows what it received."""

    endpoint: str
    config: SandboxConfig
    state: SandboxState

    def signer(self) -> Signer:
        """A signer with the sandbox's AK/SK."""
        return Signer(self.config.ak, self.config.sk)

    def seed(self, config_name: str, body: dict[str, Any], project_id: str = "") -> None:
        """Hold a configuration, as if created earlier (its writable fields)."""
        key = (project_id or self.config.project_id, config_name)
        self.state.configs[key] = dict(body)
        self.state.created.setdefault(key, int(time.time() * 1000) - 86_400_000)


@asynccontextmanager
async def serve(config: SandboxConfig = SandboxConfig(), host: str = SANDBOX_HOST, port: int = 0,
                clock: Clock = SYSTEM_CLOCK) -> AsyncIterator[RunningSandbox]:
    """Run the sandbox on ``host:port`` (port 0: a free one) for the duration of the block."""
    state = SandboxState()
    runner = web.AppRunner(create_app(config, state, clock), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        yield RunningSandbox(f"http://{shown}:{bound_port}", config, state)
    finally:
        await runner.cleanup()


def create_app(config: SandboxConfig, state: SandboxState | None = None,
               clock: Clock = SYSTEM_CLOCK) -> web.Application:
    """The sandbox as an ``aiohttp.web`` application (for ``TestServer`` or :func:`serve`)."""
    from .app import Sandbox

    sandbox = Sandbox(config, state or SandboxState(), clock)
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_get("/_sandbox/stats", sandbox.stats)
    app.router.add_get("/_sandbox/puts", sandbox.puts)
    app.router.add_route("*", "/{tail:.*}", sandbox.handle)
    return app


