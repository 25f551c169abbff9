"""The one public client of this API family, ``otcextensions`` (an openstacksdk plugin), works
against the sandbox for all five calls: List, Create, Details, Modify, Delete.

Where the client and Huawei's docs disagree, the sandbox follows the docs; the tests below show
what that means for a user of the client:

- Modify: its ``update_training_job_config(name, **attrs)`` sends only the fields passed. The API's
  PUT replaces the config's writable fields, so a partial update is refused (``worker_server_num``
  and ``spec_id`` are required) and a whole one replaces everything, dropping what it leaves out.
- It sends values as given: ``engine_id="1"`` goes out as a string. The docs type the ID fields
  Long, so the sandbox refuses strings (400 ``ModelArts.0104``); pass integers.
- List: it renames ``limit``/``offset``/``sort_by`` to ``per_page``/``page``/``sortBy``. ``offset``
  is therefore a page number (from 1), not a count of items to skip; and it never asks for a
  second page by itself (the items carry no id to page on): pass ``limit`` and ``offset``.
- It ignores ``is_success``: a 200 whose body said ``"is_success": false`` would pass as done.
  (The sandbox, like the API, answers failures with 4xx/5xx.)
- Create: the docs answer ``{"is_success": true}`` alone; the client keeps the attributes it sent.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from openstack import connection, exceptions
from otcextensions.sdk import register_otc_extensions

from batchcfg.sandbox import RunningSandbox, SandboxConfig, serve

from .conftest import PROJECT, seed

pytestmark = [
    # openstacksdk warns about its own internals, not about how it is used here: every Connection
    # (an always-non-empty influxdb config), every call (its proxy passes service_type to itself,
    # its Resource calls its own deprecated _compute_attributes) and otcextensions' error mapping
    # (it passes http_status). Only these four, by message and category.
    pytest.mark.filterwarnings("ignore:Support for InfluxDB requires:openstack.warnings.RemovedInSDK60Warning"),
    pytest.mark.filterwarnings("ignore:The 'service_type' parameter:openstack.warnings.RemovedInSDK50Warning"),
    pytest.mark.filterwarnings("ignore:The _compute_attributes method:openstack.warnings.RemovedInSDK50Warning"),
    pytest.mark.filterwarnings("ignore:The 'http_status' parameter:openstack.warnings.RemovedInSDK50Warning"),
]

WHOLE = {"worker_server_num": 1, "spec_id": 1, "model_id": 7, "data_url": "/bucket/data/",
         "parameter": [{"label": "lr", "value": "0.01"}], "config_desc": "made by otcextensions"}


@pytest.fixture
def threaded_sandbox() -> Iterator[RunningSandbox]:
    """A sandbox holding ``cfg-1``, serving from its own thread and event loop: openstacksdk is
    synchronous, so the test's thread makes the calls."""
    started = threading.Event()
    held: dict[str, Any] = {}

    async def run() -> None:
        async with serve(SandboxConfig()) as running:
            held.update(sandbox=running, loop=asyncio.get_running_loop(), stop=asyncio.Event())
            started.set()
            await held["stop"].wait()

    thread = threading.Thread(target=asyncio.run, args=(run(),), name="sandbox")
    thread.start()
    assert started.wait(10), "the sandbox did not start"
    try:
        yield seed(held["sandbox"], ["cfg-1"])
    finally:
        held["loop"].call_soon_threadsafe(held["stop"].set)
        thread.join(10)


@pytest.fixture
def modelarts(threaded_sandbox: RunningSandbox) -> Iterator[Any]:
    """otcextensions' ModelArts v1 proxy, with the sandbox's IAM token and no Keystone."""
    endpoint = threaded_sandbox.endpoint
    with connection.Connection(auth_type="admin_token", auth={"endpoint": endpoint, "token": SandboxConfig.token},
                               modelartsv1_endpoint_override=f"{endpoint}/v1/{PROJECT}") as conn:
        register_otc_extensions(conn)  # adds conn.modelartsv1 (and patches openstacksdk's error mapping)
        yield conn.modelartsv1


def error_code(error: exceptions.HttpException) -> str:
    assert error.response is not None
    code: str = error.response.json()["error_code"]
    return code


