"""What a user would otherwise write: the loops batchcfg is measured against.

``python -m tests.perf.baselines KIND URL PROJECT N CONCURRENCY [OUTPUT]``, at most CONCURRENCY in
flight, N different config names (``job-0000000`` ...):

- ``aiohttp``: N PUTs of the body a batchcfg row sends;
- ``aiohttp-read-write``: for each config a GET, its JSON parsed, then that PUT (what a default
  ``apply`` does, without its backups, checks and report);
- ``aiohttp-export``: List pages of 1,000, a GET of each config, and the rows written to OUTPUT as
  CSV (what ``export`` does).
"""

from __future__ import annotations

import asyncio
import csv
import json
import sys

BODY = (b'{"config_desc":"nightly sweep config","worker_server_num":2,"app_url":"/ml-code/app/",'
        b'"boot_file_url":"/ml-code/app/train.py","parameter":[{"label":"learning_rate","value":"0.01"}],'
        b'"spec_id":1,"data_url":"/ml-data/set/","engine_id":1}')
HEADERS = {"Content-Type": "application/json", "X-Auth-Token": "bench-token"}


def name(index: int) -> str:
    return f"job-{index:07d}"


async def bare_aiohttp(url: str, project: str, count: int, concurrency: int, read_first: bool) -> None:
    import aiohttp

    gate = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def put(index: int) -> None:
            path = f"{url}/v1/{project}/training-job-configs/{name(index)}"
            async with gate:
                if read_first:
                    async with session.get(path, headers=HEADERS) as response:
                        json.loads(await response.read())
                async with session.put(path, data=BODY, headers=HEADERS) as response:
                    await response.read()

        await asyncio.gather(*(put(i) for i in range(count)))


async def bare_export(url: str, project: str, count: int, concurrency: int, output: str) -> None:
    import aiohttp

    gate = asyncio.Semaphore(concurrency)
    base = f"{url}/v1/{project}/training-job-configs"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        names: list[str] = []
        page = 1
        while len(names) < count:
            async with session.get(base, params={"per_page": "1000", "page": str(page)}, headers=HEADERS) as response:
                names += [c["config_name"] for c in json.loads(await response.read())["configs"]]
            page += 1

        async def read(config: str) -> dict[str, object]:
            async with gate:
                async with session.get(f"{base}/{config}", headers=HEADERS) as response:
                    return dict(json.loads(await response.read()))

        configs = await asyncio.gather(*(read(config) for config in sorted(names)))
    columns = ["config_name", "config_desc", "worker_server_num", "spec_id", "engine_id", "app_url", "boot_file_url",
               "data_url", "parameter", "train_url", "log_url"]
    with open(output, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for config in configs:
            writer.writerow(["" if config.get(column) is None else config[column] if isinstance(config.get(column), str)
                             else json.dumps(config[column]) for column in columns])


if __name__ == "__main__":
    kind, url, project, count, concurrency = sys.argv[1:6]
    if kind in ("aiohttp", "aiohttp-read-write"):
        asyncio.run(bare_aiohttp(url, project, int(count), int(concurrency), read_first=kind != "aiohttp"))
    elif kind == "aiohttp-export":
        asyncio.run(bare_export(url, project, int(count), int(concurrency), sys.argv[6]))
    else:
        sys.exit(f"unknown baseline {kind!r}")
