"""Forward Unix sockets on the host to TCP ports inside the test server's private network.

Run (by :mod:`testserver`) as::

    nsenter --net=/proc/<container PID 1>/ns/net -- python forward.py SOCK=HOST:PORT [SOCK=HOST:PORT ...]

Only the network namespace is entered, so each ``SOCK`` path is on the host's filesystem
while every connection it accepts is opened to ``HOST:PORT`` inside the container. The test
process then talks to the server's API (httpx over a Unix socket) and Redis (redis-py
``unix_socket_path``) as a client on the server itself would. A connection whose upstream
refuses is closed at once, so the client sees a broken connection, as it would on the
server. Prints ``ready`` once every socket listens; exits on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


def _handler(host: str, port: int):  # type: ignore[no-untyped-def]
    async def handle(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        try:
            u_reader, u_writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
        except (OSError, TimeoutError):
            c_writer.close()
            return
        await asyncio.gather(_pipe(c_reader, u_writer), _pipe(u_reader, c_writer))

    return handle


async def main(specs: list[str]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    servers = []
    for spec in specs:
        path, target = spec.split("=", 1)
        host, port = target.rsplit(":", 1)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        servers.append(await asyncio.start_unix_server(_handler(host, int(port)), path=path))
    print("ready", flush=True)
    await stop.wait()
    for s in servers:
        s.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
