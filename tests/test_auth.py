"""batchcfg.auth and batchcfg.credentials: the SDK-HMAC-SHA256 signer, IAM tokens, and credential discovery.

Sections:
1. agreement with Huawei's own signer (``huaweicloudsdkcore``) on 500 generated requests;
2. docs/api.md's published test vector;
3. ``canonical_uri`` / ``canonical_query``, and the ``X-Sdk-Date`` header;
4. credential and project id discovery (docs/contract.md's order), and the shared-file warning;
5. secrets never show in ``repr`` or error messages.

The ECS metadata source and region overrides are tested in test_credentials.py. Here the metadata
service's default address is a closed loopback port: no test reaches the real one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import socket
import string
import traceback
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer as HuaweiSigner

from batchcfg import credentials as credentials_module
from batchcfg import metadata
from batchcfg.auth import Signer, TokenAuth, canonical_query, canonical_uri, signature
from batchcfg.credentials import discover_auth, discover_project_id
from batchcfg.errors import UsageError

# --------------------------------------------------------------------------------------------
# 1. Agreement with huaweicloudsdkcore on generated requests
# --------------------------------------------------------------------------------------------

SEED = 20191115
CASES = 500
METHODS = ("GET", "PUT", "POST", "DELETE")
NAME_CHARS = string.ascii_letters + string.digits + "_-"  # every allowed config-name character
# Characters that need percent-encoding (or are the unreserved ones that must not be encoded).
AWKWARD = " ~._-%+!*'()/:@;=&?#[]$,\"<>\\^`{|}é中文😀\u00a0\t"
QUERY_NAMES = ("limit", "marker", "a b", "名字", "x~y", "k=v", "sort.key", "tag")
PRE_ENCODED = ("a%20b", "%E4%B8%AD", "x%2Fy", "100%25", "%7E", "50%")  # "%" as sent on the wire
BODY_TEXTS = ("训练作业配置", "emoji 😀🚀", "naïve café", "plain", "引号\"和\\反斜杠", "")


@dataclass(frozen=True)
class Case:
    """One generated request."""

    method: str
    host: str
    path: str
    query: tuple[tuple[str, str], ...]
    body: bytes
    ak: str
    sk: str
    token: str
    now: datetime


def _text(rng: random.Random, alphabet: str, low: int, high: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(low, high)))


def _config_name(rng: random.Random, index: int) -> str:
    # The first cases walk the alphabet (one 64-character name holds all of it), then random.
    if index == 0:
        return NAME_CHARS  # len 64, every allowed character
    if index <= len(NAME_CHARS):
        return NAME_CHARS[index - 1]  # length 1, each character on its own
    return _text(rng, NAME_CHARS, 1, 64)


def _path(rng: random.Random, index: int) -> str:
    if index < 70 or rng.random() < 0.6:
        project = "".join(rng.choice("0123456789abcdef") for _ in range(32))
        return f"/v1/{project}/training-job-configs/{_config_name(rng, index)}"
    segments = [_text(rng, string.ascii_letters + AWKWARD, 1, 12) for _ in range(rng.randint(1, 4))]
    if rng.random() < 0.3:
        segments.insert(rng.randrange(len(segments) + 1), rng.choice(PRE_ENCODED))
    return "/" + "/".join(segments) + rng.choice(("", "/"))


def _query(rng: random.Random) -> tuple[tuple[str, str], ...]:
    pairs = []
    for _ in range(rng.randint(0, 4)):
        name = rng.choice(QUERY_NAMES) if rng.random() < 0.6 else _text(rng, "ab" + AWKWARD, 1, 6)
        value = _text(rng, string.ascii_letters + string.digits + AWKWARD, 0, 10)
        pairs.append((name, value))
    if pairs and rng.random() < 0.3:  # a repeated name
        pairs.append((pairs[0][0], _text(rng, string.digits + AWKWARD, 0, 5)))
    return tuple(pairs)


def _body(rng: random.Random) -> bytes:
    kind = rng.random()
    if kind < 0.25:
        return b""
    if kind < 0.9:
        document = {"config_desc": rng.choice(BODY_TEXTS) + _text(rng, AWKWARD, 0, 8),
                    "worker_server_num": rng.randint(1, 8),
                    "parameter": [{"label": "lr", "value": rng.choice(BODY_TEXTS)}]}
        return json.dumps(document, ensure_ascii=rng.random() < 0.2).encode("utf-8")
    return bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))  # arbitrary bytes


def _cases() -> list[Case]:
    rng = random.Random(SEED)
    start = datetime(2019, 1, 1, tzinfo=timezone.utc)
    cases = []
    for index in range(CASES):
        cases.append(Case(
            method=rng.choice(METHODS),
            host=rng.choice(("modelarts.cn-north-4.myhuaweicloud.com",
                             "modelarts.ap-southeast-1.myhuaweicloud.cn", "127.0.0.1:8765")),
            path=_path(rng, index),
            query=_query(rng),
            body=_body(rng),
            ak=_text(rng, string.ascii_uppercase + string.digits, 20, 20),
            sk=_text(rng, string.ascii_letters + string.digits, 40, 40),
            token=_text(rng, string.ascii_letters + string.digits + "+/=-_", 40, 200)
            if rng.random() < 0.4 else "",
            now=start + timedelta(seconds=rng.randrange(10 * 365 * 86400)),
        ))
    return cases


GENERATED = _cases()


def _huawei_authorization(case: Case, headers: dict[str, str]) -> str:
    """The ``Authorization`` Huawei's signer computes for the same request and headers."""
    header_params = {name: value for name, value in headers.items() if name != "Authorization"}
    request = SdkRequest(method=case.method, schema="https", host=case.host,
                         resource_path=case.path, query_params=list(case.query),
                         header_params=header_params, body=case.body)
    return HuaweiSigner(BasicCredentials(case.ak, case.sk)).sign(request).header_params["Authorization"]


