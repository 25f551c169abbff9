"""Authentication: the ``SDK-HMAC-SHA256`` signer and IAM tokens; where credentials come from is
:mod:`batchcfg.credentials`.

The signer agrees with Huawei's own (``huaweicloudsdkcore.signer.signer.Signer``); the tests hold
it to that on many generated requests. The sandbox verifies signatures with the same functions.

>>> signer = Signer("AK", "SK")
>>> headers = signer.headers("PUT", "modelarts.cn-north-4.myhuaweicloud.com",
...                          "/v1/0123456789abcdef0123456789abcdef/training-job-configs/x", b"{}")
>>> sorted(headers)
['Authorization', 'Content-Type', 'Host', 'X-Sdk-Date']
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote, unquote


if TYPE_CHECKING:
    import aiohttp

ALGORITHM = "SDK-HMAC-SHA256"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
CONTENT_TYPE = "application/json"
ENV_AK = "HUAWEICLOUD_SDK_AK"
ENV_SK = "HUAWEICLOUD_SDK_SK"
ENV_SECURITY_TOKEN = "HUAWEICLOUD_SDK_SECURITY_TOKEN"
_PLAIN_PATH = re.compile(r"[A-Za-z0-9/_.~-]*")


class Auth(Protocol):
    """What the client needs of a way to authenticate: the headers of one request."""

    def headers(self, method: str, host: str, path: str, body: bytes,
                query: Sequence[tuple[str, str]] = (), body_sha256: str | None = None) -> dict[str, str]:
        ...


class Refreshing(Auth, Protocol):
    """Credentials that expire and renew themselves (the ECS metadata service's): the client
    awaits ``ready`` with its session before it signs each request. ``ready`` must cost next to
    nothing when no renewal is due."""

    async def ready(self, session: aiohttp.ClientSession) -> None:
        """Renew the credentials, on ``session``, if they are due."""
        ...


def _encode(text: str) -> str:
    """Percent-encode all but the unreserved characters ``A-Za-z0-9-_.~``."""
    return quote(text, safe="~")


def canonical_uri(path: str) -> str:
    """Each path segment encoded, and a ``/`` at the end (for signing only)."""
    if _PLAIN_PATH.fullmatch(path):  # the usual case (validated names): nothing to encode
        return path if path.endswith("/") else path + "/"
    uri = "/".join(_encode(segment) for segment in unquote(path).split("/"))
    return uri if uri.endswith("/") else uri + "/"


def canonical_query(query: Sequence[tuple[str, str]]) -> str:
    if not query:  # the usual case, once or twice a request
        return ""
    return "&".join(f"{_encode(name)}={_encode(value)}" for name, value in sorted(query))


def signature(secret_key: bytes, method: str, path: str, query: Sequence[tuple[str, str]],
              signed: Sequence[tuple[str, str]], body: bytes, date: str,
              body_sha256: str | None = None) -> str:
    """The hex signature of a request. ``signed`` holds (lowercase name, value) of the signed
    headers, sorted by name; ``date`` is the ``X-Sdk-Date`` value; ``body_sha256``, when known,
    saves hashing the body again."""
    return _signature(secret_key, method, path, canonical_query(query), canonical_headers(signed),
                      ";".join(name for name, _ in signed), body_sha256 or hashlib.sha256(body).hexdigest(), date)


def canonical_headers(signed: Sequence[tuple[str, str]]) -> str:
    return "".join(f"{name}:{value.strip()}\n" for name, value in signed)


def _signature(secret_key: bytes, method: str, path: str, query: str, headers: str, names: str,
               body_sha256: str, date: str) -> str:
    canonical_request = "\n".join((method.upper(), canonical_uri(path), query, headers, names, body_sha256))
    string_to_sign = f"{ALGORITHM}\n{date}\n{hashlib.sha256(canonical_request.encode()).hexdigest()}"
    return hmac.digest(secret_key, string_to_sign.encode(), "sha256").hex()


class Signer:
    """AK/SK request signing, ``SDK-HMAC-SHA256``. Signs host, content-type and x-sdk-date, plus
    x-security-token for temporary credentials. ``repr`` shows the AK's first characters only.

    What is the same for every request of a second (the date, and the canonical form of the
    signed headers) is made once a second, not once a request."""

    def __init__(self, ak: str, sk: str, security_token: str = "") -> None:
        self._ak = ak
        self._sk = sk.encode()
        self._security_token = security_token
        self._names = "content-type;host;x-sdk-date" + (";x-security-token" if security_token else "")
        self._authorization = f"{ALGORITHM} Access={ak}, SignedHeaders={self._names}, Signature="
        self._second: tuple[int, str, str, str] = (-1, "", "", "")  # second, host, date, signed headers

    def __repr__(self) -> str:
        return f"Signer(ak={_mask(self._ak)}, temporary={bool(self._security_token)})"

    def headers(self, method: str, host: str, path: str, body: bytes,
                query: Sequence[tuple[str, str]] = (), body_sha256: str | None = None,
                now: datetime | None = None) -> dict[str, str]:
        if now is not None:
            date = now.astimezone(timezone.utc).strftime(DATE_FORMAT)
            signed = self._signed_headers(host, date)
        else:
            second = int(time.time())
            if self._second[:2] != (second, host):
                date = time.strftime(DATE_FORMAT, time.gmtime(second))
                self._second = (second, host, date, self._signed_headers(host, date))
            date, signed = self._second[2:]
        hex_signature = _signature(self._sk, method, path, canonical_query(query), signed, self._names,
                                   body_sha256 or hashlib.sha256(body).hexdigest(), date)
        headers = {"Content-Type": CONTENT_TYPE, "Host": host, "X-Sdk-Date": date}
        if self._security_token:
            headers["X-Security-Token"] = self._security_token
        headers["Authorization"] = self._authorization + hex_signature
        return headers

    def _signed_headers(self, host: str, date: str) -> str:
        signed = [("content-type", CONTENT_TYPE), ("host", host), ("x-sdk-date", date)]
        if self._security_token:
            signed.append(("x-security-token", self._security_token))
        return canonical_headers(signed)


class TokenAuth:
    """An IAM token, sent as ``X-Auth-Token``."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __repr__(self) -> str:
        return "TokenAuth(token=***)"

    def headers(self, method: str, host: str, path: str, body: bytes,
                query: Sequence[tuple[str, str]] = (), body_sha256: str | None = None) -> dict[str, str]:
        return {"Content-Type": CONTENT_TYPE, "Host": host, "X-Auth-Token": self._token}


def _mask(secret: str) -> str:
    return secret[:3] + "***" if len(secret) > 8 else "***"
