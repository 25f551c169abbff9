"""Temporary credentials from the ECS metadata service, renewed before they expire.

On an ECS with an agency, Huawei's SDK (its ``MetadataAccessor``) gets temporary AK/SK and a
security token this way, and batchcfg does the same, when nothing else gives credentials:

1. ``PUT {base}/meta-data/latest/api/token`` with ``X-Metadata-Token-Ttl-Seconds: 21600`` gives a
   metadata token; a 404, 405 or 503 there means the service has none: go on without one;
2. ``GET {base}/openstack/latest/securitykey`` with ``X-Metadata-Token: {token}`` answers
   ``{"credential": {"access", "secret", "securitytoken", "expires_at"}}``. A 401 (other than "no
   agency") gets a new token and one more try, as the SDK does.

``base`` is ``http://169.254.169.254``, or ``BATCHCFG_METADATA_URL`` (``off`` turns the source off).
The first credentials are fetched during discovery, in a thread of their own (discovery is
synchronous); later ones by :meth:`MetadataCredentials.ready`, which the client awaits before
each request, on the run's own session. They are renewed at ``expires_at`` minus the SDK's 40
minutes, or minus half their lifetime when that is shorter. No secret goes to a log, a ``repr``
or an exception: not the AK/SK, the security token nor the metadata token.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import anyio
import orjson
from yarl import URL

from .auth import Signer, _mask
from .endpoints import is_loopback
from .errors import ConnectionFailed, UsageError

if TYPE_CHECKING:
    import aiohttp

ENV_METADATA_URL = "BATCHCFG_METADATA_URL"
DEFAULT_URL = "http://169.254.169.254"
TOKEN_PATH = "/meta-data/latest/api/token"
SECURITY_KEY_PATH = "/openstack/latest/securitykey"
TOKEN_TTL_SECONDS = 6 * 60 * 60
CONNECT_TIMEOUT = 1.0  # a laptop without the service gives up this fast
READ_TIMEOUT = 3.0     # the SDK's
SDK_MARGIN = 40 * 60.0  # the SDK renews this long before expires_at
MAX_RETRY_WAIT = 30.0   # a failed renewal is tried again within this (sooner for short lifetimes)
EXPIRED_RETRY_WAIT = 1.0  # once expired: attempts fail at once for this long between renewals
MAX_ANSWER_BYTES = 64 * 1024
NO_AGENCY = "Please configure Cloud Service Agency first"
_NO_TOKEN = frozenset({404, 405, 503})
log = logging.getLogger(__name__)


class MetadataError(Exception):
    """The metadata service gave no credentials. The message says why, and holds no secret."""


@dataclass(frozen=True, repr=False)
class Credential:
    """One set of temporary credentials; ``expires_at`` in epoch seconds."""

    access: str
    secret: str
    security_token: str
    expires_at: float


def metadata_url(env: Mapping[str, str]) -> URL | None:
    """The metadata service's base URL, or None when ``BATCHCFG_METADATA_URL`` is ``off``. Only
    ``http://`` to a loopback or link-local host: the answer holds credentials."""
    value = env.get(ENV_METADATA_URL, "").strip() or DEFAULT_URL
    if value.lower() == "off":
        return None
    try:
        url: URL | None = URL(value.rstrip("/"))
    except ValueError:
        url = None
    host = (url.host or "").strip("[]") if url is not None else ""
    if (url is None or url.scheme != "http" or not host or url.raw_path not in ("", "/") or url.query_string
            or url.fragment or url.user or not (is_loopback(host) or _link_local(host))):
        raise UsageError(f"{ENV_METADATA_URL} must be 'off' or http://HOST[:PORT] with a loopback or "
                         "link-local host")
    return url.with_path("")


