"""The sandbox's routes: what each path and method answers, as the API would.

=====================================================  ======================================
``POST   /v1/{project_id}/training-job-configs``         Create: ``{"is_success": true}``
``GET    /v1/{project_id}/training-job-configs``         List (:mod:`.listing`)
``GET    /v1/{project_id}/training-job-configs/{name}``  Details (:func:`.data.details`)
``PUT    /v1/{project_id}/training-job-configs/{name}``  Modify: replaces the writable fields (or merges)
``DELETE /v1/{project_id}/training-job-configs/{name}``  Delete: ``{"is_success": true}``
``GET    /v1/{project_id}/job/resource-specs``           specs (``?job_type=train``)
``GET    /v1/{project_id}/job/ai-engines``               engines (``?job_type=train``)
=====================================================  ======================================

Answers besides those (``{"is_success": false, "error_code", "error_message"}``):

- 400 ``ModelArts.0101``: a body that is not a JSON object; 400 ``ModelArts.0104``: a broken body
  rule, a bad ``config_name``, a bad List parameter; ``ModelArts.2791``/``2792``: a bad OBS path,
  a boot file outside the code directory (Modify and Create check bodies alike).
- 404 ``ModelArts.0102``: Details, Modify or Delete of a config the project does not hold
  (unless ``create_missing``: then Modify creates it).
- 400 ``ModelArts.0103``: Create with a name the project already holds. (The docs name the code,
  "duplicate name", but no status of its own; ModelArts v1 answers its parameter errors with 400.)
- 405 ``ModelArts.0105`` ("operation not allowed"), with an ``Allow`` header: a method the API
  does not have on one of its paths (``POST`` to a config, ``PATCH``, ``PUT`` to the list...). The
  API's own code for this is not documented; ``0105`` is the nearest documented one. The request
  has passed authentication, throttling and fault injection first, as every API call does.
- Paths that are not the API's get the gateway's 404 ``APIGW.0101``, before authentication.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .. import errors
from ..clock import Clock
from ..schema import check_body, check_config_name, check_project_id
from .data import CATALOG, details
from .gateway import Gateway, gateway_error, missing, modelarts_error
from .listing import ListQuery

if TYPE_CHECKING:
    from . import SandboxConfig, SandboxState

_PATH_PREFIX = "/v1/"
COLLECTION = "training-job-configs"  # Route.kind of the list itself; "config" for one config
# The operation of each (route kind, method); a pair not here is a 405.
OPERATIONS = {(COLLECTION, "GET"): "list", (COLLECTION, "POST"): "create", ("config", "GET"): "details",
              ("config", "PUT"): "modify", ("config", "DELETE"): "delete",
              **{(name, "GET"): name for name in CATALOG}}


@dataclass(frozen=True)
class Route:
    """Which of the API's paths a request is for: the project, the kind of path (``COLLECTION``,
    ``"config"`` or a :data:`~.data.CATALOG` name) and, for one config, its name (as sent)."""

    project_id: str
    kind: str
    config_name: str = ""


class Sandbox:
    """The handlers of one sandbox, over its state."""

    def __init__(self, config: SandboxConfig, state: SandboxState, clock: Clock) -> None:
        self.config = config
        self.state = state
        self.clock = clock
        self.rng = random.Random(config.seed)
        self.gateway = Gateway(config, state, clock)

    async def stats(self, request: web.Request) -> web.Response:
        """``GET /_sandbox/stats``: :meth:`SandboxState.stats`."""
        return web.json_response(self.state.stats())

    async def puts(self, request: web.Request) -> web.Response:
        """Every stored PUT: wall time, project, config name, and the body now stored (``null``
        once the config is deleted)."""
        return web.json_response([{"time": at, "project_id": project, "config_name": name,
                                   "body": self.state.configs.get((project, name))}
                                  for at, project, name in self.state.puts])

    async def handle(self, request: web.Request) -> web.Response:
        """Any request to the API: counted, delayed by the injected latency, answered."""
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
        if route is None:
            return gateway_error(404, "APIGW.0101", "The API does not exist or has not been published "
                                                    "in the environment", request_id)
        denied = self.gateway.authenticate(request, body, route.project_id, request_id)
        if denied is not None:
            return denied
        throttled = self.gateway.throttle(request_id)
        if throttled is not None:
            return throttled
        if self.config.fail_rate and self.rng.random() < self.config.fail_rate:
            return modelarts_error(503, "ModelArts.0010", "Service temporarily unavailable (injected fault)")
        operation = OPERATIONS.get((route.kind, request.method))
        if operation is None:
            return not_allowed(route, request.method)
        self.state.operations[operation] += 1
        if route.kind in CATALOG:
            if request.query.get("job_type") != "train":
                return modelarts_error(400, "ModelArts.0104", "job_type must be train")
            return web.json_response(CATALOG[route.kind]())
        if operation == "list":
            query = ListQuery.parse(request.query)
            if isinstance(query, str):
                return modelarts_error(400, "ModelArts.0104", query)
            return web.json_response(query.answer(self.state.configs, self.state.created, route.project_id))
        if operation == "create":
            return self._create(route.project_id, body)
        return self._one_config(operation, route, body)

    def _one_config(self, operation: str, route: Route, raw: bytes) -> web.Response:
        """Details, Modify or Delete of one config."""
        if (problem := check_config_name(route.config_name)) is not None:
            return modelarts_error(400, "ModelArts.0104", str(problem))
        key = (route.project_id, route.config_name)
        if key not in self.state.configs and not (operation == "modify" and self.config.create_missing):
            return missing(route.config_name)
        if operation == "details":
            return web.json_response({"is_success": True, **details(route.config_name, self.state.configs[key],
                                                                     self.state.created.get(key, 0))})
        if operation == "delete":
            del self.state.configs[key]
            self.state.created.pop(key, None)
            self.state.deletes.append((time.time(), *key))
            return web.json_response({"is_success": True})
        body = checked_body(raw)
        if isinstance(body, web.Response):
            return body
        self.state.configs[key] = modified(self.state.configs.get(key, {}), body, self.config.put_semantics)
        self.state.created.setdefault(key, int(time.time() * 1000))
        self.state.puts.append((time.time(), *key))
        return web.json_response({"is_success": True})

    def _create(self, project_id: str, raw: bytes) -> web.Response:
        """Create: the body of Modify plus ``config_name``; a name the project holds is refused."""
        body = checked_body(raw, creating=True)
        if isinstance(body, web.Response):
            return body
        name = body.pop("config_name")
        key = (project_id, name)
        if key in self.state.configs:
            return modelarts_error(400, "ModelArts.0103", f"Training job config {name} already exists")
        self.state.configs[key] = body
        self.state.created[key] = int(time.time() * 1000)
        self.state.creates.append((time.time(), *key))
        # The docs' answer (Table 5 and the sample of "Creating a Training Job Configuration") is
        # is_success alone: no config_name, no create_time.
        return web.json_response({"is_success": True})


def modified(stored: dict[str, Any], body: dict[str, Any], semantics: str) -> dict[str, Any]:
    """What Modify keeps of a config: the body (``replace``); the stored fields the body leaves
    out, with the body's laid over them, empty ones clearing (``merge``); or that, with the
    body's empty values ignored (``ignore-empty``)."""
    if semantics == "replace":
        return body
    empty: tuple[Any, ...] = ("", [], None)
    sent = {key: value for key, value in body.items() if semantics == "merge" or value not in empty}
    return {key: value for key, value in {**stored, **sent}.items() if value not in empty}


