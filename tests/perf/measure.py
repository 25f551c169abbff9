"""Run a command in a child and measure it: wall time and peak RSS of that child alone."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# A fresh parent per measurement, so that RUSAGE_CHILDREN covers exactly one child.
_PROBE = """
import json, resource, subprocess, sys, time
started = time.monotonic()
result = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(json.dumps({"code": result.returncode, "seconds": time.monotonic() - started,
                  "rss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
                  "stdout": result.stdout, "stderr": result.stderr}))
"""


@dataclass(frozen=True)
class Measured:
    code: int
    seconds: float
    rss_mib: float
    stdout: str
    stderr: str


def measured(argv: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 900) -> Measured:
    result = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True,
                            env=dict(env) if env is not None else None, timeout=timeout, check=True)
    data = json.loads(result.stdout)
    return Measured(data["code"], data["seconds"], data["rss_kib"] / 1024, data["stdout"], data["stderr"])
