"""Where requests go: the ModelArts regions, and the rules an endpoint must meet.

Every region's endpoint is ``https://modelarts.{region}.myhuaweicloud.com``, except CN-Hong Kong
(``ap-southeast-1``), which is served from ``.myhuaweicloud.cn``. A plain ``http://`` endpoint is
refused unless its host is loopback or the user allows it: credentials and configs would cross
the network unencrypted.

>>> endpoint_for(None, "cn-north-4")
'https://modelarts.cn-north-4.myhuaweicloud.com'
>>> endpoint_for("http://127.0.0.1:8765/", None)
'http://127.0.0.1:8765'
"""

from __future__ import annotations

import difflib
import ipaddress

from yarl import URL

from .errors import UsageError

REGIONS = ("cn-north-1", "cn-north-2", "cn-north-4", "cn-north-9", "cn-north-11", "cn-north-12",
           "cn-east-3", "cn-east-4", "cn-south-1", "cn-southwest-2", "cn-southwest-3",
           "ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-4",
           "af-south-1", "af-north-1", "la-south-2", "la-north-2", "sa-brazil-1", "tr-west-1",
           "me-east-1")
_DOMAINS = {"ap-southeast-1": "myhuaweicloud.cn"}


def region_endpoint(region: str) -> str:
    """The endpoint of a known region; a :class:`UsageError` naming the nearest one otherwise."""
    if region not in REGIONS:
        near = difflib.get_close_matches(region, REGIONS, n=1)
        hint = f" (did you mean {near[0]}?)" if near else ""
        raise UsageError(f"--region {region!r} is not a ModelArts region{hint}; 'batchcfg regions' "
                         "lists them, or pass --endpoint URL")
    return f"https://modelarts.{region}.{_DOMAINS.get(region, 'myhuaweicloud.com')}"


def endpoint_for(endpoint: str | None, region: str | None, *, allow_http: bool = False) -> str:
    """``--endpoint``, else the endpoint of ``--region``. A plain ``http://`` endpoint is refused
    unless its host is loopback or ``allow_http``."""
    if endpoint:
        url = parse_endpoint(endpoint)
        if url.scheme == "http" and not allow_http and not is_loopback(url.host or ""):
            raise UsageError(f"endpoint {endpoint!r} is plain http: credentials and configs would "
                             "cross the network unencrypted; use https://, or --allow-http")
        return str(url)
    if region:
        return region_endpoint(region)
    raise UsageError("no endpoint: pass --endpoint URL or --region REGION (or --sandbox to try "
                     "the tool)")


def parse_endpoint(endpoint: str) -> URL:
    """An ``https://host[:port]`` endpoint (``http://`` too); a path, query or user part is refused."""
    url = URL(endpoint.strip().rstrip("/"))
    if url.scheme not in ("https", "http") or not url.host:
        raise UsageError(f"endpoint {endpoint!r} is not an https:// URL")
    if url.raw_path not in ("", "/") or url.query_string or url.fragment or url.user:
        raise UsageError(f"endpoint {endpoint!r} must be scheme://host[:port] only")
    return url.with_path("")


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: traffic that never leaves this machine."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host.lower() == "localhost"
