"""Where credentials come from, in the Huawei SDK's places: ``--token-file``; AK/SK from the
environment or the credentials file; ``BATCHCFG_IAM_TOKEN``; and last, temporary AK/SK from the
ECS metadata service (:mod:`batchcfg.metadata`). And the default project id.

>>> auth = discover_auth({"HUAWEICLOUD_SDK_AK": "AK", "HUAWEICLOUD_SDK_SK": "SK"})
>>> type(auth).__name__
'Signer'
"""

from __future__ import annotations

import configparser
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from .auth import ENV_AK, ENV_SECURITY_TOKEN, ENV_SK, Auth, Signer, TokenAuth
from .errors import UsageError

ENV_PROJECT_ID = "HUAWEICLOUD_SDK_PROJECT_ID"
ENV_CREDENTIALS_FILE = "HUAWEICLOUD_SDK_CREDENTIALS_FILE"
ENV_IAM_TOKEN = "BATCHCFG_IAM_TOKEN"
DEFAULT_CREDENTIALS_FILE = Path("~/.huaweicloud/credentials")
log = logging.getLogger(__name__)
_warned: set[str] = set()  # the secrets files already warned about in this process


def discover_auth(env: Mapping[str, str] = os.environ, token_file: Path | None = None) -> Auth:
    """Credentials in docs/contract.md's order: ``--token-file``; AK/SK from the environment; AK/SK from
    the credentials file; ``BATCHCFG_IAM_TOKEN``; and only when there are none of those, temporary
    AK/SK from the ECS metadata service (a :class:`Refreshing` object; see :mod:`batchcfg.metadata`).
    Raises :class:`UsageError` when there are none."""
    return found_auth(env, token_file)[0]


def found_auth(env: Mapping[str, str] = os.environ, token_file: Path | None = None) -> tuple[Auth, str]:
    """:func:`discover_auth`'s credentials, and where they were found (for a message that says
    which credentials a server refused)."""
    if token_file is not None:
        return TokenAuth(_read_token(token_file)), f"the IAM token in --token-file {token_file}"
    ak, sk = env.get(ENV_AK, "").strip(), env.get(ENV_SK, "").strip()
    if ak or sk:
        if not (ak and sk):
            raise UsageError(f"{ENV_AK} and {ENV_SK} go together: set both")
        return Signer(ak, sk, env.get(ENV_SECURITY_TOKEN, "").strip()), f"the AK/SK in {ENV_AK} and {ENV_SK}"
    basic = _credentials_file(env)
    if basic.get("ak") or basic.get("sk"):
        if not (basic.get("ak") and basic.get("sk")):
            raise UsageError(f"{_credentials_path(env)}: [basic] needs both ak and sk")
        return (Signer(basic["ak"], basic["sk"], basic.get("security_token", "")),
                f"the AK/SK in {_credentials_path(env)} ([basic])")
    token = env.get(ENV_IAM_TOKEN, "").strip()
    if token:
        return TokenAuth(token), f"the IAM token in {ENV_IAM_TOKEN}"
    from .metadata import ENV_METADATA_URL, MetadataError, metadata_credentials

    try:
        found = metadata_credentials(env)
    except MetadataError as exc:
        why = f"the ECS metadata service gave none: {exc}"
    else:
        if found is not None:
            return found, "the temporary AK/SK of the ECS metadata service (the ECS's agency)"
        why = f"{ENV_METADATA_URL} is off"
    raise UsageError(f"no credentials: set {ENV_AK} and {ENV_SK}, write them to "
                     f"{_credentials_path(env)} ([basic] ak, sk), give an IAM token in "
                     f"{ENV_IAM_TOKEN} or --token-file, or run on an ECS with an agency ({why})")


def discover_project_id(option: str | None, env: Mapping[str, str] = os.environ) -> str:
    """``--project-id``, else ``HUAWEICLOUD_SDK_PROJECT_ID``, else the credentials file's; or ``""``."""
    return found_project_id(option, env)[0]


def found_project_id(option: str | None, env: Mapping[str, str] = os.environ,
                     option_from: str = "--project-id") -> tuple[str, str]:
    """:func:`discover_project_id`'s project id, and where it was found (``option_from`` says
    where ``option`` came from)."""
    if option:
        return option.strip(), option_from
    if env.get(ENV_PROJECT_ID, "").strip():
        return env[ENV_PROJECT_ID].strip(), ENV_PROJECT_ID
    found = _credentials_file(env).get("project_id", "")
    return found, f"{_credentials_path(env)} ([basic] project_id)" if found else ""


def _credentials_path(env: Mapping[str, str]) -> Path:
    return Path(env.get(ENV_CREDENTIALS_FILE) or DEFAULT_CREDENTIALS_FILE).expanduser()


def _credentials_file(env: Mapping[str, str]) -> dict[str, str]:
    """The ``[basic]`` section of the credentials file, or ``{}`` when there is no file."""
    path = _credentials_path(env)
    if not path.is_file():
        if env.get(ENV_CREDENTIALS_FILE):
            raise UsageError(f"{path}: no such credentials file ({ENV_CREDENTIALS_FILE})")
        return {}
    _warn_if_shared(path)
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError, OSError) as exc:
        # configparser quotes the offending line, which may hold a secret: name the file only.
        raise UsageError(f"{path}: not a valid credentials file ({type(exc).__name__})") from None
    if not parser.has_section("basic"):
        return {}
    return {key: value.strip() for key, value in parser.items("basic")}


def _read_token(path: Path) -> str:
    try:
        _warn_if_shared(path)
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the token file ({type(exc).__name__})") from None
    if not token:
        raise UsageError(f"{path}: the token file is empty")
    return token


def _warn_if_shared(path: Path) -> None:
    """A secrets file that group or others may read is worth a warning (not an error: the user
    may have reasons, and the run should not fail at 3 a.m. over it); once per file and process,
    however often the file is read."""
    if os.name == "posix" and path.stat().st_mode & 0o077:
        key = os.path.abspath(path)
        if key not in _warned:
            _warned.add(key)
            log.warning("%s can be read by other users: run chmod 600 %s", path, path)


