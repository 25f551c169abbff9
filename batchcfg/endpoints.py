"""Where requests go: the ModelArts regions, the overrides Huawei's SDK honours, and the rules an
endpoint must meet.

Every region's endpoint is ``https://modelarts.{region}.myhuaweicloud.com``, except CN-Hong Kong
(``ap-southeast-1``), which is served from ``.myhuaweicloud.cn``. As in Huawei's SDK (its region
providers, ``huaweicloudsdkcore.region``), a region's endpoint may be overridden, and a region the
table does not know (a dedicated one) named: by ``HUAWEICLOUD_SDK_REGION_MODELARTS_{REGION}``, else
by the regions file (``~/.huaweicloud/regions.yaml``, or ``HUAWEICLOUD_SDK_REGIONS_FILE``). A plain
``http://`` endpoint is refused unless its host is loopback or the user allows it: credentials and
configs would cross the network unencrypted.

>>> endpoint_for(None, "cn-north-4")
'https://modelarts.cn-north-4.myhuaweicloud.com'
>>> endpoint_for("http://127.0.0.1:8765/", None)
'http://127.0.0.1:8765'
>>> endpoint_for(None, "cn-north-4",
...              env={"HUAWEICLOUD_SDK_REGION_MODELARTS_CN_NORTH_4": "https://a.example,https://b.example"})
'https://a.example'
"""

from __future__ import annotations

import difflib
import importlib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yarl import URL

from .errors import UsageError

REGIONS = ("cn-north-1", "cn-north-2", "cn-north-4", "cn-north-9", "cn-north-11", "cn-north-12",
           "cn-east-3", "cn-east-4", "cn-south-1", "cn-southwest-2", "cn-southwest-3",
           "ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-4",
           "af-south-1", "af-north-1", "la-south-2", "la-north-2", "sa-brazil-1", "tr-west-1",
           "me-east-1")
_DOMAINS = {"ap-southeast-1": "myhuaweicloud.cn"}
SERVICE = "MODELARTS"  # the SDK's name of the service, upper-cased as its region providers do
ENV_REGION_PREFIX = f"HUAWEICLOUD_SDK_REGION_{SERVICE}_"
ENV_REGIONS_FILE = "HUAWEICLOUD_SDK_REGIONS_FILE"
DEFAULT_REGIONS_FILE = Path("~/.huaweicloud/regions.yaml")
MAX_REGIONS_FILE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class RegionOverride:
    """The endpoint a region's override names, and where it was found (a variable or a file)."""

    region: str
    endpoint: str
    source: str


def region_endpoint(region: str) -> str:
    """The endpoint of a known region; a :class:`UsageError` naming the nearest one otherwise."""
    if region not in REGIONS:
        near = difflib.get_close_matches(region, REGIONS, n=1)
        hint = f" (did you mean {near[0]}?)" if near else ""
        raise UsageError(f"--region {region!r} is not a ModelArts region{hint}; 'batchcfg regions' "
                         "lists them, or pass --endpoint URL")
    return f"https://modelarts.{region}.{_DOMAINS.get(region, 'myhuaweicloud.com')}"


def endpoint_for(endpoint: str | None, region: str | None, *, allow_http: bool = False,
                 env: Mapping[str, str] | None = None) -> str:
    """``--endpoint``, else the endpoint of ``--region``: with ``env``, its override
    (:func:`region_override`) when there is one, else the table's. A plain ``http://`` endpoint,
    given or overridden, is refused unless its host is loopback or ``allow_http``."""
    if endpoint:
        return _checked(endpoint, allow_http)
    if region:
        override = region_override(region, env) if env is not None else None
        if override is not None:
            return _checked(override.endpoint, allow_http, override.source)
        return region_endpoint(region)
    raise UsageError("no endpoint: pass --endpoint URL or --region REGION (or --sandbox to try "
                     "the tool)")


def _checked(endpoint: str, allow_http: bool, source: str = "") -> str:
    url = parse_endpoint(endpoint, source=source)
    if url.scheme == "http" and not allow_http and not is_loopback(url.host or ""):
        raise UsageError(f"{_named(endpoint, source)} is plain http: credentials and configs would "
                         "cross the network unencrypted; use https://, or --allow-http")
    return str(url)


def parse_endpoint(endpoint: str, *, source: str = "") -> URL:
    """An ``https://host[:port]`` endpoint (``http://`` too); a path, query or user part is refused.
    ``source`` names where it came from, for the error message."""
    try:
        url = URL(endpoint.strip().rstrip("/"))
    except ValueError:  # a bad port, an unclosed [IPv6], no host
        raise UsageError(f"{_named(endpoint, source)} is not a valid URL") from None
    if url.scheme not in ("https", "http") or not url.host:
        raise UsageError(f"{_named(endpoint, source)} is not an https:// URL")
    if url.raw_path not in ("", "/") or url.query_string or url.fragment or url.user:
        raise UsageError(f"{_named(endpoint, source)} must be scheme://host[:port] only")
    return url.with_path("")


