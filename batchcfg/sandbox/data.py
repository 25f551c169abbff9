"""The sandbox's data: resource specs and engines, the Details and List views of a stored config, and
seeds."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ..merge import Patch
from ..schema import BODY_FIELDS, INTEGER_FIELDS

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
    """The answer of ``GET .../job/resource-specs?job_type=train``."""
    specs = [{"spec_id": spec_id, "spec_code": code, "gpu_type": gpu_type, "gpu_num": gpus, "cpu": str(cpu),
              "core": str(cpu), "max_num": max_num, "unit_num": 1, "storage": "", "interface_type": 1,
              "no_resource": False} for spec_id, (code, gpu_type, gpus, cpu, max_num) in SPECS.items()]
    return {"is_success": True, "spec_total_count": len(specs), "specs": specs}


def ai_engines() -> dict[str, Any]:
    """The answer of ``GET .../job/ai-engines?job_type=train``."""
    engines = [{"engine_type": 1, "engine_id": engine_id, "engine_name": name, "engine_version": version}
               for engine_id, (name, version) in ENGINES.items()]
    return {"is_success": True, "engines": engines}


CATALOG = {"resource-specs": resource_specs, "ai-engines": ai_engines}


def details(config_name: str, body: dict[str, Any], created: int) -> dict[str, Any]:
    """A stored config as the Details API shows it: every writable field (``""`` for an unset
    string, ``engine_id`` 1 and ``model_id`` 0 when unset, numeric-looking parameter values as
    JSON numbers, as the docs' sample shows them), then the read-only fields."""
    shown: dict[str, Any] = {"config_name": config_name}
    for name in BODY_FIELDS:
        value = body.get(name)
        if name == "parameter":
            value = [{"label": p.get("label"), "value": _as_number(p.get("value"))} for p in value or []]
        elif name == "data_source":
            value = value or []
        elif name in INTEGER_FIELDS:
            value = value if value not in (None, "") else {"engine_id": 1, "model_id": 0}.get(name, 0)
        else:
            value = "" if value is None else value
        shown[name] = value
    engine_name, engine_version = ENGINES.get(int(shown["engine_id"] or 1), ("Custom", "custom"))
    spec_code, gpu_type, gpu_num, cpu, _ = SPECS.get(int(body.get("spec_id") or 1), ("modelarts.custom", "", 0, 4, 1))
    return {**shown, "engine_type": 1, "engine_name": engine_name, "engine_version": engine_version,
            "spec_code": spec_code, "gpu_type": gpu_type, "gpu_num": gpu_num, "cpu": str(cpu), "core": str(cpu),
            "create_time": created, "dataset_name": "", "dataset_version_name": "", "pool_id": "",
            "pool_name": "", "volumes": []}


# What the List API shows of each config (its "configs" items), in the docs' order.
SUMMARY_FIELDS = ("config_name", "config_desc", "create_time", "engine_type", "engine_name", "engine_id",
                  "engine_version", "user_image_url", "user_command")


def summary(config_name: str, body: dict[str, Any], created: int) -> dict[str, Any]:
    """A stored config as the List API shows it: :data:`SUMMARY_FIELDS` of its Details view."""
    shown = details(config_name, body, created)
    return {name: shown[name] for name in SUMMARY_FIELDS}


def _as_number(value: Any) -> Any:
    """A numeric-looking string as the JSON number it is (``"64"`` -> 64, ``"0.5"`` -> 0.5), as the
    docs' sample shows values, but only when the number gives back the same text: ``"064"``,
    ``"0.010"`` and ``"1e-5"`` stay strings, as a server that keeps what it was sent shows them."""
    if not isinstance(value, str) or len(value) > 40:
        return value
    try:
        number: int | float = int(value) if value.lstrip("-").isdigit() else float(value)
    except ValueError:
        return value
    return number if isinstance(number, int | float) and math.isfinite(number) and str(number) == value else value


def earlier_state(patch: Patch, number: int) -> dict[str, Any]:
    """A plausible earlier version of the config a row changes, for seeding: a whole config (code,
    data, output and log paths, parameters, and for custom code an image) with the row laid over
    it. Every third config is then as the row leaves it, the others have another worker count and
    a changed parameter or description."""
    earlier = patch.over(_whole_config(number))
    if number % 3 == 0:
        return earlier
    workers = int(earlier.get("worker_server_num") or 1)
    earlier["worker_server_num"] = workers + 1 if workers < 4 else workers - 1
    parameters = [dict(p) for p in earlier.get("parameter") or []]
    if parameters:
        parameters[0]["value"] = "0.5" if parameters[0].get("value") != "0.5" else "0.25"
        earlier["parameter"] = parameters
    else:
        earlier["config_desc"] = "previous revision"
    return earlier


def _whole_config(number: int) -> dict[str, Any]:
    """A whole config to lay a row over: built-in or custom code, each kind of data in turn."""
    code: dict[str, Any] = ({"model_id": 7} if number % 2 else
                            {"app_url": "/sandbox-code/train/", "boot_file_url": "/sandbox-code/train/main.py",
                             "user_image_url": "swr.cn-north-4.myhuaweicloud.com/sandbox/trainer:1.0"})
    data = ({"data_source": [{"type": "obs", "data_url": "/sandbox-data/set-a/"}]},
            {"dataset_id": "5f1d3c2b-0000-4d6e-9a8b-7c6d5e4f3a2b", "dataset_version_id": "v1"},
            {"data_url": "/sandbox-data/set-b/"})[number % 3]
    return {"config_desc": f"sandbox config {number}", "worker_server_num": 1, "spec_id": 1, **code, **data,
            "train_url": "/sandbox-output/run/", "log_url": "/sandbox-logs/run/",
            "parameter": [{"label": "epochs", "value": "10"}, {"label": "lr", "value": "0.010"}]}


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
                        encoding: str | None = None) -> int:
    """Give the sandbox an earlier state (:func:`earlier_state`) of every config a manifest's
    valid rows name, so that a first ``apply --sandbox`` or ``plan --sandbox`` has configs to
    change; returns how many. A manifest that cannot be read seeds nothing: the run will say why."""
    from ..checked import check
    from ..errors import ManifestError
    from ..manifest import open_manifest
    from ..model import Job

    seeded = 0
    try:
        opened = open_manifest(manifest, sheet=sheet, encoding=encoding)
        with check(opened, sandbox.config.project_id) as checked:
            for item in checked.items():
                if isinstance(item, Job):
                    sandbox.seed(item.config_name, earlier_state(Patch.decode(item.body), item.row), item.project_id)
                    seeded += 1
    except ManifestError:
        pass
    return seeded
