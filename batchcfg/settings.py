"""Every setting once: its default, how its text is read and bounded, its environment variable;
and profiles, so that cron lines stay short.

The command line takes its flag types from here (:data:`SETTINGS`, :data:`FLAGS`), and the
environment and profiles are read with the same parsers: a value is refused the same way
wherever it comes from. Kept free of heavy imports, so ``batchcfg --help`` stays instant.

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
    lock_wait = 600

Each setting is taken from, in order: the command line, the environment (``BATCHCFG_RATE``, ...;
the project id from ``HUAWEICLOUD_SDK_PROJECT_ID``), the profile, the default. Credentials are
never read from this file: they stay where the Huawei SDK conventions put them.

>>> SETTINGS["rate"].parse("2.5"), SETTINGS["concurrency"].parse("auto") == AUTO
(2.5, True)
>>> SETTINGS["timeout"].parse("0")
Traceback (most recent call last):
...
ValueError: must be above 0
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

from .errors import UsageError

DEFAULT_RATE = 10.0          # request starts per second; 0 = no limit
AUTO = 0                     # --concurrency auto: enough in flight to sustain --rate
DEFAULT_CONCURRENCY = AUTO   # requests in flight (docs/contract.md's 8 is what auto starts from)
AUTO_START_CONCURRENCY = 8
AUTO_MAX_CONCURRENCY = 256
AUTO_UNLIMITED_CONCURRENCY = 32  # auto with --rate 0: no rate to follow
DEFAULT_MAX_RETRIES = 5      # so at most 6 attempts
DEFAULT_TIMEOUT = 30.0       # seconds per attempt
DEFAULT_MAX_ROWS = 1_000_000
# Upper bounds: a value beyond is a mistake (1e19 requests a second, a million workers), refused
# with one line wherever it comes from (flag, environment, profile).
MAX_RATE = 100_000.0         # far above any API limit (200/s per API at most)
MAX_CONCURRENCY = 1024       # and never more workers than rows, nor than the open-file limit allows
MAX_RETRIES = 100
MAX_TIMEOUT = 3600.0         # an hour per attempt
MAX_RETRY_WAIT = 300.0       # the longest wait before a retry; a Retry-After beyond it fails the row
CANARY_ROWS = 20             # the first changed rows of a run, read back before the others are sent
MAX_THROTTLED_WAIT = 900.0   # a request throttled for this long (its throttled answers are not retries) fails
DEFAULT_MAX_UNAVAILABLE = 20  # rows in a row failed by an unavailable service (no success between): stop
DEFAULT_PROGRESS_INTERVAL = 30.0  # seconds between progress lines without a terminal
DEFAULT_LOCK_WAIT = 0.0      # seconds to wait for a --lock another run holds: 0 = exit 75 at once
MAX_LOCK_WAIT = 86_400.0     # a day: a run still kept out by then is stuck behind another, not late
SANDBOX_HOST = "127.0.0.1"
SANDBOX_PORT = 8765
CONFIG_FILES = (Path("batchcfg.toml"), Path("~/.config/batchcfg/config.toml"))
ENV_PROFILE = "BATCHCFG_PROFILE"


@dataclass(frozen=True)
class Number:
    """A number at least ``minimum`` (above it, when ``above``) and at most ``maximum``; whole
    when ``integer``."""

    minimum: float
    integer: bool = False
    above: bool = False
    maximum: float = math.inf

    def __call__(self, value: Any) -> Any:
        text = str(value).strip()
        if isinstance(value, bool):
            raise ValueError("must be a number")
        if self.integer:
            if not re.fullmatch(r"[+-]?[0-9]+", text):
                raise ValueError("must be a whole number")
            number: float = int(text)
        else:
            try:
                number = float(text)
            except ValueError:
                raise ValueError("must be a number") from None
            if not math.isfinite(number):
                raise ValueError("must be a number")
        if number < self.minimum or (self.above and number == self.minimum):
            raise ValueError(f"must be {'above' if self.above else 'at least'} {self.minimum:g}")
        if number > self.maximum:
            raise ValueError(f"must be at most {self.maximum:,.0f}" if self.maximum == int(self.maximum)
                             else f"must be at most {self.maximum:g}")
        return number


def concurrency(value: Any) -> int:
    """``auto`` or a whole number of requests in flight (at least 1)."""
    if str(value).strip().lower() == "auto":
        return AUTO
    try:
        return int(Number(1, integer=True, maximum=MAX_CONCURRENCY)(value))
    except ValueError:
        raise ValueError(f'must be "auto" or a whole number from 1 to {MAX_CONCURRENCY}') from None


def text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty string")
    return value.strip()


def switch(value: Any) -> bool:
    """On or off: a TOML boolean, or text such as ``1``, ``true``, ``yes``, ``0``, ``false``, ``no``."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def directory(value: Any) -> Path:
    return Path(text(value)).expanduser()