@pytest.mark.parametrize("case", GENERATED, ids=[f"case{i:03d}" for i in range(CASES)])
def test_signer_agrees_with_huaweicloudsdkcore(case: Case) -> None:
    """Same request, same instant: byte-identical ``Authorization`` to Huawei's signer."""
    headers = Signer(case.ak, case.sk, case.token).headers(
        case.method, case.host, case.path, case.body, query=case.query, now=case.now)
    expected_names = {"Content-Type", "Host", "X-Sdk-Date", "Authorization"}
    if case.token:
        expected_names.add("X-Security-Token")
        assert headers["X-Security-Token"] == case.token
    assert set(headers) == expected_names
    assert headers["X-Sdk-Date"] == case.now.strftime("%Y%m%dT%H%M%SZ")
    assert headers["Authorization"] == _huawei_authorization(case, headers)


def test_generated_cases_cover_the_brief() -> None:
    """The generator really produces every kind of request the agreement test claims to cover."""
    names = [c.path.rsplit("/", 1)[1] for c in GENERATED if "/training-job-configs/" in c.path]
    others = [c.path for c in GENERATED if "/training-job-configs/" not in c.path]
    assert set("".join(names)) == set(NAME_CHARS)
    assert {1, 64} <= {len(name) for name in names}
    assert {c.method for c in GENERATED} == set(METHODS)
    assert any(" " in p for p in others) and any("~" in p for p in others)
    assert any("." in p for p in others) and any(not p.isascii() for p in others)
    assert any(re.search("%[0-9A-F]{2}", p) for p in others)  # already percent-encoded segments
    assert {len(c.query) for c in GENERATED} >= {0, 1, 2, 3, 4}
    assert any(len({n for n, _ in c.query}) < len(c.query) for c in GENERATED)  # repeated names
    assert any(not (n + v).isascii() or " " in n + v for c in GENERATED for n, v in c.query)
    assert any(c.body == b"" for c in GENERATED)
    assert any("中".encode() in c.body or "训".encode() in c.body for c in GENERATED)
    assert any("😀".encode() in c.body for c in GENERATED)
    assert any(c.token for c in GENERATED) and any(not c.token for c in GENERATED)


def test_security_token_is_signed() -> None:
    """Temporary credentials: ``x-security-token`` is among the signed headers, and changing it
    changes the signature."""
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
    path = "/v1/0123456789abcdef0123456789abcdef/training-job-configs/job-1"

    def auth_header(token: str) -> str:
        return Signer("AK", "SK", token).headers("PUT", "h", path, b"{}", now=now)["Authorization"]

    assert "SignedHeaders=content-type;host;x-sdk-date;x-security-token," in auth_header("T1")
    assert auth_header("T1") != auth_header("T2")
    assert "SignedHeaders=content-type;host;x-sdk-date," in auth_header("")


