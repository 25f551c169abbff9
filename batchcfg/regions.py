"""The ModelArts regions and their endpoints, as Huawei's SDKs list them (``ModelArtsRegion``).

Every endpoint is ``https://modelarts.{region}.myhuaweicloud.com``, except CN-Hong Kong
(``ap-southeast-1``), which is served from ``.myhuaweicloud.cn``.
"""

from __future__ import annotations

import difflib

from .errors import UsageError

REGIONS = ("cn-north-1", "cn-north-2", "cn-north-4", "cn-north-9", "cn-north-11", "cn-north-12",
           "cn-east-3", "cn-east-4", "cn-south-1", "cn-southwest-2", "cn-southwest-3",
           "ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-4",
           "af-south-1", "af-north-1", "la-south-2", "la-north-2", "sa-brazil-1", "tr-west-1",
           "me-east-1")
_DOMAINS = {"ap-southeast-1": "myhuaweicloud.cn"}


def endpoint(region: str) -> str:
    """The endpoint of a known region; a :class:`UsageError` naming the nearest one otherwise."""
    if region not in REGIONS:
        near = difflib.get_close_matches(region, REGIONS, n=1)
        hint = f" (did you mean {near[0]}?)" if near else ""
        raise UsageError(f"--region {region!r} is not a ModelArts region{hint}; 'batchcfg regions' "
                         "lists them, or pass --endpoint URL")
    return f"https://modelarts.{region}.{_DOMAINS.get(region, 'myhuaweicloud.com')}"
