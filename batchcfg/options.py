"""What a run needs besides its manifest, in the groups a reader thinks in: input, connection,
sending, outputs; and what the command does (resume, dry run, ...).

>>> options = Options.of(endpoint="https://modelarts.cn-north-4.myhuaweicloud.com", rate=5)
>>> options.connection.endpoint, options.sending.rate, options.sending.concurrency == AUTO
('https://modelarts.cn-north-4.myhuaweicloud.com', 5, True)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .clock import SYSTEM_CLOCK, Clock
from .settings import (AUTO, DEFAULT_CONCURRENCY, DEFAULT_MAX_RETRIES, DEFAULT_MAX_ROWS, DEFAULT_MAX_UNAVAILABLE,
                       DEFAULT_RATE, DEFAULT_TIMEOUT)

if TYPE_CHECKING:
    from .auth import Auth

__all__ = ["AUTO", "Connection", "Input", "Options", "Outputs", "Sending"]


@dataclass(frozen=True)
class Input:
    """How to read the manifest."""

    sheet: str | None = None
    encoding: str | None = None
    delimiter: str | None = None  # a CSV file's separator; None: found in its header
    max_rows: int = DEFAULT_MAX_ROWS


@dataclass(frozen=True)
class Connection:
    """Where requests go and as whom. ``credentials``, when given, are used as they are (the
    sandbox's); otherwise they are found as the Huawei SDK conventions say, in ``env``."""

    endpoint: str | None = None
    region: str | None = None
    project_id: str | None = None
    project_from: str = "--project-id"  # where project_id came from: the command line, the environment, a profile
    token_file: Path | None = None
    credentials: Auth | None = field(default=None, repr=False)
    ca_bundle: Path | None = None
    allow_http: bool = False
    timeout: float = DEFAULT_TIMEOUT
    env: Mapping[str, str] = field(default_factory=lambda: os.environ, repr=False, compare=False)


@dataclass(frozen=True)
class Sending:
    """How fast and how persistently requests are sent; ``clock`` is injected time."""

    rate: float = DEFAULT_RATE
    concurrency: int = DEFAULT_CONCURRENCY
    max_retries: int = DEFAULT_MAX_RETRIES
    max_failures: int = 0  # 0: no limit
    max_unavailable: int = DEFAULT_MAX_UNAVAILABLE  # rows in a row failed by an unavailable service; 0: no stop
    deadline: float | None = None  # seconds: then rows not yet sent end cancelled
    clock: Clock = field(default=SYSTEM_CLOCK, repr=False, compare=False)


@dataclass(frozen=True)
class Outputs:
    """The files a run writes (defaults beside the report)."""

    report: Path | None = None
    report_dir: Path | None = None  # where a default-named report goes
    failed_manifest: Path | None = None
    backup: Path | None = None   # where apply backs configs up
    no_backup: bool = False
    overwrite: bool = False      # replace an existing report, failed-row manifest, export or saved plan
    plan_out: Path | None = None  # plan: save what it planned here, for apply


@dataclass(frozen=True)
class Options:
    """Everything a run needs besides the manifest path; the CLI builds one from its flags."""

    input: Input = Input()
    connection: Connection = Connection()
    sending: Sending = Sending()
    outputs: Outputs = Outputs()
    resume: Path | None = None
    replace: bool = False        # a row is the whole config: fields it leaves empty are removed
    send_unchanged: bool = False  # apply: PUT rows that change nothing too
    create_missing: bool = False  # apply, plan: a config that does not exist is created (POST)
    force: bool = False          # rollback: restore configs changed since the run
    verify: bool = False         # apply, rollback: read every changed row back (else the canary's rows only)
    online: bool = False         # validate: check spec_id, workers and engine_id against the project
    preflight: bool = False      # apply: the same before sending
    no_preflight: bool = False   # send without the first read that checks endpoint, credentials and project
    dry_run: bool = False
    name_pattern: str | None = None  # export: the configs whose names match (fnmatch)
    config_type: str | None = None   # export: List's config_type
    project_column: bool = False     # export: write each row's project_id

    @classmethod
    def of(cls, **values: Any) -> Options:
        """Options from flat names (``rate=5``, ``report=Path(...)``), each put in its group."""
        groups: dict[str, dict[str, Any]] = {name: {} for name in _GROUPS}
        top: dict[str, Any] = {}
        for name, value in values.items():
            group = _GROUP_OF.get(name)
            if group is not None:
                groups[group][name] = value
            elif name in _TOP:
                top[name] = value
            else:
                raise TypeError(f"Options has no setting {name!r}")
        return cls(**{name: kind(**groups[name]) for name, kind in _GROUPS.items()}, **top)


_GROUPS: dict[str, Any] = {"input": Input, "connection": Connection, "sending": Sending, "outputs": Outputs}
_GROUP_OF = {f.name: group for group, kind in _GROUPS.items() for f in fields(kind)}
_TOP = {f.name for f in fields(Options)} - set(_GROUPS)
