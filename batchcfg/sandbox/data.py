"""The sandbox's data: resource specs and engines, the Details view of a stored config, and seeds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError

if TYPE_CHECKING:
    from . import RunningSandbox

# What the Details API adds to a config's writable fields, by engine_id and spec_id.
ENGINES = {1: ("TensorFlow", "TF-1.13.1-python3.6"), 2: ("MXNet", "MXNet-1.2.1-python3.6"),
           3: ("Caffe", "Caffe-1.0.0-python2.7"), 4: ("PyTorch", "PyTorch-1.4.0-python3.6"),
           5: ("Ray", "Ray-0.7.4-python3.6"), 7: ("MindSpore", "MindSpore-1.3.0-python3.7")}
SPECS = {1: ("modelarts.vm.cpu.8u", "", 0, 8, 10), 2: ("modelarts.vm.gpu.p100", "P100", 1, 8, 4),
         3: ("modelarts.vm.gpu.v100", "V100", 1, 8, 4), 4: ("modelarts.vm.gpu.v100.8", "V100", 8, 64, 8),
         5: ("modelarts.bm.ascend.910.8", "Ascend910", 8, 192, 16)}  # code, gpu, gpus, cpus, max_num


def resource_specs() -> dict[str, Any]:
    specs = [{"spec_id": spec_id, "spec_code": code, "gpu_type": gpu_type, "gpu_num": gpus, "cpu": str(cpu),
              "core": str(cpu), "max_num": max_num, "unit_num": 1, "storage": "", "interface_type": 1,
              "no_resource": False} for spec_id, (code, gpu_type, gpus, cpu, max_num) in SPECS.items()]
    return {"is_success": True, "spec_total_count": len(specs), "specs": specs}


def ai_engines() -> dict[str, Any]:
    engines = [{"engine_type": 1, "engine_id": engine_id, "engine_name": name, "engine_version": version}
               for engine_id, (name, version) in ENGINES.items()]
    return {"is_success": True, "engines": engines}


CATALOG = {"resource-specs": resource_specs, "ai-engines": ai_engines}


def details(config_name: str, body: dict[str, Any], created: int) -> dict[str, Any]:
    """A stored config as the Details API shows it: its writable fields and the read-only ones."""
    engine_name, engine_version = ENGINES.get(int(body.get("engine_id") or 1), ("Custom", "custom"))
    spec_code, gpu_type, gpu_num, cpu, _ = SPECS.get(int(body.get("spec_id") or 1), ("modelarts.custom", "", 0, 4, 1))
    return {"config_name": config_name, **body, "engine_type": 1, "engine_name": engine_name,
            "engine_version": engine_version, "spec_code": spec_code, "gpu_type": gpu_type,
            "gpu_num": gpu_num, "cpu": str(cpu), "core": str(cpu), "create_time": created,
            "pool_id": "", "pool_name": "", "volumes": []}


def earlier_state(body: dict[str, Any], number: int) -> dict[str, Any]:
    """A plausible earlier version of ``body``, for seeding: every third config as it is, the
    others with another worker count and a changed parameter or description."""
    if number % 3 == 0:
        return dict(body)
    earlier = dict(body)
    workers = int(earlier.get("worker_server_num") or 1)
    earlier["worker_server_num"] = workers + 1 if workers < 4 else workers - 1
    parameters = [dict(p) for p in earlier.get("parameter") or []]
    if parameters:
        parameters[0]["value"] = "0.5" if parameters[0].get("value") != "0.5" else "0.25"
        earlier["parameter"] = parameters
    else:
        earlier["config_desc"] = "previous revision"
    return earlier


def read_seed(path: Path) -> list[dict[str, Any]]:
    """Configs for ``batchcfg sandbox --seed``: JSON lines, each a ``config_name`` (and optional
    ``project_id``) with writable fields. A bad file is a :class:`UsageError`."""
    records = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--seed {path}: cannot read it ({type(exc).__name__})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("config_name"), str):
            raise UsageError(f"--seed {path}: line {number} is not a JSON object with a config_name")
        records.append(record)
    return records




def seed_earlier_states(sandbox: RunningSandbox, manifest: Path, *, sheet: str | None = None,
                        encoding: str | None = None) -> None:
    """Give the sandbox an earlier state (:func:`earlier_state`) of every config a manifest's
    valid rows name, so that a first ``apply --sandbox`` or ``plan --sandbox`` has configs to
    change. A manifest that cannot be read seeds nothing: the run will say why."""
    from ..checked import check
    from ..errors import ManifestError
    from ..manifest import open_manifest
    from ..model import Job

    try:
        opened = open_manifest(manifest, sheet=sheet, encoding=encoding)
        with check(opened, sandbox.config.project_id) as checked:
            for item in checked.items():
                if isinstance(item, Job):
                    sandbox.seed(item.config_name, earlier_state(json.loads(item.body), item.row), item.project_id)
    except ManifestError:
        return
