"""batchcfg: change many Huawei Cloud ModelArts training job configurations from one spreadsheet.

The library under the ``batchcfg`` command::

    import anyio
    from batchcfg import Options, apply, validate

    summary = validate("configs.csv")                                  # offline
    options = Options.of(region="cn-north-4", project_id="0123456789abcdef0123456789abcdef")
    summary = anyio.run(apply, "configs.csv", options)                 # credentials from the SDK's places
    print(summary.counts, summary.report, summary.exit_code)

Names are imported on first use, so that ``batchcfg --help`` does not load aiohttp or pandas.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["BatchcfgError", "ManifestError", "Options", "Summary", "UsageError", "__version__",
           "apply", "load_manifest", "plan", "rollback", "validate"]

_WHERE = {"Options": "options", "Summary": "model", "apply": "commands", "validate": "commands",
          "plan": "commands", "rollback": "commands",
          "BatchcfgError": "errors", "ManifestError": "errors", "UsageError": "errors",
          "load_manifest": "manifest"}

if TYPE_CHECKING:
    from .commands import apply, plan, rollback, validate
    from .errors import BatchcfgError, ManifestError, UsageError
    from .manifest import open_manifest as load_manifest
    from .model import Summary
    from .options import Options


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'batchcfg' has no attribute {name!r}")
    module = importlib.import_module(f".{_WHERE[name]}", __name__)
    return getattr(module, "open_manifest" if name == "load_manifest" else name)
