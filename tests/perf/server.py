"""A minimal, fast HTTP/1.1 server for the benchmark that answers as the API does, with as little
work as it can: raw asyncio, no framework, so that the server is not what limits a client.

- ``PUT .../training-job-configs/{name}``: keeps the body, answers ``{"is_success": true}``;
- ``GET .../training-job-configs/{name}``: the config's Details (``config_name`` and the body last
  PUT, else a default config);
- ``GET .../training-job-configs?per_page=N&page=P``: a List page of the names ``job-0000000`` to
  ``job-{COUNT - 1}`` (``config_total_count`` COUNT);
- anything else: ``{"is_success": true}``.

Run: ``python -m tests.perf.server LOG_PATH [LATENCY_MS [COUNT]]``; it prints its port, then serves
until SIGTERM or SIGINT, and then writes the arrival times (``time.monotonic()``, one per line) to
LOG_PATH.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from urllib.parse import parse_qs

OK = b'{"is_success":true}'
DEFAULT = (b'"worker_server_num":1,"app_url":"/ml-code/app/","boot_file_url":"/ml-code/app/train.py",'
           b'"spec_id":1,"data_url":"/ml-data/set/","engine_id":1}')
COLLECTION = b"/training-job-configs"


def response(body: bytes) -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Request-Id: bench\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


class Handler(asyncio.Protocol):
    arrivals: list[float] = []
    in_flight = 0
    max_in_flight = 0
    stored: dict[bytes, bytes] = {}
    count = 0

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].split(b"\r\n")
            length = 0
            for line in head[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4:end + 4 + length]
            self.buffer = self.buffer[end + 4 + length:]
            Handler.arrivals.append(time.monotonic())
            Handler.in_flight += 1
            Handler.max_in_flight = max(Handler.max_in_flight, Handler.in_flight)
            answer = response(self.answer(head[0], body))
            if self.latency:
                asyncio.get_running_loop().call_later(self.latency, self.respond, answer)
            else:
                self.respond(answer)

    def answer(self, request_line: bytes, body: bytes) -> bytes:
        method, target, _ = request_line.split(b" ", 2)
        path, _, query = target.partition(b"?")
        if path.endswith(COLLECTION) and method == b"GET":
            return self.listing(query)
        name = path.rsplit(b"/", 1)[-1]
        if method == b"PUT":
            Handler.stored[name] = body
            return OK
        if method == b"GET" and b"/training-job-configs/" in path:
            stored = Handler.stored.get(name)
            return b'{"is_success":true,"config_name":"' + name + b'",' + (stored[1:] if stored else DEFAULT)
        return OK

    def listing(self, query: bytes) -> bytes:
        fields = parse_qs(query.decode())
        per_page, page = int(fields.get("per_page", ["10"])[0]), int(fields.get("page", ["1"])[0])
        first = (page - 1) * per_page
        names = b",".join(b'{"config_name":"job-%07d"}' % i for i in range(first, min(first + per_page, Handler.count)))
        return b'{"is_success":true,"config_total_count":%d,"configs":[%s]}' % (Handler.count, names)

    def respond(self, answer: bytes) -> None:
        Handler.in_flight -= 1
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(answer)


async def main(log_path: str, latency_ms: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Handler(latency_ms / 1000), "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    server.close()
    with open(log_path, "w") as handle:
        handle.write(f"# max_in_flight {Handler.max_in_flight}\n")
        handle.writelines(f"{t!r}\n" for t in Handler.arrivals)


if __name__ == "__main__":
    Handler.count = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    asyncio.run(main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 0.0))
