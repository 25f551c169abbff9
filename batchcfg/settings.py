"""Profiles: connection and sending settings from a config file, for cron lines that stay short.

``--config PATH`` (default ``./batchcfg.toml``, then ``~/.config/batchcfg/config.toml``) holds
named profiles; ``--profile NAME`` (or ``BATCHCFG_PROFILE``) picks one, else ``default`` if
there is one::

    [profiles.prod]
    region = "cn-north-4"
    project_id = "0123456789abcdef0123456789abcdef"
    rate = 20
    concurrency = "auto"
    max_retries = 5
    timeout = 30
    report_dir = "/var/log/batchcfg"

Each setting is taken from, in order: the command line, the environment (``BATCHCFG_RATE``, ...;
the project id from ``HUAWEICLOUD_SDK_PROJECT_ID``), the profile, the default. Credentials are
never read from this file: they stay where the Huawei SDK conventions put them.
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .defaults import AUTO, DEFAULT_CONCURRENCY, DEFAULT_MAX_RETRIES, DEFAULT_RATE, DEFAULT_TIMEOUT
from .errors import UsageError

CONFIG_FILES = (Path("batchcfg.toml"), Path("~/.config/batchcfg/config.toml"))
ENV_PROFILE = "BATCHCFG_PROFILE"


def _positive_number(value: Any) -> float:
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise ValueError("must be a number")
    if number < 0:
        raise ValueError("must be 0 or more")
    return number


def _count(value: Any) -> int:
    if isinstance(value, bool) or not re.fullmatch(r"[0-9]+", str(value).strip()):
        raise ValueError("must be a whole number")
    return int(str(value).strip())


def _concurrency(value: Any) -> int:
    if str(value).strip().lower() == "auto":
        return AUTO
    number = _count(value)
    if number < 1:
        raise ValueError('must be "auto" or at least 1')
    return number


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty string")
    return value.strip()


@dataclass(frozen=True)
class Setting:
    parse: Callable[[Any], Any]
    env: str
    default: Any


SETTINGS: dict[str, Setting] = {
    "endpoint": Setting(_text, "BATCHCFG_ENDPOINT", None),
    "region": Setting(_text, "BATCHCFG_REGION", None),
    "project_id": Setting(_text, "HUAWEICLOUD_SDK_PROJECT_ID", None),
    "rate": Setting(_positive_number, "BATCHCFG_RATE", DEFAULT_RATE),
    "concurrency": Setting(_concurrency, "BATCHCFG_CONCURRENCY", DEFAULT_CONCURRENCY),
    "max_retries": Setting(_count, "BATCHCFG_MAX_RETRIES", DEFAULT_MAX_RETRIES),
    "timeout": Setting(_positive_number, "BATCHCFG_TIMEOUT", DEFAULT_TIMEOUT),
    "report_dir": Setting(lambda v: Path(_text(v)).expanduser(), "BATCHCFG_REPORT_DIR", None),
}


@dataclass(frozen=True)
class Resolved:
    """A setting's value and where it came from (for ``batchcfg config show``)."""

    value: Any
    source: str


def resolve(flags: Mapping[str, Any], env: Mapping[str, str], config: Path | None,
            profile: str | None) -> dict[str, Resolved]:
    """Every setting: the flag given, else the environment, else the profile, else the default."""
    path, values = load_profile(config, profile or env.get(ENV_PROFILE) or None)
    resolved = {}
    for key, setting in SETTINGS.items():
        if flags.get(key) is not None:
            resolved[key] = Resolved(flags[key], "command line")
        elif env.get(setting.env, "").strip():
            try:
                resolved[key] = Resolved(setting.parse(env[setting.env]), f"environment {setting.env}")
            except ValueError as exc:
                raise UsageError(f"{setting.env}: {exc}") from None
        elif key in values:
            resolved[key] = Resolved(values[key], f"profile in {path}")
        else:
            resolved[key] = Resolved(setting.default, "default")
    if resolved["endpoint"].value is not None and resolved["region"].value is not None:
        # One of the two: the more specific source wins, the endpoint on a tie.
        order = ["command line", "environment", "profile", "default"]
        rank = {key: next(i for i, s in enumerate(order) if resolved[key].source.startswith(s))
                for key in ("endpoint", "region")}
        loser = "region" if rank["endpoint"] <= rank["region"] else "endpoint"
        resolved[loser] = Resolved(None, f"{resolved[loser].source}, overridden")
    return resolved


def load_profile(config: Path | None, profile: str | None) -> tuple[Path | None, dict[str, Any]]:
    """The chosen profile's settings, parsed; ``(None, {})`` without a config file. A bad file
    is a :class:`UsageError` naming the file, the line and the key."""
    path = config if config is not None else next((p.expanduser() for p in CONFIG_FILES if p.expanduser().is_file()), None)
    if path is None:
        if profile:
            raise UsageError(f"--profile {profile}: no config file ({' or '.join(map(str, CONFIG_FILES))})")
        return None, {}
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read it ({type(exc).__name__})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: {exc}") from None
    profiles = data.get("profiles", {})
    unknown_tables = [key for key in data if key != "profiles"]
    if unknown_tables or not isinstance(profiles, dict):
        key = unknown_tables[0] if unknown_tables else "profiles"
        raise UsageError(f"{path}: line {_line_of(text, key)}: unknown key {key!r}; settings go in "
                         "[profiles.NAME] tables")
    if profile is None:
        profile = "default" if "default" in profiles else None
        if profile is None:
            return path, {}
    if profile not in profiles or not isinstance(profiles[profile], dict):
        known = ", ".join(sorted(profiles)) or "none"
        raise UsageError(f"{path}: no profile {profile!r} (profiles: {known})")
    values = {}
    for key, value in profiles[profile].items():
        line = _line_of(text, key)
        if key not in SETTINGS:
            near = difflib.get_close_matches(key, SETTINGS, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise UsageError(f"{path}: line {line}: unknown key {key!r} in [profiles.{profile}]{hint}")
        try:
            values[key] = SETTINGS[key].parse(value)
        except ValueError as exc:
            raise UsageError(f"{path}: line {line}: {key} {exc}") from None
    return path, values


def _line_of(text: str, key: str) -> int | str:
    """The line where ``key`` is set or opened, for messages; ``?`` when not found."""
    pattern = re.compile(rf"^\s*(\[\s*)?{re.escape(key)}\b", re.MULTILINE)
    match = pattern.search(text)
    return text.count("\n", 0, match.start()) + 1 if match else "?"