def _link_local(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_link_local
    except ValueError:
        return False


def metadata_credentials(env: Mapping[str, str]) -> MetadataCredentials | None:
    """Credentials from the metadata service, fetched now; None when the source is ``off``.
    Raises :class:`MetadataError` when the service gives none (not there, no agency, ...)."""
    base = metadata_url(env)
    if base is None:
        return None

    async def first() -> tuple[Credential, str | None]:
        import aiohttp

        async with aiohttp.ClientSession(trust_env=False) as session:
            return await fetch(session, base, None)

    # In a thread with its own loop: discovery may run inside the caller's event loop.
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="batchcfg-metadata") as pool:
        credential, token = pool.submit(lambda: asyncio.run(first())).result()
    return MetadataCredentials(base, credential, token)


async def fetch(session: aiohttp.ClientSession, base: URL, token: str | None) -> tuple[Credential, str | None]:
    """One set of credentials, by the SDK's protocol. ``token`` is the metadata token of the last
    fetch (None: ask for one). Returns the credentials and the token to use next time."""
    if token is None:
        token = await _token(session, base, required=False)
    status, text = await _get_key(session, base, token)
    if status == 401 and NO_AGENCY not in text:  # the token expired: a new one, and once more
        token = await _token(session, base, required=True)
        status, text = await _get_key(session, base, token)
    if status != 200:
        hint = " (the ECS has no agency: configure one)" if NO_AGENCY in text else ""
        raise MetadataError(f"GET {SECURITY_KEY_PATH}: HTTP {status}{hint}")
    credential = parse_credential(text)
    if credential.expires_at <= time.time():
        raise MetadataError("the credentials it gave have already expired (is the clock right?)")
    return credential, token


async def _token(session: aiohttp.ClientSession, base: URL, *, required: bool) -> str | None:
    status, text = await _send(session, "PUT", base.with_path(TOKEN_PATH),
                               {"X-Metadata-Token-Ttl-Seconds": str(TOKEN_TTL_SECONDS)})
    if status == 200:
        return text.strip() or None  # an empty token: none, as the SDK takes it
    if status in _NO_TOKEN and not required:
        return None
    raise MetadataError(f"PUT {TOKEN_PATH}: HTTP {status}")


async def _get_key(session: aiohttp.ClientSession, base: URL, token: str | None) -> tuple[int, str]:
    headers = {"X-Metadata-Token": token} if token else {}
    return await _send(session, "GET", base.with_path(SECURITY_KEY_PATH), headers)


async def _send(session: aiohttp.ClientSession, method: str, url: URL, headers: dict[str, str]) -> tuple[int, str]:
    """One request: its status and text. Every failure is a :class:`MetadataError` naming the
    request only."""
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=CONNECT_TIMEOUT + 2 * READ_TIMEOUT, sock_connect=CONNECT_TIMEOUT,
                                    sock_read=READ_TIMEOUT)
    try:
        async with session.request(method, url, headers=headers, timeout=timeout,
                                   allow_redirects=False) as response:
            chunks, size = [], 0
            async for chunk in response.content.iter_chunked(16 * 1024):
                size += len(chunk)
                if size > MAX_ANSWER_BYTES:
                    raise MetadataError(f"{method} {url.path}: the answer is over {MAX_ANSWER_BYTES} bytes")
                chunks.append(chunk)
            return response.status, b"".join(chunks).decode("utf-8", "replace")
    except TimeoutError:
        raise MetadataError(f"{method} {url.path}: no answer within the timeout") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise MetadataError(f"{method} {url.path}: cannot connect ({type(exc).__name__})") from None


def parse_credential(text: str) -> Credential:
    """The ``securitykey`` answer, with the names the SDK accepts (``credential`` or
    ``credentials``; ``access``/``accessKeyId``, ``secret``/``secretAccessKey``,
    ``securitytoken``/``securityToken``, ``expires_at``/``expiration``)."""
    try:
        data: Any = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise MetadataError("the securitykey answer is not JSON") from None
    if isinstance(data, dict):
        data = data.get("credential") or data.get("credentials") or data
    if not isinstance(data, dict):
        raise MetadataError("the securitykey answer is not a JSON object")
    access = _first(data, ("access", "accessKeyId", "access_key_id"))
    secret = _first(data, ("secret", "secretAccessKey", "secret_access_key"))
    token = _first(data, ("securitytoken", "securityToken", "security_token"))
    expires = _first(data, ("expires_at", "expiration"))
    if not (access and secret and expires):
        raise MetadataError("the securitykey answer lacks access, secret or expires_at")
    try:
        when = datetime.fromisoformat(expires)
    except ValueError:
        raise MetadataError("the securitykey answer's expires_at is not a date and time") from None
    when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    return Credential(access, secret, token, when.timestamp())


