"""Huawei-native credentials and endpoints: region overrides (batchcfg.endpoints) and temporary
credentials from the ECS metadata service (batchcfg.metadata), against real loopback servers.

Sections:
1. region overrides, held to Huawei's own region providers (``huaweicloudsdkcore``);
2. the metadata protocol and its place in discovery, against a stand-in of the service;
3. renewal: ``ready`` under concurrency and failures, and an ``apply`` that outlives its first
   credentials, against a sandbox whose gateway refuses expired security tokens;
4. the shared-secrets-file warning: once per file and process.

No test may reach the real metadata address: every one runs with :data:`DEFAULT_URL` pointing at
a closed loopback port (see :func:`no_real_metadata_service`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
import traceback
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from aiohttp import web
from huaweicloudsdkcore.utils.six_utils import SingletonMeta

from batchcfg import metadata
from batchcfg.auth import Signer, TokenAuth
from batchcfg.credentials import discover_auth, discover_project_id
from batchcfg.commands import apply
from batchcfg.endpoints import endpoint_for, region_override
from batchcfg.errors import ConnectionFailed, UsageError
from batchcfg.metadata import MetadataCredentials
from batchcfg.options import Options
from batchcfg.sandbox import SandboxConfig, SandboxState, create_app

from .conftest import EARLIER_BODY, PROJECT, scrub_env, valid_manifest

SECRET = "Sup3rS3cretValue0123456789abcdefXYZ"
VARIABLE = "HUAWEICLOUD_SDK_REGION_MODELARTS_CN_NORTH_4"


def closed_port_url() -> str:
    """An http URL of a loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(autouse=True)
