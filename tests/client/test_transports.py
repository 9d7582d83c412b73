"""The transports over a byte stream that is not a socket: a ``socat`` process's stdin/stdout.

That is the shape of the ssh transport to come (issue 13: our protocol over ``ssh``'s pipes), so
these tests hold the seams to it: the trio client runs over any ``trio.abc.Stream``
(``client_over``), the asyncio client over any asyncio streams (its ``client_over``), the
blocking transport over any ``BlockingStream`` (its ``connect``), turn lock, deadlines and
reconnecting included. Nothing here is a public API.
"""

from __future__ import annotations

import asyncio
import os
import select
import shutil
import subprocess
import time
from typing import Any

import pytest
import trio
from helpers import TIMEOUT, DemoProcess

from jrpc_unix import ConnectionClosedError
from jrpc_unix._client.aio_client import client_over as asyncio_client_over
from jrpc_unix._client.blocking_io import BlockingTransport
from jrpc_unix._client.trio_client import client_over
from jrpc_unix._wire.conversation import Conversation

SOCAT = shutil.which("socat")
pytestmark = pytest.mark.skipif(SOCAT is None, reason="socat is not installed")


class SocatStream:
    """A BlockingStream over a ``socat - UNIX-CONNECT:PATH`` process (a test's stand-in for ssh)."""

    def __init__(self, address: str) -> None:
        assert SOCAT is not None
        self.proc = subprocess.Popen(
            [SOCAT, "-", f"UNIX-CONNECT:{address}"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        os.set_blocking(self.stdout, False)

    @classmethod
    def connect(cls, address: str, deadline: float | None) -> SocatStream:
        return cls(address)

    def send_all(self, data: bytes, deadline: float | None) -> None:
        while data:  # a pipe takes 64 KiB before it blocks: plenty for these tests
            data = data[os.write(self.stdin, data) :]

    def wait_readable(self, deadline: float | None) -> bool:
        left = None if deadline is None else max(deadline - time.monotonic(), 0)
        return bool(select.select([self.stdout], [], [], left)[0])

    def receive_some(self) -> bytes:
        return os.read(self.stdout, 65536)

    def still_open(self) -> bool:
        return self.proc.poll() is None

    def interrupt(self) -> None:
        self.proc.kill()

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(TIMEOUT)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


def test_the_blocking_transport_over_pipes_calls_waits_and_reconnects(shared_demo: DemoProcess) -> None:
    conv = Conversation()
    transport = BlockingTransport(shared_demo.path, conv, connect=SocatStream.connect)
    try:
        assert transport.exchange(lambda: conv.call("subtract", [42, 23]), TIMEOUT).result() == 19
        transport.exchange(conv.subscribe_progress, TIMEOUT)
        seen: list[Any] = []
        build = lambda: conv.call("work", [3, 0], progress=lambda *r: seen.append(r))  # noqa: E731
        exchange = transport.exchange(build, TIMEOUT)
        assert exchange.result() == {"steps": 3}
        assert [done for done, _, _ in seen] == [1, 2, 3]
        stream = transport._stream
        assert isinstance(stream, SocatStream)
        stream.proc.kill()  # the pipe's far end is gone, as when ssh exits
        stream.proc.wait(TIMEOUT)
        assert transport.exchange(lambda: conv.call("ping"), TIMEOUT).result() == "pong"
        assert transport._stream is not stream, "reconnected"
    finally:
        transport.close()
    with pytest.raises(ConnectionClosedError, match=r"^the client for .* is closed$"):
        transport.exchange(lambda: conv.call("ping"), TIMEOUT)


async def test_the_trio_client_over_pipes(shared_demo: DemoProcess) -> None:
    assert SOCAT is not None
    command = [SOCAT, "-", f"UNIX-CONNECT:{shared_demo.path}"]
    proc = await trio.lowlevel.open_process(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None
    assert proc.stdout is not None
    async with client_over("socat", trio.StapledStream(proc.stdin, proc.stdout)) as client:
        assert await client.call("subtract", 42, 23) == 19
        seen: list[Any] = []
        assert await client.call("work", 3, 0, progress=lambda *r: seen.append(r)) == {"steps": 3}
        assert [done for done, _, _ in seen] == [1, 2, 3]
        async with client.subscribe("config") as sub:
            await client.notify("config.set", "over", "pipes")
            assert await anext(sub) == {"key": "over", "value": "pipes", "previous": None}
    assert await proc.wait() == 0, "socat saw the stream closed and ended"


def test_the_asyncio_transport_over_pipes_calls_subscribes_and_sees_the_end(shared_demo: DemoProcess) -> None:
    async def main() -> None:
        assert SOCAT is not None
        proc = await asyncio.create_subprocess_exec(
            SOCAT, "-", f"UNIX-CONNECT:{shared_demo.path}", stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert proc.stdin is not None
        assert proc.stdout is not None
        async with asyncio.timeout(TIMEOUT):
            async with asyncio_client_over(shared_demo.path, proc.stdout, proc.stdin) as client:
                assert await client.call("subtract", 42, 23) == 19
                seen: list[Any] = []
                assert await client.call("work", 2, 0, progress=lambda *r: seen.append(r)) == {"steps": 2}
                assert seen == [(1, 2, "step 1 of 2"), (2, 2, "step 2 of 2")]
                call = asyncio.create_task(client.call("sleep", 5))
                await asyncio.sleep(0)  # the call runs up to its wait: its request is written
                proc.kill()  # the pipe's far end goes: the waiting caller learns it
                with pytest.raises(
                    ConnectionClosedError, match=r"closed the connection before answering 'sleep'$"
                ):
                    await call
            await proc.wait()

    asyncio.run(main())
