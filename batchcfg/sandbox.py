"""The sandbox: an embedded stand-in for the ModelArts training-job-config API, on loopback.

It keeps the configurations of its project: ``GET`` returns one with the read-only fields of the
Details API, ``PUT`` replaces it, and both answer 404 ``ModelArts.0102`` for one it does not hold
(seed it with :meth:`RunningSandbox.seed`, ``--seed FILE``, or ``create_missing``).

Same paths, same authentication checks (IAM token, or an ``SDK-HMAC-SHA256`` signature verified
with the signer's own functions, ``X-Sdk-Date`` within 15 minutes, five bad signatures lock the
AK for five minutes), same error bodies, the same body rules as the tool (:mod:`batchcfg.schema`),
an ``X-Request-Id`` on every answer, and injected faults: 503s, 429 throttling with
``Retry-After``, latency.

>>> async def try_it():
...     async with serve(SandboxConfig(fail_rate=0.1)) as sandbox:
...         print(sandbox.endpoint, sandbox.config.project_id)
"""

from __future__ import annotations

import hmac
import json
import math
import random
import time
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl

import anyio
from aiohttp import web

from . import errors
from .auth import ALGORITHM, DATE_FORMAT, Signer, signature
from .defaults import SANDBOX_HOST
from .errors import UsageError
from .schema import check_body, check_config_name, check_project_id

MAX_BODY_BYTES = 12 * 1024 * 1024
MAX_CLOCK_SKEW = 15 * 60
LOCK_AFTER_FAILURES = 5
LOCK_SECONDS = 300
_PATH_PREFIX = "/v1/"


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
    create_missing: bool = False  # a PUT to a config it does not hold creates it (not the API's way)