def _named(endpoint: str, source: str) -> str:
    """``endpoint 'URL'`` for a message, without any ``user:password@`` part, and its source."""
    scheme, separator, rest = endpoint.strip().partition("://")
    if separator and "@" in rest.split("/", 1)[0]:
        endpoint = f"{scheme}://***@{rest.split('@', 1)[1]}"
    return f"endpoint {endpoint!r}" + (f" (from {source})" if source else "")


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: traffic that never leaves this machine."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host.lower() == "localhost"


def region_variable(region: str) -> str:
    """The variable that overrides a region's endpoint: ``cn-north-4`` ->
    ``HUAWEICLOUD_SDK_REGION_MODELARTS_CN_NORTH_4``."""
    return ENV_REGION_PREFIX + region.replace("-", "_").upper()


def region_override(region: str, env: Mapping[str, str]) -> RegionOverride | None:
    """The region's endpoint as Huawei's SDK overrides it, or None: the variable
    :func:`region_variable` (comma-separated endpoints, the first is used; an empty variable is
    ignored), else the regions file's ``modelarts`` entry whose ``id`` is the region. The regions
    file is read only when the variable is not set."""
    name = region_variable(region)
    value = env.get(name, "")
    if value.strip():
        first = value.split(",", 1)[0].strip()
        if not first:
            raise UsageError(f"{name}: the first endpoint is empty")
        return RegionOverride(region, first, name)
    path = regions_file_path(env)
    if path is None:
        return None
    endpoints = _file_regions(path).get(region)
    if endpoints is None:
        return None
    if not endpoints or not endpoints[0].strip():
        raise UsageError(f"{path}: the {SERVICE.lower()} region {region!r} has an empty endpoint")
    return RegionOverride(region, endpoints[0].strip(), str(path))


def regions_file_path(env: Mapping[str, str]) -> Path | None:
    """The regions file, or None when there is none at the default place. A file named by
    ``HUAWEICLOUD_SDK_REGIONS_FILE`` must exist (the SDK would quietly ignore a missing one)."""
    named = env.get(ENV_REGIONS_FILE, "").strip()
    path = Path(named or DEFAULT_REGIONS_FILE).expanduser()
    if path.is_file():
        return path
    if named:
        raise UsageError(f"{path}: no such regions file ({ENV_REGIONS_FILE})")
    return None


def _file_regions(path: Path) -> dict[str, list[str]]:
    """The regions file's ModelArts regions: id -> endpoints (``endpoints``, then ``endpoint``,
    as the SDK lists them). Like the SDK: the service name is matched in any case, an entry with no
    ``id`` is skipped, and a later entry for the same id wins; an entry with no endpoint maps to
    ``[]`` unless another one gives some. A file the SDK could not read is a :class:`UsageError`."""
    data = _load_yaml(path)
    if data is None:  # empty, or comments only
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{path}: not a regions file: expected a mapping of services to lists of regions")
    found: dict[str, list[str]] = {}
    for service, entries in data.items():
        if not isinstance(entries, list):
            raise UsageError(f"{path}: {service!s}: expected a list of regions ({{id, endpoint}} or {{id, endpoints}})")
        for number, entry in enumerate(entries, start=1):
            endpoints = _entry_endpoints(path, f"{service!s}, region {number}", entry)
            if endpoints is not None and str(service).upper() == SERVICE:
                region_id = str(entry["id"])
                if endpoints or region_id not in found:
                    found[region_id] = endpoints
    return found


def _entry_endpoints(path: Path, where: str, entry: Any) -> list[str] | None:
    """One region entry's endpoints, or None for an entry without an id (the SDK skips it)."""
    if not isinstance(entry, dict):
        raise UsageError(f"{path}: {where}: expected a mapping with id and endpoint (or endpoints)")
    if not entry.get("id"):
        return None
    endpoints = entry.get("endpoints") or []
    single = entry.get("endpoint")
    if not isinstance(endpoints, list) or any(not isinstance(e, str) for e in endpoints):
        raise UsageError(f"{path}: {where}: endpoints must be a list of URLs")
    if single and not isinstance(single, str):
        raise UsageError(f"{path}: {where}: endpoint must be a URL")
    return [*endpoints, single] if single else list(endpoints)


def _load_yaml(path: Path) -> Any:
    """The file's one YAML document, parsed as the SDK parses it (PyYAML's ``safe_load``)."""
    try:
        yaml: Any = importlib.import_module("yaml")
    except ImportError:
        raise UsageError(f"{path}: reading a regions file needs PyYAML: pip install pyyaml") from None
    try:
        raw = path.read_bytes()
        if len(raw) > MAX_REGIONS_FILE_BYTES:
            raise UsageError(f"{path}: the regions file is over {MAX_REGIONS_FILE_BYTES // 1024} KiB")
        return yaml.safe_load(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the regions file ({type(exc).__name__})") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML{_where(exc)}") from None


def _where(exc: Any) -> str:
    """`` (line N: problem)`` for a YAML error, without quoting the file's text."""
    mark, problem = getattr(exc, "problem_mark", None), getattr(exc, "problem", None)
    if mark is None:
        return ""
    return f" (line {mark.line + 1}" + (f": {' '.join(str(problem).split())})" if problem else ")")
