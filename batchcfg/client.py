"""The HTTP client: one aiohttp session for a run, one request -> one :class:`Answer`.

This is the only module that knows aiohttp's client: its exceptions end here, turned into
:class:`~batchcfg.errors.AttemptTimeout` or :class:`~batchcfg.errors.ConnectionFailed`.
Redirects are never followed (credentials must not travel to another host).

>>> async def show(auth):
...     async with Client("https://modelarts.cn-north-4.myhuaweicloud.com", auth, timeout=30) as client:
...         answer = await client.put_config("0123456789abcdef0123456789abcdef", "resnet", b"{}")
...         print(answer.status, answer.ok, answer.error_code, answer.request_id)
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

import aiohttp
import orjson
from yarl import URL

from . import errors
from .auth import Auth, canonical_query
from .endpoints import parse_endpoint
from .errors import AttemptTimeout, ConnectionFailed, UsageError
from .retry import parse_retry_after
from .text import MAX_CODE_CHARS, MAX_ID_CHARS, MAX_MESSAGE_CHARS, clip, from_server, printable

MAX_ANSWER_BYTES = 1024 * 1024
_PLAIN = re.compile(r"[A-Za-z0-9_.~-]+")  # nothing to percent-encode


class Answer(NamedTuple):
    """The server's answer to one attempt. ``ok`` is a 2xx whose body does not say
    ``"is_success": false``. ``error_code`` is the server's code, else ``HTTP.<status>``
    (or ``BATCHCFG.BAD_RESPONSE`` when a 2xx body is not the API's JSON)."""

    status: int
    ok: bool
    error_code: str = ""
    error_message: str = ""
    request_id: str = ""
    retry_after: float | None = None
    body: dict[str, Any] | None = None


def config_path(project_id: str, config_name: str = "") -> str:
    """``/v1/{project_id}/training-job-configs/{config_name}`` (without a name: the collection),
    each part percent-encoded. The parts are validated before this; encoding them is the second
    line of defence."""
    if not (_PLAIN.fullmatch(project_id) and (not config_name or _PLAIN.fullmatch(config_name))):
        project_id, config_name = quote(project_id, safe=""), quote(config_name, safe="")
    return f"/v1/{project_id}/training-job-configs/{config_name}" if config_name else f"/v1/{project_id}/training-job-configs"


class Client:
    """One ``aiohttp.ClientSession`` for a run. Use as ``async with Client(...) as client``."""

    def __init__(self, endpoint: str, auth: Auth, *, timeout: float, connections: int = 100,
                 ca_bundle: Path | None = None) -> None:
        self._base = parse_endpoint(endpoint)
        self._host = self._base.host_port_subcomponent or ""
        self._auth = auth
        # Credentials that renew themselves (auth.Refreshing) are made ready before each request.
        self._ready: Callable[[aiohttp.ClientSession], Awaitable[None]] | None = getattr(auth, "ready", None)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._connections = connections
        self._ssl = _tls_context(ca_bundle)
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"Client({str(self._base)!r}, auth={self._auth!r}, open={self._session is not None})"

    async def __aenter__(self) -> Client:
        connector = aiohttp.TCPConnector(limit=self._connections, ttl_dns_cache=300, ssl=self._ssl)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout,
                                              auto_decompress=True, trust_env=False)
        # aiohttp silently resends an idempotent request once when a reused connection drops.
        # Our own retries do that, counted and rate-limited; aiohttp's test client turns this
        # off the same way (there is no public switch).
        if hasattr(self._session, "_retry_connection"):
            self._session._retry_connection = False
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session and its connections (at once, or when the block ends)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def put_config(self, project_id: str, config_name: str, body: bytes,
                         body_sha256: str | None = None) -> Answer:
        """Send one Modify request (``PUT``) with an already serialised JSON body (and its
        SHA-256, when known, to save hashing it again for the signature)."""
        return await self.request("PUT", config_path(project_id, config_name), body, body_sha256)

    async def get_config(self, project_id: str, config_name: str) -> Answer:
        """Read one configuration (``GET``); the parsed JSON is ``answer.body``."""
        return await self.request("GET", config_path(project_id, config_name), b"")

    async def create_config(self, project_id: str, body: bytes) -> Answer:
        """Create a configuration (``POST``): the Modify body plus ``config_name``."""
        return await self.request("POST", config_path(project_id), body)

    async def delete_config(self, project_id: str, config_name: str) -> Answer:
        """Delete a configuration (``DELETE``)."""
        return await self.request("DELETE", config_path(project_id, config_name), b"")

    async def list_configs(self, project_id: str, query: Sequence[tuple[str, str]]) -> Answer:
        """One page of the List API (``per_page``, ``page``, ``search_content``, ...)."""
        return await self.request("GET", config_path(project_id), b"", query=query)

    async def request(self, method: str, path: str, body: bytes, body_sha256: str | None = None,
                      query: Sequence[tuple[str, str]] = ()) -> Answer:
        """One attempt. Raises :class:`AttemptTimeout` or :class:`ConnectionFailed` when there is
        no complete HTTP answer; every HTTP answer, good or bad, is an :class:`Answer`."""
        if self._session is None:
            raise RuntimeError("Client is not open: use 'async with Client(...)'")
        if self._ready is not None:
            await self._ready(self._session)  # may raise ConnectionFailed: expired, not renewed
        headers = self._auth.headers(method, self._host, path, body, query=query, body_sha256=body_sha256)
        url = URL.build(scheme=self._base.scheme, authority=self._host, path=path,
                        query_string=canonical_query(query), encoded=True)  # parts, not a string to parse
        try:
            async with self._session.request(method, url, data=body or None, headers=headers,
                                             allow_redirects=False) as response:
                raw = await _read_limited(response)
                return _interpret(response.status, response.reason or "", response.headers, raw)
        except TimeoutError:
            raise AttemptTimeout(f"no answer within {self._timeout.total:g} s") from None
        except aiohttp.ClientError as exc:
            raise ConnectionFailed(_describe(exc)) from None
        except OSError as exc:
            raise ConnectionFailed(exc.strerror or type(exc).__name__) from None


