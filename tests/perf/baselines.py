"""What a user would otherwise write: the loops batchcfg is measured against.

``python -m tests.perf.baselines aiohttp|threads URL PROJECT N CONCURRENCY``: N PUTs of the same
body a batchcfg row sends, N different config names, at most CONCURRENCY in flight.
"""

from __future__ import annotations

import asyncio
import sys
from concurrent.futures import ThreadPoolExecutor

BODY = (b'{"config_desc":"nightly sweep config","worker_server_num":2,"app_url":"/ml-code/app/",'
        b'"boot_file_url":"/ml-code/app/train.py","parameter":[{"label":"learning_rate","value":"0.01"}],'
        b'"spec_id":1,"data_url":"/ml-data/set/","engine_id":1}')
HEADERS = {"Content-Type": "application/json", "X-Auth-Token": "bench-token"}


async def bare_aiohttp(url: str, project: str, count: int, concurrency: int) -> None:
    import aiohttp

    gate = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def put(index: int) -> None:
            async with gate:
                async with session.put(f"{url}/v1/{project}/training-job-configs/job-{index}", data=BODY,
                                       headers=HEADERS) as response:
                    await response.read()

        await asyncio.gather(*(put(i) for i in range(count)))


def requests_threads(url: str, project: str, count: int, concurrency: int) -> None:
    import requests

    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_connections=concurrency,
                                                           pool_maxsize=concurrency))

    def put(index: int) -> None:
        session.put(f"{url}/v1/{project}/training-job-configs/job-{index}", data=BODY,
                    headers=HEADERS, timeout=30).content

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(put, range(count)))


if __name__ == "__main__":
    kind, url, project, count, concurrency = sys.argv[1:6]
    if kind == "aiohttp":
        asyncio.run(bare_aiohttp(url, project, int(count), int(concurrency)))
    else:
        requests_threads(url, project, int(count), int(concurrency))
