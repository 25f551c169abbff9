"""The sandbox is faithful: paths, authentication, error bodies, stored configs, injected faults."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote, urlencode

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
               headers: dict[str, str] | None = None, auth: Any = None,
               query: dict[str, str] | None = None) -> tuple[int, dict[str, Any], Any]:
    """One raw request; signs with ``auth`` (ours) unless ``headers`` are given."""
    host = URL(sandbox.endpoint).host_port_subcomponent
    pairs = sorted((query or {}).items())
    if headers is None:
        headers = (auth or sandbox.signer()).headers(method, host, path, body, pairs)
    url = sandbox.endpoint + path + ("?" + urlencode(pairs, quote_via=quote, safe="~") if pairs else "")
    async with aiohttp.ClientSession() as session:
        async with session.request(method, URL(url, encoded=True), data=body or None,
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


# The rest of the API family: List, Create, Delete; and what a method the API lacks gets.

CONFIGS = f"/v1/{PROJECT}/training-job-configs"


async def list_configs(sandbox: RunningSandbox, **query: str) -> tuple[int, dict[str, Any]]:
    status, data, _ = await send(sandbox, "GET", CONFIGS, query=query)
    return status, data


async def create(sandbox: RunningSandbox, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    status, data, _ = await send(sandbox, "POST", CONFIGS, json.dumps(body, ensure_ascii=False).encode())
    return status, data


async def test_list_pages_through_all_configs(sandbox_factory: Any) -> None:
    async with sandbox_factory() as sandbox:
        names = [f"cfg-{i:04d}" for i in range(2500)]
        for name in names:
            sandbox.seed(name, BODY)
        pages = [await list_configs(sandbox, per_page="1000", page=str(page)) for page in (1, 2, 3, 4)]
        assert [status for status, _ in pages] == [200] * 4
        assert [len(data["configs"]) for _, data in pages] == [1000, 1000, 500, 0], "page 4 is past the end"
        assert {data["config_total_count"] for _, data in pages} == {2500}, "every matching config, on every page"
        assert all(data["is_success"] is True for _, data in pages)
        listed = [item["config_name"] for _, data in pages for item in data["configs"]]
        assert listed == sorted(names, reverse=True), "by default: by config_name, descending; no repeats"
        status, data = await list_configs(sandbox)
        assert (status, len(data["configs"]), data["configs"][0]["config_name"]) == (200, 10, "cfg-2499")
        assert sandbox.state.operations["list"] == 5


async def test_list_items_are_the_docs_summary(sandbox: RunningSandbox) -> None:
    status, data = await list_configs(sandbox)
    assert (status, data["config_total_count"]) == (200, 1)
    item = data["configs"][0]
    assert list(item) == ["config_name", "config_desc", "create_time", "engine_type", "engine_name", "engine_id",
                          "engine_version", "user_image_url", "user_command"]
    details = (await send(sandbox, "GET", put_path()))[1]
    assert item == {key: details[key] for key in item}, "the same values as Details"


async def test_list_sorts_and_searches(sandbox: RunningSandbox) -> None:
    for number, (name, desc) in enumerate([("resnet-a", "b"), ("ResNet-b", "c"), ("vgg", "a")]):
        sandbox.seed(name, {**BODY, "config_desc": desc})
        sandbox.state.created[(PROJECT, name)] = 1_700_000_000_000 + number  # created in this order
    sandbox.state.created[(PROJECT, "cfg-1")] = 1_600_000_000_000

    async def names(**query: str) -> list[str]:
        status, data = await list_configs(sandbox, **query)
        assert status == 200
        return [item["config_name"] for item in data["configs"]]

    assert await names(sortBy="create_time", order="asc") == ["cfg-1", "resnet-a", "ResNet-b", "vgg"]
    assert await names(sortBy="create_time") == ["vgg", "ResNet-b", "resnet-a", "cfg-1"], "desc by default"
    assert await names(sortBy="config_desc", order="asc") == ["cfg-1", "vgg", "resnet-a", "ResNet-b"], "no desc first"
    assert await names(sortBy="config_name", order="asc") == ["ResNet-b", "cfg-1", "resnet-a", "vgg"]
    assert await names(search_content="NET", order="asc") == ["ResNet-b", "resnet-a"], "a name substring, any case"
    status, data = await list_configs(sandbox, search_content="net", per_page="1")
    assert (status, data["config_total_count"], len(data["configs"])) == (200, 2, 1)
    assert await names(search_content="nothing-like-it") == []
    assert await names(config_type="custom", order="asc") == ["ResNet-b", "cfg-1", "resnet-a", "vgg"]
    status, data = await list_configs(sandbox, config_type="sample")
    assert (status, data) == (200, {"is_success": True, "config_total_count": 0, "configs": []})
    assert await names(per_page="", page="") == await names(), "an empty value is the default"


@pytest.mark.parametrize("query", [{"per_page": "0"}, {"per_page": "1001"}, {"per_page": "ten"},
                                   {"per_page": "-1"}, {"page": "0"}, {"page": "1.5"}, {"sortBy": "status"},
                                   {"order": "up"}, {"config_type": "builtin"}])
async def test_bad_list_parameters_are_a_400(sandbox: RunningSandbox, query: dict[str, str]) -> None:
    status, data = await list_configs(sandbox, **query)
    assert (status, data["is_success"], data["error_code"]) == (400, False, "ModelArts.0104")
    assert next(iter(query)) in data["error_message"]


async def test_create_then_details_list_and_a_duplicate(sandbox: RunningSandbox) -> None:
    assert await create(sandbox, {"config_name": "new_Config-2", **BODY}) == (200, {"is_success": True})
    status, data, _ = await send(sandbox, "GET", put_path("new_Config-2"))
    assert (status, data["config_name"], data["config_desc"], data["worker_server_num"]) == (
        200, "new_Config-2", BODY["config_desc"], 2)
    assert isinstance(data["create_time"], int) and data["create_time"] > 1_600_000_000_000
    assert sandbox.state.configs[(PROJECT, "new_Config-2")] == BODY, "stored without config_name"
    assert [create[1:] for create in sandbox.state.creates] == [(PROJECT, "new_Config-2")]
    assert sandbox.state.puts == [], "a create is not a put"
    status, listed = await list_configs(sandbox)
    assert [item["config_name"] for item in listed["configs"]] == ["new_Config-2", "cfg-1"]

    for name in ("new_Config-2", "cfg-1"):
        status, data = await create(sandbox, {"config_name": name, **BODY, "worker_server_num": 1})
        assert (status, data["is_success"], data["error_code"]) == (400, False, "ModelArts.0103")
        assert name in data["error_message"]
    assert sandbox.state.configs[(PROJECT, "cfg-1")]["worker_server_num"] == 2, "the duplicate changed nothing"
    assert sandbox.state.methods["POST"] == 3 and sandbox.state.operations["create"] == 3


@pytest.mark.parametrize("body, code", [
    ({**BODY}, "ModelArts.0104"),                                  # no config_name
    ({"config_name": "", **BODY}, "ModelArts.0104"),
    ({"config_name": "a b", **BODY}, "ModelArts.0104"),
    ({"config_name": "x" * 65, **BODY}, "ModelArts.0104"),
    ({"config_name": 7, **BODY}, "ModelArts.0104"),
    ({"config_name": "ok", **BODY, "worker_server_num": 0}, "ModelArts.0104"),
    ({"config_name": "ok", **BODY, "engine_id": "1"}, "ModelArts.0104"),  # Long in the docs: not a string
    ({"config_name": "ok", **BODY, "data_url": "obs://bucket/data/"}, "ModelArts.2791"),
    ({"config_name": "ok", **{k: v for k, v in BODY.items() if k != "spec_id"}}, "ModelArts.0104"),
])
async def test_create_checks_bodies_as_modify_does(sandbox: RunningSandbox, body: dict[str, Any],
                                                   code: str) -> None:
    status, data = await create(sandbox, body)
    assert (status, data["is_success"], data["error_code"]) == (400, False, code)
    assert sandbox.state.creates == [] and set(sandbox.state.configs) == {(PROJECT, "cfg-1")}


async def test_create_needs_a_json_object(sandbox: RunningSandbox) -> None:
    status, data, _ = await send(sandbox, "POST", CONFIGS, b'["config_name"]')
    assert (status, data["error_code"]) == (400, "ModelArts.0101")


async def test_delete_then_404(sandbox: RunningSandbox) -> None:
    assert (await send(sandbox, "PUT", put_path(), json.dumps(BODY).encode()))[0] == 200
    status, data, headers = await send(sandbox, "DELETE", put_path())
    assert (status, data) == (200, {"is_success": True}) and headers["X-Request-Id"]
    assert [delete[1:] for delete in sandbox.state.deletes] == [(PROJECT, "cfg-1")]
    for method in ("GET", "PUT", "DELETE"):
        status, data, _ = await send(sandbox, method, put_path(), json.dumps(BODY).encode() if method == "PUT" else b"")
        assert (status, data["is_success"], data["error_code"]) == (404, False, "ModelArts.0102")
    assert (await list_configs(sandbox))[1]["config_total_count"] == 0
    puts: Any = (await send(sandbox, "GET", "/_sandbox/puts"))[1]
    assert [(put["config_name"], put["body"]) for put in puts] == [("cfg-1", None)], "a deleted config's put"
    assert await create(sandbox, {"config_name": "cfg-1", **BODY}) == (200, {"is_success": True})
    assert sandbox.state.methods["DELETE"] == 2 and sandbox.state.operations["delete"] == 2


@pytest.mark.parametrize("method, path", [
    ("POST", put_path()), ("PATCH", put_path()), ("PATCH", CONFIGS), ("PUT", CONFIGS), ("DELETE", CONFIGS),
    ("POST", f"/v1/{PROJECT}/job/resource-specs"), ("DELETE", f"/v1/{PROJECT}/job/ai-engines"),
])
async def test_a_method_the_api_lacks_gets_a_modelarts_405(sandbox: RunningSandbox, method: str, path: str) -> None:
    status, data, headers = await send(sandbox, method, path, json.dumps({"config_name": "x", **BODY}).encode())
    assert (status, data["is_success"], data["error_code"]) == (405, False, "ModelArts.0105")
    assert method in data["error_message"] and "APIGW" not in json.dumps(data)
    assert method not in headers["Allow"] and headers["X-Request-Id"]
    assert set(sandbox.state.configs) == {(PROJECT, "cfg-1")} and sandbox.state.puts == []


@pytest.mark.parametrize("path", [f"/v1/{PROJECT}/training-job-configs/cfg-1/x", f"/v1/{PROJECT}/job/x",
                                  f"/v1/{PROJECT}/job", f"/v1/{PROJECT}/training-job-configs/",
                                  f"/v2/{PROJECT}/training-job-configs", "/v1/not-a-project/training-job-configs"])
async def test_paths_that_are_not_the_apis_stay_the_gateways_404(sandbox: RunningSandbox, path: str) -> None:
    for method in ("GET", "POST", "PATCH"):
        status, data, _ = await send(sandbox, method, path)
        assert (status, data["error_code"]) == (404, "APIGW.0101")


@pytest.mark.parametrize("method, path, body", [
    ("GET", CONFIGS, b""), ("POST", CONFIGS, json.dumps({"config_name": "new", **BODY}).encode()),
    ("DELETE", put_path(), b""), ("POST", put_path(), b""),
])
async def test_the_new_calls_need_credentials_too(sandbox: RunningSandbox, method: str, path: str,
                                                  body: bytes) -> None:
    status, data, _ = await send(sandbox, method, path, body, headers={})
    assert (status, data["error_code"]) == (401, "APIGW.0301")
    status, data, _ = await send(sandbox, method, path, body, auth=TokenAuth("wrong-token"))
    assert (status, data["error_code"]) == (401, "APIGW.0301")
    status, data, _ = await send(sandbox, method, path.replace(PROJECT, "0" * 32), body)
    assert (status, data["error_code"]) == (403, "APIGW.0302")
    assert set(sandbox.state.configs) == {(PROJECT, "cfg-1")} and not sandbox.state.operations


async def test_faults_apply_to_the_new_calls(sandbox_factory: Any) -> None:
    async with sandbox_factory(fail_rate=1.0) as failing:
        for method, path in (("GET", CONFIGS), ("POST", CONFIGS), ("DELETE", put_path())):
            status, data, _ = await send(failing, method, path, json.dumps({"config_name": "n", **BODY}).encode())
            assert (status, data["error_code"]) == (503, "ModelArts.0010")
    async with sandbox_factory(throttle_rps=1) as throttled:
        answers = [(await send(throttled, "GET", CONFIGS))[0], (await send(throttled, "POST", CONFIGS))[0]]
        assert answers == [200, 429]