@dataclass
class SandboxState:
    """What the sandbox stored and saw, for tests and ``GET /_sandbox/stats``."""

    configs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # writable bodies
    created: dict[tuple[str, str], int] = field(default_factory=dict)  # create_time, epoch ms
    starts: list[float] = field(default_factory=list)  # time.monotonic() of every API request
    statuses: Counter[int] = field(default_factory=Counter)
    methods: Counter[str] = field(default_factory=Counter)
    puts: list[tuple[float, str, str]] = field(default_factory=list)  # (time.time(), project, name)
    in_flight: int = 0
    max_in_flight: int = 0
    accepted: deque[float] = field(default_factory=deque)
    ak_failures: Counter[str] = field(default_factory=Counter)
    ak_locked_until: dict[str, float] = field(default_factory=dict)

    def stats(self) -> dict[str, Any]:
        return {"requests": len(self.starts), "max_in_flight": self.max_in_flight,
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
                "methods": dict(self.methods), "configs": len(self.configs),
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
        return Signer(self.config.ak, self.config.sk)

    def seed(self, config_name: str, body: dict[str, Any], project_id: str = "") -> None:
        """Hold a configuration, as if created earlier (its writable fields)."""
        key = (project_id or self.config.project_id, config_name)
        self.state.configs[key] = dict(body)
        self.state.created.setdefault(key, int(time.time() * 1000) - 86_400_000)


@asynccontextmanager
async def serve(config: SandboxConfig = SandboxConfig(), host: str = SANDBOX_HOST,
                port: int = 0) -> AsyncIterator[RunningSandbox]:
    """Run the sandbox on ``host:port`` (port 0: a free one) for the duration of the block."""
    state = SandboxState()
    runner = web.AppRunner(create_app(config, state), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        yield RunningSandbox(f"http://{shown}:{bound_port}", config, state)
    finally:
        await runner.cleanup()


def create_app(config: SandboxConfig, state: SandboxState | None = None) -> web.Application:
    """The sandbox as an ``aiohttp.web`` application (for ``TestServer`` or :func:`serve`)."""
    sandbox = _Sandbox(config, state or SandboxState())
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_get("/_sandbox/stats", sandbox.stats)
    app.router.add_get("/_sandbox/puts", sandbox.puts)
    app.router.add_route("*", "/{tail:.*}", sandbox.handle)
    return app


class _Sandbox:
    def __init__(self, config: SandboxConfig, state: SandboxState) -> None:
        self.config = config
        self.state = state
        self.rng = random.Random(config.seed)

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.state.stats())

    async def puts(self, request: web.Request) -> web.Response:
        """Every stored PUT: wall time, project, config name, and the body now stored."""
        return web.json_response([{"time": at, "project_id": project, "config_name": name,
                                   "body": self.state.configs[(project, name)]}
                                  for at, project, name in self.state.puts])

    async def handle(self, request: web.Request) -> web.Response:
        state = self.state
        state.starts.append(time.monotonic())
        state.methods[request.method] += 1
        state.in_flight += 1
        state.max_in_flight = max(state.max_in_flight, state.in_flight)
        request_id = uuid.uuid4().hex
        try:
            if self.config.latency_ms:
                await anyio.sleep(self.config.latency_ms / 1000)
            response = await self._answer(request, request_id)
        finally:
            state.in_flight -= 1
        response.headers["X-Request-Id"] = request_id
        state.statuses[response.status] += 1
        return response

    async def _answer(self, request: web.Request, request_id: str) -> web.Response:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _gateway(413, "APIGW.0201", "Request entity too large", request_id)
        route = _route(request.path)
        if route is None or request.method not in ("GET", "PUT") or (
                route[1] in _CATALOG and request.method != "GET"):
            return _gateway(404, "APIGW.0101", "The API does not exist or has not been published "
                                               "in the environment", request_id)
        project_id, config_name = route
        denied = self._authenticate(request, body, project_id, request_id)
        if denied is not None:
            return denied
        throttled = self._throttle(request_id)
        if throttled is not None:
            return throttled
        if self.config.fail_rate and self.rng.random() < self.config.fail_rate:
            return _modelarts(503, "ModelArts.0010", "Service temporarily unavailable (injected fault)")
        if config_name in _CATALOG:
            if request.query.get("job_type") != "train":
                return _modelarts(400, "ModelArts.0104", "job_type must be train")
            return web.json_response(_CATALOG[config_name]())
        if (problem := check_config_name(config_name)) is not None:
            return _modelarts(400, "ModelArts.0104", str(problem))
        key = (project_id, config_name)
        if request.method == "GET":
            stored = self.state.configs.get(key)
            if stored is None:
                return _missing(config_name)
            return web.json_response({"is_success": True, **_details(config_name, stored,
                                                                     self.state.created[key])})
        if key not in self.state.configs and not self.config.create_missing:
            return _missing(config_name)
        return self._put(key, body)

    def _put(self, key: tuple[str, str], raw: bytes) -> web.Response:
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _modelarts(400, "ModelArts.0101", "The request body is not a JSON object")
        problems = check_body(body)
        if problems:
            first = problems[0]
            code = "ModelArts.0104"
            if first.code == errors.FORMAT and first.column.endswith("_url"):
                code = "ModelArts.2791"
            elif first.column == "boot_file_url" and first.code == errors.CONFLICT:
                code = "ModelArts.2792"
            return _modelarts(400, code, "; ".join(str(p) for p in problems))
        self.state.configs[key] = body
        self.state.created.setdefault(key, int(time.time() * 1000))
        self.state.puts.append((time.time(), *key))
        return web.json_response({"is_success": True})

    def _authenticate(self, request: web.Request, body: bytes, project_id: str,
                      request_id: str) -> web.Response | None:
        token = request.headers.get("X-Auth-Token")
        authorization = request.headers.get("Authorization", "")
        if token is not None:
            if not hmac.compare_digest(token.encode(), self.config.token.encode()):
                return _unauthorized("decrypt token fail", request_id)
        elif authorization.startswith(ALGORITHM + " "):
            failure = self._verify_signature(request, body, authorization)
            if failure:
                return _unauthorized(failure, request_id)
        else:
            return _unauthorized("no X-Auth-Token and no SDK-HMAC-SHA256 Authorization header", request_id)
        if project_id != self.config.project_id:
            return _gateway(403, "APIGW.0302", "The IAM user is not authorized to access the API: "
                                               "wrong project", request_id)
        return None

    def _verify_signature(self, request: web.Request, body: bytes, authorization: str) -> str:
        parts = dict(part.strip().partition("=")[::2]
                     for part in authorization[len(ALGORITHM) + 1:].split(","))
        ak, names, given = parts.get("Access", ""), parts.get("SignedHeaders", ""), parts.get("Signature", "")
        now = time.monotonic()
        if self.state.ak_locked_until.get(ak, 0) > now:
            return "AK access failed to reach the limit,forbidden"
        if ak != self.config.ak:
            return "Get secretKey failed,ak:******,err:ak not exist"
        date = request.headers.get("X-Sdk-Date", "")
        try:
            sent = datetime.strptime(date, DATE_FORMAT).replace(tzinfo=timezone.utc)
        except ValueError:
            return self._failed(ak, now, "x-sdk-date is missing or malformed")
        if abs((datetime.now(timezone.utc) - sent).total_seconds()) > MAX_CLOCK_SKEW:
            return self._failed(ak, now, "the request time differs from the server time by more "
                                         "than 15 minutes")
        signed_names = names.split(";")
        if not {"host", "x-sdk-date"} <= set(signed_names) or signed_names != sorted(signed_names):
            return self._failed(ak, now, "SignedHeaders must include host and x-sdk-date, sorted")
        signed = [(name, request.headers.get(name, "")) for name in signed_names]
        path, _, query = request.raw_path.partition("?")
        expected = signature(self.config.sk.encode(), request.method, path,
                             parse_qsl(query, keep_blank_values=True), signed, body, date)
        if not hmac.compare_digest(expected, given):
            return self._failed(ak, now, "verify aksk signature fail")
        self.state.ak_failures[ak] = 0
        return ""

    def _failed(self, ak: str, now: float, reason: str) -> str:
        self.state.ak_failures[ak] += 1
        if self.state.ak_failures[ak] >= LOCK_AFTER_FAILURES:
            self.state.ak_locked_until[ak] = now + LOCK_SECONDS
            self.state.ak_failures[ak] = 0
        return reason

    def _throttle(self, request_id: str) -> web.Response | None:
        limit = self.config.throttle_rps
        if not limit:
            return None
        now = time.monotonic()
        accepted = self.state.accepted
        while accepted and now - accepted[0] >= 1.0:
            accepted.popleft()
        if len(accepted) >= limit:
            wait = max(1, math.ceil(accepted[0] + 1.0 - now))
            response = _gateway(429, "APIGW.0308", "The throttling threshold has been reached: policy "
                                                   f"user over ratelimit,limit:{limit:g},time:1 second",
                                request_id)
            response.headers["Retry-After"] = str(wait)
            return response
        accepted.append(now)
        return None


def _route(path: str) -> tuple[str, str] | None:
    """``/v1/{project_id}/training-job-configs/{config_name}`` -> (project_id, config_name);
    ``/v1/{project_id}/job/resource-specs`` and ``.../ai-engines`` -> (project_id, that name)."""
    if not path.startswith(_PATH_PREFIX):
        return None
    parts = path[len(_PATH_PREFIX):].split("/")
    if len(parts) != 3 or parts[1] not in ("training-job-configs", "job") or not parts[2]:
        return None
    if parts[1] == "job" and parts[2] not in _CATALOG:
        return None
    if check_project_id(parts[0]) is not None:
        return None
    return parts[0], parts[2]


# What the Details API adds to a config's writable fields, by engine_id and spec_id.
ENGINES = {1: ("TensorFlow", "TF-1.13.1-python3.6"), 2: ("MXNet", "MXNet-1.2.1-python3.6"),
           3: ("Caffe", "Caffe-1.0.0-python2.7"), 4: ("PyTorch", "PyTorch-1.4.0-python3.6"),
           5: ("Ray", "Ray-0.7.4-python3.6"), 7: ("MindSpore", "MindSpore-1.3.0-python3.7")}
SPECS = {1: ("modelarts.vm.cpu.8u", "", 0, 8, 10), 2: ("modelarts.vm.gpu.p100", "P100", 1, 8, 4),
         3: ("modelarts.vm.gpu.v100", "V100", 1, 8, 4), 4: ("modelarts.vm.gpu.v100.8", "V100", 8, 64, 8),
         5: ("modelarts.bm.ascend.910.8", "Ascend910", 8, 192, 16)}  # code, gpu, gpus, cpus, max_num


def _resource_specs() -> dict[str, Any]:
    specs = [{"spec_id": spec_id, "spec_code": code, "gpu_type": gpu_type, "gpu_num": gpus, "cpu": str(cpu),
              "core": str(cpu), "max_num": max_num, "unit_num": 1, "storage": "", "interface_type": 1,
              "no_resource": False} for spec_id, (code, gpu_type, gpus, cpu, max_num) in SPECS.items()]
    return {"is_success": True, "spec_total_count": len(specs), "specs": specs}


def _ai_engines() -> dict[str, Any]:
    engines = [{"engine_type": 1, "engine_id": engine_id, "engine_name": name, "engine_version": version}
               for engine_id, (name, version) in ENGINES.items()]
    return {"is_success": True, "engines": engines}


_CATALOG = {"resource-specs": _resource_specs, "ai-engines": _ai_engines}


def _details(config_name: str, body: dict[str, Any], created: int) -> dict[str, Any]:
    """A stored config as the Details API shows it: its writable fields and the read-only ones."""
    engine_name, engine_version = ENGINES.get(int(body.get("engine_id") or 1), ("Custom", "custom"))
    spec_code, gpu_type, gpu_num, cpu, _ = SPECS.get(int(body.get("spec_id") or 1), ("modelarts.custom", "", 0, 4, 1))
    return {"config_name": config_name, **body, "engine_type": 1, "engine_name": engine_name,
            "engine_version": engine_version, "spec_code": spec_code, "gpu_type": gpu_type,
            "gpu_num": gpu_num, "cpu": str(cpu), "core": str(cpu), "create_time": created,
            "pool_id": "", "pool_name": "", "volumes": []}


def earlier_state(body: dict[str, Any], number: int) -> dict[str, Any]:
    """A plausible earlier version of ``body``, for seeding: every third config as it is, the
    others with another worker count and a changed parameter or description."""
    if number % 3 == 0:
        return dict(body)
    earlier = dict(body)
    workers = int(earlier.get("worker_server_num") or 1)
    earlier["worker_server_num"] = workers + 1 if workers < 4 else workers - 1
    parameters = [dict(p) for p in earlier.get("parameter") or []]
    if parameters:
        parameters[0]["value"] = "0.5" if parameters[0].get("value") != "0.5" else "0.25"
        earlier["parameter"] = parameters
    else:
        earlier["config_desc"] = "previous revision"
    return earlier


def read_seed(path: Path) -> list[dict[str, Any]]:
    """Configs for ``batchcfg sandbox --seed``: JSON lines, each a ``config_name`` (and optional
    ``project_id``) with writable fields. A bad file is a :class:`UsageError`."""
    records = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--seed {path}: cannot read it ({type(exc).__name__})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("config_name"), str):
            raise UsageError(f"--seed {path}: line {number} is not a JSON object with a config_name")
        records.append(record)
    return records


def _missing(config_name: str) -> web.Response:
    return _modelarts(404, "ModelArts.0102", f"Training job config {config_name} does not exist")


def _gateway(status: int, code: str, message: str, request_id: str) -> web.Response:
    """An API Gateway error body: ``error_code``, ``error_msg``, ``request_id``."""
    return web.json_response({"error_code": code, "error_msg": message, "request_id": request_id},
                             status=status)


def _unauthorized(reason: str, request_id: str) -> web.Response:
    return _gateway(401, "APIGW.0301", f"Incorrect IAM authentication information: {reason}", request_id)


def _modelarts(status: int, code: str, message: str) -> web.Response:
    """A ModelArts error body: ``is_success`` false, ``error_code``, ``error_message``."""
    return web.json_response({"is_success": False, "error_code": code, "error_message": message},
                             status=status)