def no_real_metadata_service(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The default metadata address is a closed loopback port, HOME an empty directory, and no
    HUAWEICLOUD_SDK_/BATCHCFG_ variable of the developer's leaks in."""
    monkeypatch.setattr(metadata, "DEFAULT_URL", closed_port_url())
    home = scrub_env(monkeypatch, tmp_path)
    home.mkdir()
    return home


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and text
    return text


def full_report(exc: BaseException) -> str:
    return str(exc) + "".join(traceback.format_exception(exc))


# --------------------------------------------------------------------------------------------
# 1. Region overrides
# --------------------------------------------------------------------------------------------

from .test_auth import write_credentials as write  # noqa: E402  (one writer of test files)


def test_env_override_uses_the_first_endpoint() -> None:
    """``HUAWEICLOUD_SDK_REGION_MODELARTS_CN_NORTH_4``: comma-separated, the first one, trimmed."""
    env = {VARIABLE: " https://ma.private.example:8443/ , https://second.example"}
    assert endpoint_for(None, "cn-north-4", env=env) == "https://ma.private.example:8443"
    override = region_override("cn-north-4", env)
    assert override is not None and override.source == VARIABLE


def test_without_env_no_override_is_looked_for() -> None:
    """``endpoint_for`` without ``env`` keeps its old behaviour; ``--endpoint`` always wins."""
    env = {VARIABLE: "https://ma.private.example"}
    assert endpoint_for(None, "cn-north-4") == "https://modelarts.cn-north-4.myhuaweicloud.com"
    assert endpoint_for("https://given.example", "cn-north-4", env=env) == "https://given.example"


def test_empty_variable_is_ignored_as_the_sdk_does() -> None:
    assert endpoint_for(None, "cn-north-4", env={VARIABLE: "  "}) == "https://modelarts.cn-north-4.myhuaweicloud.com"


@pytest.mark.parametrize("text", [
    "modelarts:\n  - id: cn-north-4\n    endpoint: https://file.example\n",
    "ModelArts:\n  - {id: cn-north-4, endpoints: ['https://file.example', 'https://other.example']}\n",
    "modelarts: [{id: cn-north-4, endpoints: [https://file.example], endpoint: https://last.example}]\n",
    "ecs: [{id: cn-north-4, endpoint: https://ecs.example}]\n"
    "MODELARTS:\n  - endpoint: https://no-id.example\n  - id: cn-north-4\n    endpoint: https://file.example\n",
], ids=["endpoint", "endpoints-any-case", "endpoints-then-endpoint", "other-service-and-no-id"])
def test_regions_file_in_home(no_real_metadata_service: Path, text: str) -> None:
    """``~/.huaweicloud/regions.yaml``: a service maps to a list of ``{id, endpoint(s)}``."""
    write(no_real_metadata_service / ".huaweicloud" / "regions.yaml", text)
    assert endpoint_for(None, "cn-north-4", env={}) == "https://file.example"


def test_regions_file_named_by_env(tmp_path: Path) -> None:
    path = write(tmp_path / "r.yaml", "modelarts:\n- id: cn-north-4\n  endpoint: https://named.example\n")
    env = {"HUAWEICLOUD_SDK_REGIONS_FILE": str(path)}
    override = region_override("cn-north-4", env)
    assert override is not None and (override.endpoint, override.source) == ("https://named.example", str(path))
    assert endpoint_for(None, "cn-east-3", env=env) == "https://modelarts.cn-east-3.myhuaweicloud.com"


def test_env_wins_over_the_file_which_is_then_not_read(tmp_path: Path) -> None:
    """The variable wins; the file is not even read (a broken one does not matter then)."""
    good = write(tmp_path / "r.yaml", "modelarts: [{id: cn-north-4, endpoint: 'https://file.example'}]\n")
    broken = write(tmp_path / "broken.yaml", "modelarts: [\n")
    for path in (good, broken):
        env = {VARIABLE: "https://env.example", "HUAWEICLOUD_SDK_REGIONS_FILE": str(path)}
        assert endpoint_for(None, "cn-north-4", env=env) == "https://env.example"


def test_an_override_names_a_region_the_table_does_not_know(tmp_path: Path) -> None:
    """A dedicated region: unknown to the table, used through an override (variable or file)."""
    with pytest.raises(UsageError, match="not a ModelArts region"):
        endpoint_for(None, "my-dedicated-1", env={})
    env = {"HUAWEICLOUD_SDK_REGION_MODELARTS_MY_DEDICATED_1": "https://ma.dedicated.example"}
    assert endpoint_for(None, "my-dedicated-1", env=env) == "https://ma.dedicated.example"
    path = write(tmp_path / "r.yaml", "modelarts: [{id: my-dedicated-1, endpoint: 'https://f.example'}]\n")
    assert endpoint_for(None, "my-dedicated-1", env={"HUAWEICLOUD_SDK_REGIONS_FILE": str(path)}) == "https://f.example"


SDK_CASES = {
    "env-one": ({VARIABLE: "https://env.example"}, None),
    "env-several": ({VARIABLE: "https://a.example,https://b.example"}, None),
    "file-endpoint": ({}, "modelarts:\n  - id: cn-north-4\n    endpoint: https://f.example\n"),
    "file-endpoints-first": ({}, "modelarts: [{id: cn-north-4, endpoints: [https://a.example, https://b.example],"
                                 " endpoint: https://c.example}]\n"),
    "file-service-case": ({}, "ModelArts: [{id: cn-north-4, endpoint: https://f.example}]\n"),
    "file-later-entry-wins": ({}, "modelarts: [{id: cn-north-4, endpoint: https://1.example},"
                                  " {id: cn-north-4, endpoint: https://2.example}]\n"),
    "file-entry-without-endpoint-skipped": ({}, "modelarts: [{id: cn-north-4, endpoint: https://1.example},"
                                                " {id: cn-north-4}]\n"),
    "file-other-region": ({}, "modelarts: [{id: cn-east-3, endpoint: https://f.example}]\n"),
    "env-over-file": ({VARIABLE: "https://env.example"},
                      "modelarts: [{id: cn-north-4, endpoint: https://f.example}]\n"),
    "dedicated-region": ({"HUAWEICLOUD_SDK_REGION_MODELARTS_MY_DEDICATED_1": "https://d.example"}, None),
}


@pytest.mark.parametrize("case", SDK_CASES, ids=list(SDK_CASES))
def test_overrides_agree_with_huaweicloudsdkcore(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same variables and file give the endpoint Huawei's ModelArts SDK would use."""
    from huaweicloudsdkmodelarts.v1.region.modelarts_region import ModelArtsRegion

    env, text = SDK_CASES[case]
    region = "my-dedicated-1" if case == "dedicated-region" else "cn-north-4"
    monkeypatch.setattr(SingletonMeta, "_instances", {})  # the SDK reads its regions file once a process
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if text is not None:
        monkeypatch.setenv("HUAWEICLOUD_SDK_REGIONS_FILE", str(write(tmp_path / "regions.yaml", text)))
    import os

    assert endpoint_for(None, region, env=os.environ) == ModelArtsRegion.value_of(region).endpoints[0].rstrip("/")


MALFORMED = {
    "yaml-syntax": f"modelarts: [{{id: cn-north-4, endpoint: {SECRET}\n",
    "tab-indent": f"modelarts:\n\t- id: {SECRET}\n",
    "not-a-mapping": f"- {SECRET}\n",
    "service-not-a-list": f"modelarts: {{id: cn-north-4, endpoint: {SECRET}}}\n",
    "entry-not-a-mapping": f"modelarts: [{SECRET}]\n",
    "endpoints-not-a-list": f"modelarts: [{{id: cn-north-4, endpoints: {SECRET}}}]\n",
    "endpoint-not-a-string": "modelarts: [{id: cn-north-4, endpoint: [1, 2]}]\n",
    "two-documents": f"modelarts: []\n---\nx: {SECRET}\n",
    "not-utf8": SECRET.encode() + b"\xff\xfe: x\n",
}


@pytest.mark.parametrize("text", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_regions_file_is_one_line_naming_the_file(tmp_path: Path, text: str | bytes) -> None:
    """A file the SDK could not read: one-line UsageError naming the file, quoting none of it."""
    path = write(tmp_path / "regions.yaml", text)
    with pytest.raises(UsageError) as info:
        endpoint_for(None, "cn-north-4", env={"HUAWEICLOUD_SDK_REGIONS_FILE": str(path)})
    assert str(path) in one_line(info.value)
    assert SECRET not in full_report(info.value)


def test_oversized_and_missing_regions_files(tmp_path: Path) -> None:
    big = write(tmp_path / "big.yaml", "# " + "x" * (1024 * 1024) + "\n")
    with pytest.raises(UsageError, match="over 1024 KiB"):
        endpoint_for(None, "cn-north-4", env={"HUAWEICLOUD_SDK_REGIONS_FILE": str(big)})
    with pytest.raises(UsageError, match="no such regions file"):
        endpoint_for(None, "cn-north-4", env={"HUAWEICLOUD_SDK_REGIONS_FILE": str(tmp_path / "nope.yaml")})


def test_empty_or_comment_only_file_has_no_overrides(tmp_path: Path) -> None:
    for text in ("", "# nothing yet\n"):
        path = write(tmp_path / "r.yaml", text)
        assert region_override("cn-north-4", {"HUAWEICLOUD_SDK_REGIONS_FILE": str(path)}) is None


@pytest.mark.parametrize(("env", "file_text", "named"), [
    ({VARIABLE: ",https://second.example"}, None, VARIABLE),
    ({}, "modelarts: [{id: cn-north-4, endpoint: ''}]\n", "regions.yaml"),
    ({}, "modelarts: [{id: cn-north-4, endpoints: ['  ', 'https://b.example']}]\n", "regions.yaml"),
], ids=["variable", "file-endpoint", "file-endpoints"])
def test_empty_endpoint_is_a_usage_error(tmp_path: Path, env: dict[str, str], file_text: str | None,
                                         named: str) -> None:
    env = dict(env)
    if file_text is not None:
        env["HUAWEICLOUD_SDK_REGIONS_FILE"] = str(write(tmp_path / "regions.yaml", file_text))
    with pytest.raises(UsageError, match="empty") as info:
        endpoint_for(None, "cn-north-4", env=env)
    assert named in one_line(info.value)


@pytest.mark.parametrize("where", ["variable", "file"])
def test_override_must_be_https_beyond_loopback(tmp_path: Path, where: str) -> None:
    """An override meets --endpoint's rules: plain http only to loopback, or with --allow-http;
    the message names where the endpoint came from."""
    def env_for(endpoint: str) -> dict[str, str]:
        if where == "variable":
            return {VARIABLE: endpoint}
        path = write(tmp_path / "regions.yaml", f"modelarts: [{{id: cn-north-4, endpoint: '{endpoint}'}}]\n")
        return {"HUAWEICLOUD_SDK_REGIONS_FILE": str(path)}

    with pytest.raises(UsageError, match="plain http") as info:
        endpoint_for(None, "cn-north-4", env=env_for("http://10.1.2.3:8080"))
    assert (VARIABLE if where == "variable" else "regions.yaml") in one_line(info.value)
    allowed = endpoint_for(None, "cn-north-4", env=env_for("http://10.1.2.3:8080"), allow_http=True)
    assert allowed == "http://10.1.2.3:8080"
    assert endpoint_for(None, "cn-north-4", env=env_for("http://127.0.0.1:9")) == "http://127.0.0.1:9"
    for bad in ("ftp://x.example", "https://x.example/v1/path", f"https://user:{SECRET}@x.example",
                "https://[bad", "https://x.example:99999"):
        with pytest.raises(UsageError) as info:
            endpoint_for(None, "cn-north-4", env=env_for(bad))
        assert SECRET not in one_line(info.value)


# --------------------------------------------------------------------------------------------
# 2. The metadata service: protocol and discovery
# --------------------------------------------------------------------------------------------

ISO = "%Y-%m-%dT%H:%M:%S.%fZ"


class MetadataStandIn:
    """The ECS metadata service on a loopback port, in a thread of its own (discovery blocks the
    caller's event loop while it fetches the first credentials). It hands out the sandbox's AK/SK
    with a new security token each time, valid ``lifetime`` seconds, and counts what it gets."""

    def __init__(self, lifetime: float = 3600.0) -> None:
        self.lifetime = lifetime
        self.token_status = 200
        self.key_status = 200          # another status: answered with ``key_text``
        self.key_text = ""
        self.key_body: str | None = None  # a fixed securitykey body instead of fresh credentials
        self.stale_tokens: set[str] = set()  # metadata tokens answered 401
        self.puts: list[dict[str, str]] = []
        self.gets: list[dict[str, str]] = []
        self.issued: dict[str, float] = {}  # security token -> expires_at (epoch)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.url = ""

    def __enter__(self) -> MetadataStandIn:
        self._thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> str:
        app = web.Application()
        app.router.add_put(metadata.TOKEN_PATH, self._token)
        app.router.add_get(metadata.SECURITY_KEY_PATH, self._key)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def _token(self, request: web.Request) -> web.Response:
        self.puts.append(dict(request.headers))
        return web.Response(status=self.token_status, text=f"meta-token-{len(self.puts)}")

    async def _key(self, request: web.Request) -> web.Response:
        self.gets.append(dict(request.headers))
        if request.headers.get("X-Metadata-Token") in self.stale_tokens:
            return web.Response(status=401, text="token expired")
        if self.key_status != 200:
            return web.Response(status=self.key_status, text=self.key_text)
        if self.key_body is not None:
            return web.Response(text=self.key_body, content_type="application/json")
        security_token = f"SECTOKEN{len(self.issued) + 1}{SECRET}"
        expires = time.time() + self.lifetime
        self.issued[security_token] = expires
        body = {"credential": {"access": SandboxConfig.ak, "secret": SandboxConfig.sk,
                               "securitytoken": security_token,
                               "expires_at": datetime.fromtimestamp(expires, timezone.utc).strftime(ISO)}}
        return web.json_response(body)


@pytest.fixture
def standin() -> Iterator[MetadataStandIn]:
    with MetadataStandIn() as server:
        yield server


def metadata_env(server: MetadataStandIn) -> dict[str, str]:
    return {"BATCHCFG_METADATA_URL": server.url}


def test_discovery_uses_the_metadata_service_as_the_sdk_does(standin: MetadataStandIn) -> None:
    """PUT for a token (TTL 21600), GET the security key with it; sign as temporary AK/SK."""
    auth = discover_auth(metadata_env(standin))
    assert isinstance(auth, MetadataCredentials)
    assert [p["X-Metadata-Token-Ttl-Seconds"] for p in standin.puts] == ["21600"]
    assert [g.get("X-Metadata-Token") for g in standin.gets] == ["meta-token-1"]
    (token,) = standin.issued
    now = datetime(2030, 1, 1, tzinfo=timezone.utc)
    path = "/v1/0123456789abcdef0123456789abcdef/training-job-configs/x"
    assert auth.headers("PUT", "h", path, b"{}", now=now) == Signer(
        SandboxConfig.ak, SandboxConfig.sk, token).headers("PUT", "h", path, b"{}", now=now)
    shown = repr(auth)
    assert SECRET not in shown and SandboxConfig.sk not in shown and SandboxConfig.ak not in shown
    assert "temporary=True" in shown and "meta-token" not in shown


@pytest.mark.parametrize("status", [404, 405, 503])
def test_no_metadata_token_means_go_on_without_one(standin: MetadataStandIn, status: int) -> None:
    standin.token_status = status
    assert isinstance(discover_auth(metadata_env(standin)), MetadataCredentials)
    assert "X-Metadata-Token" not in standin.gets[0]


@pytest.mark.parametrize("status", [403, 500])
def test_other_token_failures_give_no_credentials(standin: MetadataStandIn, status: int) -> None:
    standin.token_status = status
    with pytest.raises(UsageError, match=f"no credentials.*HTTP {status}"):
        discover_auth(metadata_env(standin))
    assert not standin.gets


def test_stale_metadata_token_is_replaced_once(standin: MetadataStandIn) -> None:
    """A 401 (not "no agency") on the security key: a new token, and one more try, as the SDK."""
    standin.stale_tokens = {"meta-token-1"}
    assert isinstance(discover_auth(metadata_env(standin)), MetadataCredentials)
    assert len(standin.puts) == 2
    assert [g.get("X-Metadata-Token") for g in standin.gets] == ["meta-token-1", "meta-token-2"]


def test_no_agency_is_said(standin: MetadataStandIn) -> None:
    standin.key_status, standin.key_text = 401, '{"error": "Please configure Cloud Service Agency first"}'
    with pytest.raises(UsageError, match="no agency") as info:
        discover_auth(metadata_env(standin))
    assert len(standin.puts) == 1 and len(one_line(info.value)) < 400


@pytest.mark.parametrize("body", [
    f"not json {SECRET}",
    json.dumps({"credential": {"access": "AK", "securitytoken": SECRET, "expires_at": "2099-01-01T00:00:00Z"}}),
    json.dumps({"credential": {"access": "AK", "secret": SECRET, "securitytoken": "t", "expires_at": SECRET}}),
    json.dumps({"credential": {"access": "AK", "secret": SECRET, "securitytoken": "t",
                               "expires_at": "2001-01-01T00:00:00.000000Z"}}),
    json.dumps([SECRET]),
], ids=["not-json", "no-secret", "bad-date", "already-expired", "not-an-object"])
def test_unusable_security_key_answers(standin: MetadataStandIn, body: str) -> None:
    """An answer batchcfg cannot use: "no credentials", one line, quoting none of it."""
    standin.key_body = body
    with pytest.raises(UsageError, match="no credentials") as info:
        discover_auth(metadata_env(standin))
    assert SECRET not in full_report(info.value)


def test_sdk_alternative_field_names(standin: MetadataStandIn) -> None:
    standin.key_body = json.dumps({"credentials": {"accessKeyId": "ALTAK", "secretAccessKey": "ALTSK",
                                                   "securityToken": "ALTTOKEN",
                                                   "expiration": "2099-01-01T00:00:00.000000Z"}})
    auth = discover_auth(metadata_env(standin))
    assert auth.headers("GET", "h", "/", b"")["X-Security-Token"] == "ALTTOKEN"


def test_every_other_source_comes_first(standin: MetadataStandIn, tmp_path: Path) -> None:
    """Env AK/SK, the credentials file and BATCHCFG_IAM_TOKEN all win; the service is not asked."""
    cred = write(tmp_path / "credentials", "[basic]\nak = FILEAK\nsk = FILESK\n")
    cred.chmod(0o600)
    for extra in ({"HUAWEICLOUD_SDK_AK": "A", "HUAWEICLOUD_SDK_SK": "S"},
                  {"HUAWEICLOUD_SDK_CREDENTIALS_FILE": str(cred)}, {"BATCHCFG_IAM_TOKEN": "T"}):
        assert isinstance(discover_auth({**metadata_env(standin), **extra}), (Signer, TokenAuth))
    assert discover_auth(metadata_env(standin), token_file=write(tmp_path / "tok", "T"))
    assert not standin.puts and not standin.gets


def test_no_service_no_wait() -> None:
    """Without a metadata service (a closed port here), "no credentials" comes at once."""
    started = time.monotonic()
    with pytest.raises(UsageError, match="no credentials.*metadata service gave none.*cannot connect") as info:
        discover_auth({})
    assert time.monotonic() - started < 1.0
    one_line(info.value)


def test_silent_service_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """A service that takes the connection and never answers: given up after the read timeout."""
    monkeypatch.setattr(metadata, "READ_TIMEOUT", 0.3)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections complete in the backlog; nothing ever answers
        started = time.monotonic()
        with pytest.raises(UsageError, match="no answer within the timeout"):
            discover_auth({"BATCHCFG_METADATA_URL": f"http://127.0.0.1:{silent.getsockname()[1]}"})
        assert time.monotonic() - started < 2.0


def test_metadata_source_can_be_turned_off(standin: MetadataStandIn) -> None:
    with pytest.raises(UsageError, match="BATCHCFG_METADATA_URL is off"):
        discover_auth({"BATCHCFG_METADATA_URL": "off"})
    assert not standin.puts


@pytest.mark.parametrize("url", ["https://127.0.0.1:1", "http://10.0.0.1", "http://metadata.example",
                                 "http://127.0.0.1:1/path", "http://u:p@127.0.0.1:1", "nonsense",
                                 "http://[bad", "http://127.0.0.1:99999", "http://:80"])
def test_metadata_url_must_be_plain_http_to_this_machine_or_link_local(url: str) -> None:
    with pytest.raises(UsageError, match="BATCHCFG_METADATA_URL must be"):
        discover_auth({"BATCHCFG_METADATA_URL": url})


def test_link_local_and_loopback_metadata_urls_are_accepted() -> None:
    assert str(metadata.metadata_url({"BATCHCFG_METADATA_URL": "http://169.254.169.254/"})) == "http://169.254.169.254"
    assert str(metadata.metadata_url({"BATCHCFG_METADATA_URL": "http://[::1]:8080"})) == "http://[::1]:8080"


# --------------------------------------------------------------------------------------------
# 3. Renewal
# --------------------------------------------------------------------------------------------

async def test_ready_renews_once_for_many_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """When due, one renewal for all the requests waiting; not due: no request to the service."""
    with MetadataStandIn(lifetime=0.6) as server:
        auth = discover_auth(metadata_env(server))
        assert isinstance(auth, MetadataCredentials)
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(auth.ready(session) for _ in range(20)))
            assert len(server.gets) == 1  # fresh: not due
            assert auth.refresh_at - time.time() < 0.35  # half the lifetime, not the SDK's 40 min
            await anyio.sleep(max(0.0, auth.refresh_at - time.time()) + 0.01)
            await asyncio.gather(*(auth.ready(session) for _ in range(20)))
            assert len(server.gets) == 2 and len(server.puts) == 1  # the metadata token is kept
            second = list(server.issued)[1]
            assert auth.headers("GET", "h", "/", b"")["X-Security-Token"] == second


def test_the_client_awaits_ready_only_for_credentials_that_have_it() -> None:
    """The hot path of a plain Signer or TokenAuth gains one ``is None`` check, no await."""
    from batchcfg.client import Client

    for plain in (Signer("AK", "SK"), TokenAuth("T")):
        assert Client("https://x.example", plain, timeout=1)._ready is None


async def test_failed_renewal_keeps_valid_credentials_then_fails_the_attempt(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """A renewal that fails: a warning while the credentials last (no secret in it); once they
    have expired, the attempt's ConnectionFailed (retried like any), at once, without asking the
    service again until the next renewal is due; then, the service back, renewed."""
    monkeypatch.setattr(metadata, "EXPIRED_RETRY_WAIT", 0.2)
    with MetadataStandIn(lifetime=0.6) as server:
        auth = discover_auth(metadata_env(server))
        assert isinstance(auth, MetadataCredentials)
        server.key_status, server.key_text = 500, SECRET
        async with aiohttp.ClientSession() as session:
            await anyio.sleep(max(0.0, auth.refresh_at - time.time()) + 0.01)
            with caplog.at_level(logging.WARNING, logger="batchcfg.metadata"):
                await auth.ready(session)
            assert "could not renew" in caplog.text and SECRET not in caplog.text
            (first,) = server.issued
            assert auth.headers("GET", "h", "/", b"")["X-Security-Token"] == first
            await anyio.sleep(0.65)
            with pytest.raises(ConnectionFailed, match="expired and could not be renewed") as info:
                await auth.ready(session)
            assert SECRET not in full_report(info.value)
            asked = len(server.gets)
            with pytest.raises(ConnectionFailed):
                await auth.ready(session)  # within EXPIRED_RETRY_WAIT: fails at once
            assert len(server.gets) == asked
            server.key_status = 200  # the service is back: the next attempt after the wait renews
            await anyio.sleep(0.25)
            await auth.ready(session)
            assert len(server.issued) == 2


async def test_requests_go_on_while_another_renews(monkeypatch: pytest.MonkeyPatch) -> None:
    """During a renewal, the other requests sign with the current credentials (still well inside
    their lifetime) instead of waiting for it."""
    with MetadataStandIn(lifetime=0.8) as server:
        auth = discover_auth(metadata_env(server))
        assert isinstance(auth, MetadataCredentials)
        release = asyncio.Event()
        original = metadata.fetch

        async def slow_fetch(*args: Any) -> Any:
            await release.wait()
            return await original(*args)

        monkeypatch.setattr(metadata, "fetch", slow_fetch)
        async with aiohttp.ClientSession() as session:
            await anyio.sleep(max(0.0, auth.refresh_at - time.time()) + 0.01)
            renewing = asyncio.ensure_future(auth.ready(session))
            await asyncio.sleep(0.01)
            with anyio.fail_after(0.1):
                await auth.ready(session)  # does not wait for the renewal in progress
            assert not renewing.done()
            release.set()
            await renewing
            assert len(server.issued) == 2


async def test_apply_outlives_its_first_credentials(tmp_path: Path) -> None:
    """An apply found its credentials the way the CLI does (only BATCHCFG_METADATA_URL set),
    against a sandbox whose gateway refuses expired or unknown security tokens, and lasts about
    twice their lifetime: every row succeeds, and the credentials were renewed during the run."""
    names = [f"cfg-{i:02d}" for i in range(16)]
    manifest = valid_manifest(tmp_path / "m.csv", names)
    with MetadataStandIn(lifetime=0.8) as server:
        refused: list[str] = []
        used: set[str] = set()

        @web.middleware
        async def temporary_credentials(request: web.Request, handler: Any) -> web.StreamResponse:
            token = request.headers.get("X-Security-Token", "")
            if time.time() >= server.issued.get(token, 0.0):
                refused.append(token)
                return web.json_response({"error_code": "APIGW.0301", "request_id": "r",
                                          "error_msg": "Incorrect IAM authentication information: "
                                                       "the security token has expired"}, status=401)
            used.add(token)
            response: web.StreamResponse = await handler(request)
            return response

        state = SandboxState()
        state.configs.update({(PROJECT, name): dict(EARLIER_BODY) for name in names})
        app = create_app(SandboxConfig(), state)
        app.middlewares.append(temporary_credentials)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            endpoint = f"http://127.0.0.1:{runner.addresses[0][1]}"
            started = time.monotonic()
            summary = await apply(manifest, Options.of(endpoint=endpoint, project_id=PROJECT,
                                                       env=metadata_env(server), rate=20,
                                                       report=tmp_path / "r.csv", no_backup=True))
            elapsed = time.monotonic() - started
        finally:
            await runner.cleanup()
    assert summary.counts == {"succeeded": len(names)}, summary.counts
    assert not refused
    assert elapsed > 0.8  # longer than the first credentials lasted
    assert len(server.gets) >= 2 and len(used) >= 2
    assert len(server.puts) == 1  # one metadata token for the whole run


# --------------------------------------------------------------------------------------------
# 4. The shared-secrets-file warning
# --------------------------------------------------------------------------------------------

def test_config_show_warns_once_per_shared_file(no_real_metadata_service: Path, monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """``config show`` reads the credentials file three times; the warning comes once. Another
    shared file (``--token-file``) gets its own."""
    from batchcfg import credentials
    from batchcfg.cli import main

    monkeypatch.setattr(credentials, "_warned", set())
    cred = write(no_real_metadata_service / ".huaweicloud" / "credentials",
                 "[basic]\nak = SHAREDAK12345\nsk = SHAREDSK\nproject_id = " + PROJECT + "\n")
    cred.chmod(0o644)
    monkeypatch.setenv("BATCHCFG_METADATA_URL", "off")
    with caplog.at_level(logging.WARNING, logger="batchcfg.credentials"):
        assert main(["config", "show"]) == 0
        assert main(["config", "show"]) == 0
        discover_project_id(None)
    warnings = [r.getMessage() for r in caplog.records if "can be read by other users" in r.getMessage()]
    assert warnings == [f"{cred} can be read by other users: run chmod 600 {cred}"]
    token = write(no_real_metadata_service / "token", "IAMTOKEN")
    token.chmod(0o640)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="batchcfg.credentials"):
        discover_auth({}, token)
        discover_auth({}, token)
    assert [r.getMessage() for r in caplog.records] == [f"{token} can be read by other users: run chmod 600 {token}"]
    assert "SHAREDSK" not in capsys.readouterr().out