# --------------------------------------------------------------------------------------------
# 2. The published test vector (docs/api.md)
# --------------------------------------------------------------------------------------------

VECTOR_HOST = "service.region.example.com"
VECTOR_PATH = "/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs"
VECTOR_QUERY = (("limit", "2"), ("marker", "13551d6b-755d-4757-b956-536f674975c0"))
VECTOR_DATE = "20191115T033655Z"
VECTOR_SK = "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc"
VECTOR_SIGNED = (("content-type", "application/json"), ("host", VECTOR_HOST),
                 ("x-sdk-date", VECTOR_DATE))
VECTOR_CANONICAL_HASH = "b25362e603ee30f4f25e7858e8a7160fd36e803bb2dfe206278659d71a9bcd7a"
VECTOR_SIGNATURE = "7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe"


def test_vector_hashed_canonical_request() -> None:
    """The canonical request built from the module's parts hashes to the published value."""
    canonical_request = "\n".join((
        "GET",
        canonical_uri(VECTOR_PATH),
        canonical_query(VECTOR_QUERY),
        "".join(f"{name}:{value}\n" for name, value in VECTOR_SIGNED),
        ";".join(name for name, _ in VECTOR_SIGNED),
        hashlib.sha256(b"").hexdigest(),
    ))
    assert canonical_uri(VECTOR_PATH) == VECTOR_PATH + "/"
    assert canonical_query(VECTOR_QUERY) == "limit=2&marker=13551d6b-755d-4757-b956-536f674975c0"
    assert hashlib.sha256(canonical_request.encode()).hexdigest() == VECTOR_CANONICAL_HASH


def test_vector_signature() -> None:
    """``signature()`` gives the published signature."""
    assert signature(VECTOR_SK.encode(), "GET", VECTOR_PATH, VECTOR_QUERY, VECTOR_SIGNED, b"",
                     VECTOR_DATE) == VECTOR_SIGNATURE


def test_vector_through_signer_headers() -> None:
    """``Signer.headers`` at the vector's instant produces the published signature."""
    headers = Signer("AK", VECTOR_SK).headers(
        "GET", VECTOR_HOST, VECTOR_PATH, b"", query=VECTOR_QUERY,
        now=datetime(2019, 11, 15, 3, 36, 55, tzinfo=timezone.utc))
    assert headers == {
        "Content-Type": "application/json",
        "Host": VECTOR_HOST,
        "X-Sdk-Date": VECTOR_DATE,
        "Authorization": "SDK-HMAC-SHA256 Access=AK, SignedHeaders=content-type;host;x-sdk-date, "
                         f"Signature={VECTOR_SIGNATURE}",
    }


# --------------------------------------------------------------------------------------------
# 3. Canonical URI and query; X-Sdk-Date
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "expected"), [
    ("/v1/p/vpcs", "/v1/p/vpcs/"),
    ("/v1/p/vpcs/", "/v1/p/vpcs/"),  # no second slash
    ("/", "/"),
    ("/v1/p/training-job-configs/Job_1-a", "/v1/p/training-job-configs/Job_1-a/"),
    ("/a b/c~d.e", "/a%20b/c~d.e/"),
    ("/中文", "/%E4%B8%AD%E6%96%87/"),
    ("/😀", "/%F0%9F%98%80/"),
    ("/a%20b", "/a%20b/"),  # already encoded: not encoded twice
    ("/a+b/x:y@z", "/a%2Bb/x%3Ay%40z/"),
    ("/!*'()", "/%21%2A%27%28%29/"),
])
def test_canonical_uri(path: str, expected: str) -> None:
    """Each segment percent-encoded (unreserved kept), and a trailing ``/``."""
    assert canonical_uri(path) == expected