def _first(data: dict[str, Any], names: Sequence[str]) -> str:
    return next((str(data[name]).strip() for name in names if data.get(name)), "")


class MetadataCredentials:
    """Temporary AK/SK and security token from the metadata service, signed like any
    :class:`~batchcfg.auth.Signer`'s, and renewed by :meth:`ready` before they expire."""

    def __init__(self, base: URL, credential: Credential, token: str | None) -> None:
        self._base = base
        self._token = token
        self._lock: anyio.Lock | None = None
        self._error = ""
        self._use(credential, time.time())

    def __repr__(self) -> str:
        expires = datetime.fromtimestamp(self._expires_at, timezone.utc).isoformat(timespec="seconds")
        return (f"MetadataCredentials(ak={_mask(self._access)}, temporary=True, "
                f"expires_at={expires}, source={self._base})")

    @property
    def refresh_at(self) -> float:
        """When (epoch seconds) :meth:`ready` next tries to renew the credentials."""
        return self._refresh_at

    def headers(self, method: str, host: str, path: str, body: bytes,
                query: Sequence[tuple[str, str]] = (), body_sha256: str | None = None,
                now: datetime | None = None) -> dict[str, str]:
        """The request's headers, signed with the current credentials."""
        return self._signer.headers(method, host, path, body, query=query, body_sha256=body_sha256, now=now)

    async def ready(self, session: aiohttp.ClientSession) -> None:
        """Renew the credentials when they are due; two clock comparisons otherwise. One request
        renews them, on ``session``; the others sign with the current ones meanwhile, and wait for
        the renewal only when those are close to expiry. A renewal that fails is logged and tried
        again soon. Once the credentials have expired unrenewed, the attempt fails with
        :class:`~batchcfg.errors.ConnectionFailed` (retried like one), at once until the next
        renewal is due: requests never go out with expired credentials."""
        now = time.time()
        if now < self._refresh_at and now < self._expires_at:
            return
        if self._lock is None:
            self._lock = anyio.Lock()
        if now < self._refresh_at or (self._lock.locked() and now < self._safe_until):
            self._check_expiry(now)
            return
        async with self._lock:
            if time.time() >= self._refresh_at:  # not renewed while this request waited
                await self._renew(session, time.time())
        self._check_expiry(time.time())

    async def _renew(self, session: aiohttp.ClientSession, now: float) -> None:
        try:
            credential, self._token = await fetch(session, self._base, self._token)
        except MetadataError as exc:
            left = self._expires_at - now
            self._error = str(exc)
            self._refresh_at = now + (min(MAX_RETRY_WAIT, left / 4) if left > 0 else EXPIRED_RETRY_WAIT)
            log.warning("could not renew the ECS metadata credentials (%s); %s", exc,
                        f"the current ones last {left:.0f} s more" if left > 0 else "they have expired")
            return
        self._use(credential, now)
        log.info("renewed the ECS metadata credentials (ak %s)", _mask(credential.access))

    def _check_expiry(self, now: float) -> None:
        if now >= self._expires_at:
            raise ConnectionFailed(f"the ECS metadata credentials expired and could not be renewed: {self._error}")

    def _use(self, credential: Credential, now: float) -> None:
        self._access = credential.access
        self._expires_at = credential.expires_at
        self._signer = Signer(credential.access, credential.secret, credential.security_token)
        margin = min(SDK_MARGIN, (credential.expires_at - now) / 2)
        self._refresh_at = credential.expires_at - margin
        self._safe_until = credential.expires_at - margin / 2  # others go on signing until then