@dataclass(frozen=True)
class Setting:
    """A setting a profile or the environment may give: its parser, variable and default."""

    parse: Callable[[Any], Any]
    env: str
    default: Any


SETTINGS: dict[str, Setting] = {
    "endpoint": Setting(text, "BATCHCFG_ENDPOINT", None),
    "region": Setting(text, "BATCHCFG_REGION", None),
    "project_id": Setting(text, "HUAWEICLOUD_SDK_PROJECT_ID", None),
    "rate": Setting(Number(0, maximum=MAX_RATE), "BATCHCFG_RATE", DEFAULT_RATE),
    "concurrency": Setting(concurrency, "BATCHCFG_CONCURRENCY", DEFAULT_CONCURRENCY),
    "max_retries": Setting(Number(0, integer=True, maximum=MAX_RETRIES), "BATCHCFG_MAX_RETRIES", DEFAULT_MAX_RETRIES),
    "timeout": Setting(Number(0, above=True, maximum=MAX_TIMEOUT), "BATCHCFG_TIMEOUT", DEFAULT_TIMEOUT),
    "report_dir": Setting(directory, "BATCHCFG_REPORT_DIR", None),
    "html": Setting(directory, "BATCHCFG_HTML", None),  # a file: the run's page (directory() reads a path)
    "verify": Setting(switch, "BATCHCFG_VERIFY", None),  # read every changed row back (None: the canary only)
    "lock_wait": Setting(Number(0, maximum=MAX_LOCK_WAIT), "BATCHCFG_LOCK_WAIT", DEFAULT_LOCK_WAIT),
}

# The numbers only the command line gives.
FLAGS: dict[str, Callable[[Any], Any]] = {
    "max_rows": Number(1, integer=True, maximum=100_000_000),
    "max_failures": Number(1, integer=True, maximum=100_000_000),
    "max_unavailable": Number(0, integer=True, maximum=100_000_000),
    "deadline": Number(0, above=True, maximum=30 * 86_400),
    "progress_interval": Number(0, maximum=86_400),
    "port": Number(0, integer=True, maximum=65_535),
    "fail_rate": Number(0, maximum=1),
    "throttle_rps": Number(0, maximum=1_000_000),
    "latency_ms": Number(0, maximum=600_000),
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
    path = config_file(config)
    if path is None:
        if profile:
            raise UsageError(f"--profile {profile}: no config file ({' or '.join(map(str, CONFIG_FILES))})")
        return None, {}
    text, profiles = _read(path)
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


def config_file(config: Path | None) -> Path | None:
    """The config file: ``config``, else the first of :data:`CONFIG_FILES` that exists, else None."""
    return config if config is not None else next((p.expanduser() for p in CONFIG_FILES if p.expanduser().is_file()),
                                                  None)


def profile_names(config: Path | None) -> list[str]:
    """The names of the config file's profiles, sorted (none without a file), for ``--profile``'s
    shell completion: only names that are plain words (letters, digits, ``_ . -``), since a shell
    expands the words a completion gives it (``$(...)`` in a name would run)."""
    path = config_file(config)
    return [] if path is None else sorted(name for name in _read(path)[1] if re.fullmatch(r"[\w.-]+", name, re.ASCII))


def _read(path: Path) -> tuple[str, dict[str, Any]]:
    """The config file's text and its ``[profiles]`` table; a :class:`UsageError` naming the file
    (and the line) when it cannot be read or has anything else."""
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
    return text, profiles


def _line_of(text: str, key: str) -> int | str:
    """The line where ``key`` is set or opened, for messages; ``?`` when not found."""
    pattern = re.compile(rf"^\s*(\[\s*)?{re.escape(key)}\b", re.MULTILINE)
    match = pattern.search(text)
    return text.count("\n", 0, match.start()) + 1 if match else "?"
