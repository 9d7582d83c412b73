"""What a user would write: asyncio streams and jsonrpcserver's default ``dispatch``.

One line in, ``dispatch`` (jsonschema validation, stdlib json), one line out, ``drain`` after
each answer. Methods: ``ping``, ``echo(msg)``, ``config.set(key, value)``, ``config.get(key)``
and ``stats`` (how many ``config.set`` ran, so the harness can prove none was lost).

    python benchmarks/naive_asyncio.py SOCKET_PATH
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import warnings
from typing import Any

with warnings.catch_warnings():  # jsonrpcserver 5 uses a deprecated importlib API at import
    warnings.simplefilter("ignore", DeprecationWarning)
    from jsonrpcserver import Result, Success, dispatch, method

config: dict[str, Any] = {}
applied = 0  # config.set calls and notifications run


@method
def ping() -> Result:
    return Success("pong")


@method
def echo(msg: Any) -> Result:
    return Success(msg)


@method(name="config.set")
def config_set(key: str, value: Any) -> Result:
    global applied
    applied += 1
    previous = config.get(key)
    config[key] = value
    return Success(previous)


@method(name="config.get")
def config_get(key: str) -> Result:
    return Success(config.get(key))


@method
def stats() -> Result:
    return Success({"notifications": applied})


async def handle_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer each line until the peer closes."""
    try:
        while line := await reader.readline():
            if response := dispatch(line.decode()):
                writer.write(response.encode() + b"\n")
                await writer.drain()
    except (ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def main(path: str) -> None:
    server = await asyncio.start_unix_server(handle_client, path, backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: naive_asyncio.py SOCKET_PATH")
    with contextlib.suppress(FileNotFoundError):  # a stale socket file from an earlier run
        os.unlink(sys.argv[1])
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(sys.argv[1]))
