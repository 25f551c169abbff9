"""The sandbox is faithful: paths, authentication, error bodies, stored configs, injected faults."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer as HuaweiSigner
from yarl import URL

from batchcfg.auth import Signer, TokenAuth
from batchcfg.client import config_path
from batchcfg.sandbox import RunningSandbox, SandboxConfig

from .conftest import PROJECT

BODY = {"worker_server_num": 2, "spec_id": 1, "model_id": 7, "data_url": "/bucket/data/",
        "parameter": [{"label": "lr", "value": "0.01"}], "config_desc": "中文 描述"}


async def send(sandbox: RunningSandbox, method: str, path: str, body: bytes = b"",
               headers: dict[str, str] | None = None, auth: Any = None) -> tuple[int, dict[str, Any], Any]:
    """One raw request; signs with ``auth`` (ours) unless ``headers`` are given."""
    host = URL(sandbox.endpoint).host_port_subcomponent
    if headers is None:
        headers = (auth or sandbox.signer()).headers(method, host, path, body)
    async with aiohttp.ClientSession() as session:
        async with session.request(method, URL(sandbox.endpoint + path, encoded=True), data=body or None,
                                   headers=headers) as response:
            data = json.loads(await response.read())
            return response.status, data, response.headers


def put_path(name: str = "cfg-1", project: str = PROJECT) -> str:
    return config_path(project, name)


async def test_a_request_signed_by_huaweis_sdk_is_accepted(sandbox: RunningSandbox) -> None:
    body = json.dumps(BODY, ensure_ascii=False).encode()
    host = URL(sandbox.endpoint).host_port_subcomponent
    request = SdkRequest("PUT", "http", host, put_path(), query_params=[],
                         header_params={"Content-Type": "application/json"}, body=body)
    signed = HuaweiSigner(BasicCredentials(sandbox.config.ak, sandbox.config.sk)).sign(request)
    status, data, headers = await send(sandbox, "PUT", put_path(), body, headers=signed.header_params)
    assert (status, data) == (200, {"is_success": True})
    assert len(headers["X-Request-Id"]) == 32
    status, data, _ = await send(sandbox, "GET", put_path())
    assert status == 200 and data["is_success"] is True and data["config_name"] == "cfg-1"
    assert {key: data[key] for key in BODY if key != "parameter"} == {k: v for k, v in BODY.items() if k != "parameter"}
    assert data["parameter"] == [{"label": "lr", "value": 0.01}], "numeric-looking values as JSON numbers"
    assert {"engine_name", "engine_version", "spec_code", "create_time"} <= set(data)


async def test_unknown_configs_are_404_unless_create_missing(sandbox_factory: Any) -> None:
    async with sandbox_factory() as strict:
        status, data, _ = await send(strict, "PUT", put_path("new"), json.dumps(BODY).encode())
        assert (status, data["is_success"], data["error_code"]) == (404, False, "ModelArts.0102")
        assert strict.state.configs == {}
    async with sandbox_factory(create_missing=True) as lenient:
        assert (await send(lenient, "PUT", put_path("new"), json.dumps(BODY).encode()))[0] == 200
        assert (await send(lenient, "GET", put_path("new")))[0] == 200


async def test_our_signature_and_a_token_are_accepted(sandbox: RunningSandbox) -> None:
    body = json.dumps(BODY).encode()
    assert (await send(sandbox, "PUT", put_path(), body))[0] == 200
    assert (await send(sandbox, "PUT", put_path(), body, auth=TokenAuth(sandbox.config.token)))[0] == 200
    assert [put[1:] for put in sandbox.state.puts] == [(PROJECT, "cfg-1")] * 2


@pytest.mark.parametrize("auth, reason", [
    (Signer(SandboxConfig.ak, "wrong-secret"), "verify aksk signature fail"),
    (Signer("UNKNOWNAK", SandboxConfig.sk), "ak not exist"),
    (TokenAuth("wrong-token"), "decrypt token fail"),
])
async def test_bad_credentials_get_the_gateways_401(sandbox: RunningSandbox, auth: Any, reason: str) -> None:
    status, data, headers = await send(sandbox, "PUT", put_path(), json.dumps(BODY).encode(), auth=auth)
    assert status == 401
    assert data["error_code"] == "APIGW.0301" and reason in data["error_msg"]
    assert data["request_id"] == headers["X-Request-Id"]
    assert sandbox.state.puts == []


async def test_no_credentials_at_all_is_a_401(sandbox: RunningSandbox) -> None:
    status, data, _ = await send(sandbox, "GET", put_path(), headers={})
    assert (status, data["error_code"]) == (401, "APIGW.0301")


async def test_a_tampered_body_fails_the_signature(sandbox: RunningSandbox) -> None:
    host = URL(sandbox.endpoint).host_port_subcomponent
    headers = sandbox.signer().headers("PUT", host, put_path(), b'{"worker_server_num":1}')
    status, data, _ = await send(sandbox, "PUT", put_path(), b'{"worker_server_num":9}', headers=headers)
    assert status == 401 and "signature" in data["error_msg"]


@pytest.mark.parametrize("skew, accepted", [(timedelta(minutes=14), True), (timedelta(minutes=16), False),
                                            (-timedelta(minutes=16), False)])
async def test_clock_skew_over_15_minutes_is_refused(sandbox: RunningSandbox, skew: timedelta,
                                                     accepted: bool) -> None:
    host = URL(sandbox.endpoint).host_port_subcomponent
    headers = sandbox.signer().headers("GET", host, put_path(), b"", now=datetime.now(timezone.utc) + skew)
    status, data, _ = await send(sandbox, "GET", put_path(), headers=headers)
    if accepted:
        assert status == 200
    else:
        assert status == 401 and "15 minutes" in data["error_msg"]


async def test_five_bad_signatures_lock_the_ak(sandbox: RunningSandbox) -> None:
    bad = Signer(sandbox.config.ak, "wrong-secret")
    for _ in range(5):
        assert (await send(sandbox, "GET", put_path(), auth=bad))[0] == 401
    status, data, _ = await send(sandbox, "GET", put_path())  # the right key, now locked
    assert status == 401 and "limit" in data["error_msg"]


async def test_another_project_is_forbidden(sandbox: RunningSandbox) -> None:
    status, data, _ = await send(sandbox, "PUT", put_path(project="0" * 32), json.dumps(BODY).encode())
    assert (status, data["error_code"]) == (403, "APIGW.0302")


@pytest.mark.parametrize("change, code", [
    ({"worker_server_num": 0}, "ModelArts.0104"),
    ({"worker_server_num": "2"}, "ModelArts.0104"),
    ({"data_url": "obs://bucket/data/"}, "ModelArts.2791"),
    ({"model_id": None, "app_url": "/bucket/app/", "boot_file_url": "/bucket/other/boot.py"}, "ModelArts.2792"),
    ({"spec_id": None}, "ModelArts.0104"),
    ({"unknown_field": 1}, "ModelArts.0104"),
])
async def test_bodies_are_checked_by_the_tools_rules(sandbox: RunningSandbox, change: dict[str, Any],
                                                     code: str) -> None:
    body = {key: value for key, value in {**BODY, **change}.items() if value is not None}
    status, data, _ = await send(sandbox, "PUT", put_path(), json.dumps(body).encode())
    assert status == 400
    assert data["is_success"] is False and data["error_code"] == code and data["error_message"]


async def test_not_json_and_oversized_bodies(sandbox: RunningSandbox) -> None:
    status, data, _ = await send(sandbox, "PUT", put_path(), b"[1, 2]")
    assert (status, data["error_code"]) == (400, "ModelArts.0101")
    with pytest.warns(ResourceWarning):  # aiohttp's advice for large bodies; one is what we need
        status, data, _ = await send(sandbox, "PUT", put_path(), b" " * (12 * 1024 * 1024 + 1))
    assert (status, data["error_code"]) == (413, "APIGW.0201")


async def test_unknown_paths_and_configs(sandbox: RunningSandbox) -> None:
    status, data, _ = await send(sandbox, "GET", f"/v1/{PROJECT}/training-jobs")
    assert (status, data["error_code"]) == (404, "APIGW.0101")
    status, data, _ = await send(sandbox, "GET", put_path("never-stored"))
    assert (status, data["is_success"], data["error_code"]) == (404, False, "ModelArts.0102")


async def test_injected_faults(sandbox_factory: Any) -> None:
    async with sandbox_factory(fail_rate=1.0) as failing:
        status, data, _ = await send(failing, "PUT", put_path(), json.dumps(BODY).encode())
        assert (status, data["error_code"]) == (503, "ModelArts.0010")
    async with sandbox_factory(throttle_rps=2) as throttled:
        answers = [await send(throttled, "GET", put_path()) for _ in range(3)]
        status, data, headers = answers[2]
        assert [a[0] for a in answers[:2]] == [404, 404]
        assert (status, data["error_code"]) == (429, "APIGW.0308")
        assert "ratelimit" in data["error_msg"] and int(headers["Retry-After"]) >= 1
    async with sandbox_factory(latency_ms=300) as slow:
        import time

        started = time.monotonic()
        await send(slow, "GET", put_path())
        assert time.monotonic() - started >= 0.3
