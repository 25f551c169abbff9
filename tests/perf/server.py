"""A minimal, fast HTTP/1.1 server for the benchmark: answers every request with
``200 {"is_success": true}``, after an optional delay, and records when each request arrived.

Run: ``python -m tests.perf.server LOG_PATH [LATENCY_MS]``; it prints its port, then serves until
SIGTERM or SIGINT, and then writes the arrival times (``time.monotonic()``, one per line) to
LOG_PATH. Raw asyncio, no framework: the server must not be what limits a client.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time

RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Request-Id: bench\r\n"
            b"Content-Length: 19\r\n\r\n{\"is_success\":true}")


class Handler(asyncio.Protocol):
    arrivals: list[float] = []
    in_flight = 0
    max_in_flight = 0

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
            length = 0
            for line in self.buffer[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length:]
            Handler.arrivals.append(time.monotonic())
            Handler.in_flight += 1
            Handler.max_in_flight = max(Handler.max_in_flight, Handler.in_flight)
            if self.latency:
                asyncio.get_running_loop().call_later(self.latency, self.respond)
            else:
                self.respond()

    def respond(self) -> None:
        Handler.in_flight -= 1
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(RESPONSE)


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
    asyncio.run(main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 0.0))