def checked_body(raw: bytes, creating: bool = False) -> dict[str, Any] | web.Response:
    """A Modify (or, ``creating``, a Create) body that keeps the API's rules, or the API's 400:
    ``ModelArts.0101`` for a body that is not a JSON object, ``ModelArts.2791`` for a bad OBS
    path, ``ModelArts.2792`` for a boot file outside the code directory, ``ModelArts.0104`` for
    the rest (a Create's ``config_name`` included)."""
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return modelarts_error(400, "ModelArts.0101", "The request body is not a JSON object")
    if creating:
        name = body.get("config_name", "")
        problem = (check_config_name(name) if isinstance(name, str)
                   else f"config_name: {type(name).__name__} is not a string")
        if problem is not None:
            return modelarts_error(400, "ModelArts.0104", str(problem))
    problems = check_body({key: value for key, value in body.items() if not (creating and key == "config_name")})
    if problems:
        first = problems[0]
        code = "ModelArts.0104"
        if first.code == errors.FORMAT and first.column.endswith("_url"):
            code = "ModelArts.2791"
        elif first.column == "boot_file_url" and first.code == errors.CONFLICT:
            code = "ModelArts.2792"
        return modelarts_error(400, code, "; ".join(str(p) for p in problems))
    return body


def not_allowed(route: Route, method: str) -> web.Response:
    """405 ``ModelArts.0105``: a method the API does not have on this path (see the module)."""
    allowed = sorted(verb for kind, verb in OPERATIONS if kind == route.kind)
    response = modelarts_error(405, "ModelArts.0105", f"Method {method} is not allowed here; "
                                                      f"allowed: {', '.join(allowed)}")
    response.headers["Allow"] = ", ".join(allowed)
    return response


def route_of(path: str) -> Route | None:
    """The route of one of the API's paths, or None for any other path:
    ``/v1/{project_id}/training-job-configs`` (the list), ``.../training-job-configs/{config_name}``,
    ``/v1/{project_id}/job/resource-specs`` and ``.../job/ai-engines``."""
    if not path.startswith(_PATH_PREFIX):
        return None
    parts = path[len(_PATH_PREFIX):].split("/")
    if check_project_id(parts[0]) is not None:
        return None
    if parts[1:] == [COLLECTION]:
        return Route(parts[0], COLLECTION)
    if len(parts) != 3 or not parts[2]:
        return None
    if parts[1] == COLLECTION:
        return Route(parts[0], "config", parts[2])
    if parts[1] == "job" and parts[2] in CATALOG:
        return Route(parts[0], parts[2])
    return None
