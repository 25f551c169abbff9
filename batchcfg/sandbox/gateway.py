"""What the API gateway does before ModelArts sees a request: authentication (an IAM token, or an
``SDK-HMAC-SHA256`` signature verified with the signer's own functions, ``X-Sdk-Date`` within 15
minutes, five bad signatures lock the AK for five minutes), the project check, throttling; and
the error bodies of the gateway and of ModelArts."""

from __future__ import annotations

import hmac
import math
from datetime import datetime, timezone
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from aiohttp import web

from ..auth import ALGORITHM, DATE_FORMAT, signature
from ..clock import Clock

if TYPE_CHECKING:
    from . import SandboxConfig, SandboxState

MAX_CLOCK_SKEW = 15 * 60
LOCK_AFTER_FAILURES = 5
LOCK_SECONDS = 300


class Gateway:
    """The checks of one sandbox's gateway, over its state."""

    def __init__(self, config: SandboxConfig, state: SandboxState, clock: Clock) -> None:
        self.config = config
        self.state = state
        self.clock = clock

    def authenticate(self, request: web.Request, body: bytes, project_id: str,
                      request_id: str) -> web.Response | None:
        """The gateway's 401 or 403 for this request, or None when it may pass."""
        token = request.headers.get("X-Auth-Token")
        authorization = request.headers.get("Authorization", "")
        if token is not None:
            if not hmac.compare_digest(token.encode(), self.config.token.encode()):
                return unauthorized("decrypt token fail", request_id)
        elif authorization.startswith(ALGORITHM + " "):
            failure = self._verify_signature(request, body, authorization)
            if failure:
                return unauthorized(failure, request_id)
        else:
            return unauthorized("no X-Auth-Token and no SDK-HMAC-SHA256 Authorization header", request_id)
        if project_id != self.config.project_id:
            return gateway_error(403, "APIGW.0302", "The IAM user is not authorized to access the API: "
                                               "wrong project", request_id)
        return None

    def _verify_signature(self, request: web.Request, body: bytes, authorization: str) -> str:
        parts = dict(part.strip().partition("=")[::2]
                     for part in authorization[len(ALGORITHM) + 1:].split(","))
        ak, names, given = parts.get("Access", ""), parts.get("SignedHeaders", ""), parts.get("Signature", "")
        now = self.clock.now()
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

    def throttle(self, request_id: str) -> web.Response | None:
        """429 ``APIGW.0308`` with ``Retry-After`` beyond ``throttle_rps``, or None."""
        limit = self.config.throttle_rps
        if not limit:
            return None
        now = self.clock.now()
        accepted = self.state.accepted
        while accepted and now - accepted[0] >= 1.0:
            accepted.popleft()
        if len(accepted) >= limit:
            wait = max(1, math.ceil(accepted[0] + 1.0 - now))
            response = gateway_error(429, "APIGW.0308", "The throttling threshold has been reached: policy "
                                                   f"user over ratelimit,limit:{limit:g},time:1 second",
                                request_id)
            response.headers["Retry-After"] = str(wait)
            return response
        accepted.append(now)
        return None


def missing(config_name: str) -> web.Response:
    """404 ``ModelArts.0102``: the project holds no config of this name."""
    return modelarts_error(404, "ModelArts.0102", f"Training job config {config_name} does not exist")


def gateway_error(status: int, code: str, message: str, request_id: str) -> web.Response:
    """An API Gateway error body: ``error_code``, ``error_msg``, ``request_id``."""
    return web.json_response({"error_code": code, "error_msg": message, "request_id": request_id},
                             status=status)


def unauthorized(reason: str, request_id: str) -> web.Response:
    """401 ``APIGW.0301``: the credentials are missing or wrong."""
    return gateway_error(401, "APIGW.0301", f"Incorrect IAM authentication information: {reason}", request_id)


def modelarts_error(status: int, code: str, message: str) -> web.Response:
    """A ModelArts error body: ``is_success`` false, ``error_code``, ``error_message``."""
    return web.json_response({"is_success": False, "error_code": code, "error_message": message},
                             status=status)