def test_all_five_calls(modelarts: Any, threaded_sandbox: RunningSandbox) -> None:
    state = threaded_sandbox.state
    assert [c.config_name for c in modelarts.training_job_configs()] == ["cfg-1"]

    created = modelarts.create_training_job_config(config_name="from-otc", **WHOLE)
    assert (created.config_name, created.is_success) == ("from-otc", True)
    assert state.configs[(PROJECT, "from-otc")] == WHOLE, "the body as sent, without config_name"

    fetched = modelarts.get_training_job_config("from-otc")
    assert (fetched.config_name, fetched.worker_server_num) == ("from-otc", 1)
    assert fetched.config_desc == WHOLE["config_desc"]
    assert fetched.created_at == state.created[(PROJECT, "from-otc")] and fetched.engine_name == "TensorFlow"
    assert [(p.label, p.value) for p in fetched.parameter] == [("lr", 0.01)], "numbers shown as numbers, as the docs do"

    changed = {**WHOLE, "worker_server_num": 2, "data_url": "/bucket/other/"}
    del changed["config_desc"]
    modelarts.update_training_job_config("from-otc", **changed)
    assert state.configs[(PROJECT, "from-otc")] == changed, "PUT replaces: the description is gone"
    assert modelarts.get_training_job_config("from-otc").config_desc == ""

    modelarts.delete_training_job_config("from-otc")
    with pytest.raises(exceptions.NotFoundException) as missing:
        modelarts.get_training_job_config("from-otc")
    assert error_code(missing.value) == "ModelArts.0102"
    with pytest.raises(exceptions.NotFoundException):
        modelarts.delete_training_job_config("from-otc")
    modelarts.delete_training_job_config("from-otc", ignore_missing=True)

    assert dict(state.methods) == {"GET": 4, "POST": 1, "PUT": 1, "DELETE": 3}
    assert dict(state.operations) == {"list": 1, "create": 1, "details": 3, "modify": 1, "delete": 3}
    assert [c[2] for c in state.creates] == ["from-otc"] and [d[2] for d in state.deletes] == ["from-otc"]


def test_list_parameters_as_the_client_renames_them(modelarts: Any, threaded_sandbox: RunningSandbox) -> None:
    for number in range(25):
        threaded_sandbox.seed(f"bulk-{number:02d}", WHOLE)
    everything = [c.config_name for c in modelarts.training_job_configs(limit=1000)]
    assert len(everything) == 26 and everything == sorted(everything, reverse=True), "by name, descending"
    # limit -> per_page, offset -> page (a page number), sort_by -> sortBy; no second page unasked
    first = [c.config_name for c in modelarts.training_job_configs(limit=10, sort_by="config_name", order="asc")]
    third = [c.config_name for c in modelarts.training_job_configs(limit=10, offset=3, sort_by="config_name",
                                                                   order="asc")]
    assert first == sorted(everything)[:10] and third == sorted(everything)[20:]
    assert [c.config_name for c in modelarts.training_job_configs(search_content="BULK-1")] == [
        f"bulk-{n}" for n in range(19, 9, -1)]
    assert list(modelarts.training_job_configs(config_type="sample")) == []
    with pytest.raises(exceptions.BadRequestException) as refused:
        list(modelarts.training_job_configs(limit=1001))
    assert error_code(refused.value) == "ModelArts.0104"
    assert threaded_sandbox.state.operations["list"] == 6, "one request per call: never a second page"


def test_where_the_client_and_the_docs_disagree(modelarts: Any, threaded_sandbox: RunningSandbox) -> None:
    stored = dict(threaded_sandbox.state.configs[(PROJECT, "cfg-1")])
    with pytest.raises(exceptions.BadRequestException) as partial:  # only the fields passed: not a whole config
        modelarts.update_training_job_config("cfg-1", config_desc="just this")
    assert error_code(partial.value) == "ModelArts.0104"
    with pytest.raises(exceptions.BadRequestException) as as_string:  # sent unconverted; the docs say Long
        modelarts.update_training_job_config("cfg-1", **{**WHOLE, "engine_id": "1"})
    assert error_code(as_string.value) == "ModelArts.0104"
    assert threaded_sandbox.state.configs[(PROJECT, "cfg-1")] == stored
    modelarts.update_training_job_config("cfg-1", **{**WHOLE, "engine_id": 1})  # integers, as the docs say
    assert threaded_sandbox.state.configs[(PROJECT, "cfg-1")]["engine_id"] == 1

    with pytest.raises(exceptions.BadRequestException) as duplicate:
        modelarts.create_training_job_config(config_name="cfg-1", **WHOLE)
    assert error_code(duplicate.value) == "ModelArts.0103"


def test_a_wrong_token_is_the_gateways_401(threaded_sandbox: RunningSandbox) -> None:
    endpoint = threaded_sandbox.endpoint
    with connection.Connection(auth_type="admin_token", auth={"endpoint": endpoint, "token": "wrong"},
                               modelartsv1_endpoint_override=f"{endpoint}/v1/{PROJECT}") as conn:
        register_otc_extensions(conn)
        with pytest.raises(exceptions.HttpException) as refused:
            list(conn.modelartsv1.training_job_configs())
    assert refused.value.status_code == 401 and error_code(refused.value) == "APIGW.0301"
    assert not threaded_sandbox.state.operations
