"""batchcfg: change many Huawei Cloud ModelArts training job configurations from one spreadsheet.

The library under the ``batchcfg`` command::

    import anyio
    from batchcfg import Options, apply, validate

    summary = validate("configs.csv")                                  # offline
    summary = anyio.run(apply, "configs.csv", Options(sandbox=True))   # against the sandbox
    print(summary.counts, summary.report, summary.exit_code)
"""

__version__ = "0.1.0"

from .batch import Options, Summary, apply, validate  # noqa: E402
from .errors import BatchcfgError, ManifestError, UsageError  # noqa: E402
from .manifest import open_manifest as load_manifest  # noqa: E402

__all__ = ["BatchcfgError", "ManifestError", "Options", "Summary", "UsageError", "__version__",
           "apply", "load_manifest", "validate"]
