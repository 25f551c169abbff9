"""The sandbox's routes: what each path and method answers, as the API would."""

from __future__ import annotations

import json
import random
import time
import uuid
from typing import TYPE_CHECKING

from aiohttp import web

from .. import errors
from ..clock import Clock
from ..schema import check_body, check_config_name, check_project_id
from .data import CATALOG, details
from .gateway import Gateway, gateway_error, missing, modelarts_error

if TYPE_CHECKING:
    from . import SandboxConfig, SandboxState

_PATH_PREFIX = "/v1/"


class Sandbox:
    """The handlers of one sandbox, over its state."""

    def __init__(self, config: SandboxConfig, state: SandboxState, clock: Clock) -> None:
        self.config = config
        self.state = state
        self.clock = clock
        self.rng = random.Random(config.seed)
        self.gateway = Gateway(config, state, clock)

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.state.stats())

    async def puts(self, request: web.Request) -> web.Response:
        """Every stored PUT: wall time, project, config name, and the body now stored."""
        return web.json_response([{"time": at, "project_id": project, "config_name": name,
                                   "body": self.state.configs[(project, name)]}
                                  for at, project, name in self.state.puts])

    async def handle(self, request: web.Request) -> web.Response:
        state = self.state
        state.starts.append(self.clock.now())
        state.methods[request.method] += 1
        state.in_flight += 1
        state.max_in_flight = max(state.max_in_flight, state.in_flight)
        request_id = uuid.uuid4().hex
        try:
            if self.config.latency_ms:
                await self.clock.sleep(self.config.latency_ms / 1000)
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
            return gateway_error(413, "APIGW.0201", "Request entity too large", request_id)
        route = route_of(request.path)
        if route is None or request.method not in ("GET", "PUT") or (
                route[1] in CATALOG and request.method != "GET"):
            return gateway_error(404, "APIGW.0101", "The API does not exist or has not been published "
                                                    "in the environment", request_id)
        project_id, config_name = route
        denied = self.gateway.authenticate(request, body, project_id, request_id)
        if denied is not None:
            return denied
        throttled = self.gateway.throttle(request_id)
        if throttled is not None:
            return throttled
        if self.config.fail_rate and self.rng.random() < self.config.fail_rate:
            return modelarts_error(503, "ModelArts.0010", "Service temporarily unavailable (injected fault)")
        if config_name in CATALOG:
            if request.query.get("job_type") != "train":
                return modelarts_error(400, "ModelArts.0104", "job_type must be train")
            return web.json_response(CATALOG[config_name]())
        if (problem := check_config_name(config_name)) is not None:
            return modelarts_error(400, "ModelArts.0104", str(problem))
        key = (project_id, config_name)
        if request.method == "GET":
            stored = self.state.configs.get(key)
            if stored is None:
                return missing(config_name)
            return web.json_response({"is_success": True, **details(config_name, stored,
                                                                     self.state.created[key])})
        if key not in self.state.configs and not self.config.create_missing:
            return missing(config_name)
        return self._put(key, body)

    def _put(self, key: tuple[str, str], raw: bytes) -> web.Response:
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return modelarts_error(400, "ModelArts.0101", "The request body is not a JSON object")
        problems = check_body(body)
        if problems:
            first = problems[0]
            code = "ModelArts.0104"
            if first.code == errors.FORMAT and first.column.endswith("_url"):
                code = "ModelArts.2791"
            elif first.column == "boot_file_url" and first.code == errors.CONFLICT:
                code = "ModelArts.2792"
            return modelarts_error(400, code, "; ".join(str(p) for p in problems))
        self.state.configs[key] = body
        self.state.created.setdefault(key, int(time.time() * 1000))
        self.state.puts.append((time.time(), *key))
        return web.json_response({"is_success": True})


def route_of(path: str) -> tuple[str, str] | None:
    """``/v1/{project_id}/training-job-configs/{config_name}`` -> (project_id, config_name);
    ``/v1/{project_id}/job/resource-specs`` and ``.../ai-engines`` -> (project_id, that name)."""
    if not path.startswith(_PATH_PREFIX):
        return None
    parts = path[len(_PATH_PREFIX):].split("/")
    if len(parts) != 3 or parts[1] not in ("training-job-configs", "job") or not parts[2]:
        return None
    if parts[1] == "job" and parts[2] not in CATALOG:
        return None
    if check_project_id(parts[0]) is not None:
        return None
    return parts[0], parts[2]