def _tls_context(ca_bundle: Path | None) -> ssl.SSLContext:
    """Certificate and host name verification always on; ``ca_bundle`` adds a private CA."""
    context = ssl.create_default_context()
    if ca_bundle is not None:
        try:
            context.load_verify_locations(cafile=str(ca_bundle))
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"--ca-bundle {ca_bundle}: not a readable PEM bundle ({type(exc).__name__})") from None
    return context


async def _read_limited(response: aiohttp.ClientResponse) -> bytes | None:
    """The body, or None when it is larger than any answer of this API should be. The bound is on
    the body as decoded (a gzip body of a megabyte may inflate to a gigabyte), while it is read."""
    if response.content_length is not None and response.content_length > MAX_ANSWER_BYTES:
        return None
    if response.content_length is not None and "Content-Encoding" not in response.headers:
        return await response.read()  # the usual case: one read, no chunk loop
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _interpret(status: int, reason: str, headers: Any, raw: bytes | None) -> Answer:
    request_id = from_server(headers.get("X-Request-Id", ""), MAX_ID_CHARS)
    retry_after = parse_retry_after(headers.get("Retry-After")) if status >= 300 else None
    payload: Any = None
    if raw:
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError:  # not JSON, not UTF-8, or a lone surrogate escape
            payload = None
    data = payload if isinstance(payload, dict) else None
    if data is not None:
        request_id = request_id or from_server(data.get("request_id") or "", MAX_ID_CHARS)
    if 200 <= status < 300:
        if data is None:
            what = "an oversized body" if raw is None else "no JSON object"
            return Answer(status, False, errors.BAD_RESPONSE, f"HTTP {status} with {what}",
                          request_id, retry_after)
        success = data.get("is_success")
        if success is True or (success is None and not data.get("error_code")):
            return Answer(status, True, request_id=request_id, body=data)
        if success is not False and not data.get("error_code"):  # "false", 0, ...: not the API's boolean
            return Answer(status, False, errors.BAD_RESPONSE,
                          f"HTTP {status} with is_success {from_server(repr(success), 40)}", request_id, retry_after)
        return Answer(status, False, _code(data, status), _message(data, reason), request_id, retry_after, data)
    if 300 <= status < 400:
        location = headers.get("Location", "")
        return Answer(status, False, f"HTTP.{status}", f"redirect to {clip(repr(location), 200)} not followed",
                      request_id, retry_after)
    if data is None:
        snippet = " ".join((raw or b"").decode("utf-8", "replace").split())[:200]
        return Answer(status, False, f"HTTP.{status}", printable(snippet or reason), request_id, retry_after)
    return Answer(status, False, _code(data, status), _message(data, reason), request_id,
                  retry_after, data)


def _code(data: dict[str, Any], status: int) -> str:
    code = data.get("error_code")
    return from_server(code, MAX_CODE_CHARS) if code else f"HTTP.{status}"


def _message(data: dict[str, Any], reason: str) -> str:
    message = data.get("error_message") or data.get("error_msg")
    return from_server(" ".join(str(message).split()) if message else reason, MAX_MESSAGE_CHARS)


def _describe(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the answer was cut off"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port} ({exc.os_error.strerror or exc.os_error})"
    return " ".join(str(exc).split()) or type(exc).__name__