@pytest.mark.parametrize(("query", "expected"), [
    ((), ""),
    ((("marker", "m"), ("limit", "2")), "limit=2&marker=m"),
    ((("a", "2"), ("a", "1"), ("b", "0")), "a=1&a=2&b=0"),  # repeated names: by value too
    ((("a b", "c/d"),), "a%20b=c%2Fd"),
    ((("k", "中"),), "k=%E4%B8%AD"),
    ((("k", "~._-"),), "k=~._-"),
    ((("k", ""),), "k="),
    ((("k", "a&b=c+d"),), "k=a%26b%3Dc%2Bd"),
])
def test_canonical_query(query: tuple[tuple[str, str], ...], expected: str) -> None:
    """Pairs sorted, names and values percent-encoded, joined with ``&``."""
    assert canonical_query(query) == expected


def test_sdk_date_defaults_to_current_utc() -> None:
    """Without ``now``, ``X-Sdk-Date`` is the current UTC time."""
    before = datetime.now(timezone.utc).replace(microsecond=0)
    headers = Signer("AK", "SK").headers("GET", "h", "/", b"")
    after = datetime.now(timezone.utc)
    sent = datetime.strptime(headers["X-Sdk-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    assert before <= sent <= after


def test_sdk_date_is_utc_for_an_aware_non_utc_now() -> None:
    """An aware ``now`` in another zone is the same instant: ``X-Sdk-Date`` is its UTC time
    (the header says ``Z``), and the signature equals the one made at the UTC instant."""
    utc = datetime(2019, 11, 15, 3, 36, 55, tzinfo=timezone.utc)
    beijing = utc.astimezone(timezone(timedelta(hours=8)))  # 11:36:55+08:00, same instant
    signer = Signer("AK", VECTOR_SK)
    headers = signer.headers("GET", VECTOR_HOST, VECTOR_PATH, b"", query=VECTOR_QUERY, now=beijing)
    assert headers["X-Sdk-Date"] == VECTOR_DATE
    assert headers["Authorization"].endswith(f"Signature={VECTOR_SIGNATURE}")


# --------------------------------------------------------------------------------------------
# 4. Credential and project id discovery
# --------------------------------------------------------------------------------------------

CONFIG_PATH = "/v1/0123456789abcdef0123456789abcdef/training-job-configs/x"


@pytest.fixture(autouse=True)
def fake_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets an empty HOME, so the real ``~/.huaweicloud/credentials`` is never read; the
    metadata service's default address is a closed loopback port, so the real one (169.254.169.254)
    is never asked; and no file counts as already warned about."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    monkeypatch.setattr(metadata, "DEFAULT_URL", f"http://127.0.0.1:{closed}")
    monkeypatch.setattr(credentials_module, "_warned", set())
    return home


def write_credentials(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def access_of(auth: object) -> str:
    """The AK in the ``Authorization`` header a Signer produces."""
    assert isinstance(auth, Signer)
    match = re.search(r"Access=([^,]*),", auth.headers("PUT", "h", CONFIG_PATH, b"{}")["Authorization"])
    assert match
    return match.group(1)


@pytest.fixture
def cred_file(tmp_path: Path) -> Path:
    """A credentials file with AK/SK, a security token and a project id."""
    return write_credentials(tmp_path / "credentials", (
        "[basic]\nak = FILEAK\nsk = FILESK\nsecurity_token = FILETOKEN\nproject_id = fileproject\n"))


def test_token_file_comes_first(tmp_path: Path, cred_file: Path) -> None:
    """``--token-file`` wins over env AK/SK, the credentials file and ``BATCHCFG_IAM_TOKEN``."""
    token_file = tmp_path / "token"
    token_file.write_text("  FILE-IAM-TOKEN\n", encoding="utf-8")
    env = {"HUAWEICLOUD_SDK_AK": "ENVAK", "HUAWEICLOUD_SDK_SK": "ENVSK",
           "HUAWEICLOUD_SDK_CREDENTIALS_FILE": str(cred_file), "BATCHCFG_IAM_TOKEN": "ENV-IAM"}
    auth = discover_auth(env, token_file)
    assert isinstance(auth, TokenAuth)
    assert auth.headers("PUT", "h", CONFIG_PATH, b"{}") == {
        "Content-Type": "application/json", "Host": "h", "X-Auth-Token": "FILE-IAM-TOKEN"}


def test_env_aksk_before_credentials_file_and_iam_token(cred_file: Path) -> None:
    """Env AK/SK win over the credentials file and ``BATCHCFG_IAM_TOKEN``."""
    env = {"HUAWEICLOUD_SDK_AK": "ENVAK", "HUAWEICLOUD_SDK_SK": "ENVSK",
           "HUAWEICLOUD_SDK_CREDENTIALS_FILE": str(cred_file), "BATCHCFG_IAM_TOKEN": "ENV-IAM"}
    auth = discover_auth(env)
    assert access_of(auth) == "ENVAK"
    headers = auth.headers("PUT", "h", CONFIG_PATH, b"{}")
    assert "X-Security-Token" not in headers and "X-Auth-Token" not in headers


def test_env_aksk_signature_uses_env_sk() -> None:
    """The discovered Signer signs with the env SK and the env security token."""
    env = {"HUAWEICLOUD_SDK_AK": " ENVAK ", "HUAWEICLOUD_SDK_SK": "ENVSK\n",
           "HUAWEICLOUD_SDK_SECURITY_TOKEN": "ENVTOKEN"}
    now = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    got = discover_auth(env).headers("PUT", "h", CONFIG_PATH, b"{}", now=now)  # type: ignore[call-arg]
    assert got == Signer("ENVAK", "ENVSK", "ENVTOKEN").headers("PUT", "h", CONFIG_PATH, b"{}", now=now)
    assert got["X-Security-Token"] == "ENVTOKEN"


def test_credentials_file_named_by_env(cred_file: Path) -> None:
    """Without env AK/SK, the ``[basic]`` section of the named file is used, security token too."""
    env = {"HUAWEICLOUD_SDK_CREDENTIALS_FILE": str(cred_file), "BATCHCFG_IAM_TOKEN": "ENV-IAM"}
    auth = discover_auth(env)
    assert access_of(auth) == "FILEAK"
    now = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert auth.headers("PUT", "h", CONFIG_PATH, b"{}", now=now) == Signer(  # type: ignore[call-arg]
        "FILEAK", "FILESK", "FILETOKEN").headers("PUT", "h", CONFIG_PATH, b"{}", now=now)


def test_default_credentials_file_in_home(fake_home: Path) -> None:
    """Without the env var, ``~/.huaweicloud/credentials`` is read (HOME is a temp dir here)."""
    write_credentials(fake_home / ".huaweicloud" / "credentials", "[basic]\nak = HOMEAK\nsk = HOMESK\n")
    assert access_of(discover_auth({})) == "HOMEAK"


def test_iam_token_from_env_last() -> None:
    """``BATCHCFG_IAM_TOKEN`` is used when there is no AK/SK anywhere."""
    auth = discover_auth({"BATCHCFG_IAM_TOKEN": " ENV-IAM "})
    assert isinstance(auth, TokenAuth)
    assert auth.headers("GET", "h", CONFIG_PATH, b"")["X-Auth-Token"] == "ENV-IAM"


def test_credentials_file_without_basic_section_falls_through(tmp_path: Path) -> None:
    """A credentials file with no ``[basic]`` section holds no AK/SK: the IAM token is next."""
    path = write_credentials(tmp_path / "credentials", "[other]\nak = A\nsk = S\n")
    auth = discover_auth({"HUAWEICLOUD_SDK_CREDENTIALS_FILE": str(path), "BATCHCFG_IAM_TOKEN": "T"})
    assert isinstance(auth, TokenAuth)


def test_no_credentials_at_all() -> None:
    """Nothing anywhere, and no metadata service (or it is off): UsageError, saying why."""
    with pytest.raises(UsageError, match="no credentials.*ECS metadata service gave none"):
        discover_auth({})
    with pytest.raises(UsageError, match="no credentials.*BATCHCFG_METADATA_URL is off"):
        discover_auth({"BATCHCFG_METADATA_URL": "off"})


def test_shared_file_warned_once_per_process(cred_file: Path, tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    """A credentials file others may read is warned about once, however often it is read (config
    show reads it three times); another file gets its own warning; a private one none."""
    cred_file.chmod(0o644)
    other = write_credentials(tmp_path / "other" / "credentials", "[basic]\nak = A\nsk = S\n")
    other.chmod(0o604)
    private = write_credentials(tmp_path / "private" / "credentials", "[basic]\nak = A\nsk = S\n")
    private.chmod(0o600)
    with caplog.at_level(logging.WARNING, logger="batchcfg.credentials"):
        for _ in range(3):
            discover_auth({"HUAWEICLOUD_SDK_CREDENTIALS_FILE": str(cred_file)})
            discover_project_id(None, {"HUAWEICLOUD_SDK_CREDENTIALS_FILE": str(cred_file)})
        discover_auth({"HUAWEICLOUD_SDK_CREDENTIALS_FILE": str(other)})
        discover_auth({"HUAWEICLOUD_SDK_CREDENTIALS_FILE": str(private)})
    assert [record.getMessage() for record in caplog.records] == [
        f"{path} can be read by other users: run chmod 600 {path}" for path in (cred_file, other)]


@pytest.mark.parametrize("env", [
    {"HUAWEICLOUD_SDK_AK": "ONLYAK"},
    {"HUAWEICLOUD_SDK_SK": "ONLYSK"},
    {"HUAWEICLOUD_SDK_AK": "ONLYAK", "HUAWEICLOUD_SDK_SK": "   "},
    {"HUAWEICLOUD_SDK_AK": "ONLYAK", "BATCHCFG_IAM_TOKEN": "T"},  # no silent fallback
], ids=["ak-only", "sk-only", "sk-blank", "ak-only-with-token"])
def test_half_an_aksk_pair_in_env(env: dict[str, str]) -> None:
    """AK without SK (or the reverse) is a usage error, not a silent fallback."""
    with pytest.raises(UsageError):
        discover_auth(env)


@pytest.mark.parametrize("body", ["[basic]\nak = A\n", "[basic]\nsk = S\n"], ids=["ak-only", "sk-only"])
def test_half_an_aksk_pair_in_file(tmp_path: Path, body: str) -> None:
    """A ``[basic]`` section with only one of ak/sk is a usage error."""
    path = write_credentials(tmp_path / "credentials", body)
    with pytest.raises(UsageError, match="needs both ak and sk"):
        discover_auth({"HUAWEICLOUD_SDK_CREDENTIALS_FILE": str(path)})


def test_missing_credentials_file_named_by_env(tmp_path: Path) -> None:
    """A credentials file named by the env var must exist."""
    with pytest.raises(UsageError, match="no such credentials file"):
        discover_auth({"HUAWEICLOUD_SDK_CREDENTIALS_FILE": str(tmp_path / "nope")})


@pytest.mark.parametrize("content", ["", "   \n\t\n"], ids=["empty", "blank"])
def test_empty_token_file(tmp_path: Path, content: str) -> None:
    """An empty (or whitespace-only) ``--token-file`` is a usage error."""
    token_file = tmp_path / "token"
    token_file.write_text(content, encoding="utf-8")
    with pytest.raises(UsageError, match="empty"):
        discover_auth({"BATCHCFG_IAM_TOKEN": "T"}, token_file)


def test_missing_token_file(tmp_path: Path) -> None:
    """A ``--token-file`` that does not exist is a usage error."""
    with pytest.raises(UsageError, match="cannot read"):
        discover_auth({}, tmp_path / "nope")


@pytest.mark.parametrize(("option", "env_value", "expected"), [
    ("optproject", "envproject", "optproject"),
    (None, "envproject", "envproject"),
    (None, "  ", "fileproject"),
    (None, None, "fileproject"),
    (" optproject ", None, "optproject"),
])
def test_project_id_precedence(cred_file: Path, option: str | None, env_value: str | None,
                               expected: str) -> None:
    """``--project-id`` > ``HUAWEICLOUD_SDK_PROJECT_ID`` > the credentials file's ``project_id``."""
    env = {"HUAWEICLOUD_SDK_CREDENTIALS_FILE": str(cred_file)}
    if env_value is not None:
        env["HUAWEICLOUD_SDK_PROJECT_ID"] = env_value
    assert discover_project_id(option, env) == expected


def test_project_id_from_default_file_or_empty(fake_home: Path) -> None:
    """Nothing set: ``""``; then the default credentials file's project id."""
    assert discover_project_id(None, {}) == ""
    write_credentials(fake_home / ".huaweicloud" / "credentials", "[basic]\nproject_id = homeproj\n")
    assert discover_project_id(None, {}) == "homeproj"


# --------------------------------------------------------------------------------------------
# 5. Secrets never show
# --------------------------------------------------------------------------------------------

SECRET = "Sup3rS3cretValue0123456789abcdefXYZ"


def test_signer_repr_hides_secrets() -> None:
    """``repr(Signer)`` holds neither the SK, the security token nor the whole AK."""
    ak = "AKIDLONGACCESSKEY1234"
    text = repr(Signer(ak, SECRET, "TEMPTOKEN" + SECRET))
    assert SECRET not in text and "TEMPTOKEN" not in text and ak not in text
    assert text.startswith("Signer(")


def test_token_auth_repr_hides_token() -> None:
    """``repr(TokenAuth)`` does not hold the token."""
    assert SECRET not in repr(TokenAuth(SECRET))


def test_discovered_auth_repr_hides_secrets(tmp_path: Path) -> None:
    """The objects discover_auth returns do not show their secrets either."""
    env = {"HUAWEICLOUD_SDK_AK": "AK", "HUAWEICLOUD_SDK_SK": SECRET,
           "HUAWEICLOUD_SDK_SECURITY_TOKEN": SECRET + "T"}
    assert SECRET not in repr(discover_auth(env))
    assert SECRET not in repr(discover_auth({"BATCHCFG_IAM_TOKEN": SECRET}))
    token_file = tmp_path / "token"
    token_file.write_text(SECRET, encoding="utf-8")
    assert SECRET not in repr(discover_auth({}, token_file))


def test_signed_headers_do_not_carry_the_sk() -> None:
    """The SK is used as the HMAC key only: it is in no header."""
    headers = Signer("AK", SECRET, "TOKEN").headers("PUT", "h", CONFIG_PATH, b"{}")
    assert all(SECRET not in value for value in headers.values())


MALFORMED = {
    "line-without-equals": f"[basic]\nak = AK\n{SECRET}\n",
    "secret-before-section": f"sk = {SECRET}\n[basic]\nak = AK\n",
    "bare-secret-no-section": f"{SECRET}\n",
    "duplicate-option": f"[basic]\nsk = {SECRET}\nsk = {SECRET}2\n",
    "duplicate-section": f"[basic]\nsk = {SECRET}\n[basic]\nak = A\n",
    "broken-section-header": f"[basic\nsk = {SECRET}\n",
}


def _full_report(exc: BaseException) -> str:
    """The message plus the whole traceback, chained exceptions included."""
    return str(exc) + "".join(traceback.format_exception(exc))


@pytest.mark.parametrize("text", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_credentials_file_error_hides_secret(tmp_path: Path, text: str) -> None:
    """A malformed credentials file is a UsageError naming the file, never quoting its lines."""
    path = write_credentials(tmp_path / "credentials", text)
    for call in (lambda: discover_auth({"HUAWEICLOUD_SDK_CREDENTIALS_FILE": str(path)}),
                 lambda: discover_project_id(None, {"HUAWEICLOUD_SDK_CREDENTIALS_FILE": str(path)})):
        with pytest.raises(UsageError) as info:
            call()
        assert str(path) in str(info.value)
        assert SECRET not in _full_report(info.value)


def test_undecodable_credentials_file_error_hides_secret(tmp_path: Path) -> None:
    """A credentials file that is not UTF-8 is a UsageError that does not quote its bytes."""
    path = write_credentials(tmp_path / "credentials",
                             b"[basic]\nak = A\nsk = " + SECRET.encode() + b"\xff\xfe\n")
    with pytest.raises(UsageError) as info:
        discover_auth({"HUAWEICLOUD_SDK_CREDENTIALS_FILE": str(path)})
    assert SECRET not in _full_report(info.value)


def test_undecodable_token_file_error_hides_token(tmp_path: Path) -> None:
    """An unreadable token file's UsageError does not quote the file's content."""
    token_file = tmp_path / "token"
    token_file.write_bytes(SECRET.encode() + b"\xff\xfe")
    with pytest.raises(UsageError) as info:
        discover_auth({}, token_file)
    assert SECRET not in _full_report(info.value)


@pytest.mark.parametrize("env", [
    {"HUAWEICLOUD_SDK_AK": SECRET},
    {"HUAWEICLOUD_SDK_SK": SECRET},
], ids=["ak-only", "sk-only"])
def test_half_pair_error_hides_values(env: dict[str, str]) -> None:
    """The "set both" error names the variables, not their values."""
    with pytest.raises(UsageError) as info:
        discover_auth(env)
    assert SECRET not in str(info.value)
