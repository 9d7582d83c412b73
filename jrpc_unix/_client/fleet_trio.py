"""Fan-out with the trio client: :class:`AsyncFleet`, the twin of :class:`~.fleet.Fleet`."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from .._errors import JrpcUnixError, RpcTimeoutError
from .fleet import FleetSettings, Outcome
from .trio_client import AsyncClient, open_client

__all__ = ["AsyncFleet"]


class AsyncFleet(FleetSettings):
    """Many servers, asked the same thing by trio tasks, ``parallel`` at most at once.

    ::

        fleet = AsyncFleet(expand_targets("/run/app[1-50].sock"), parallel=16)
        outcomes = await fleet.call("ping", each=print)   # print: each outcome as it comes

    ``timeout`` bounds each target (connecting included): an RpcTimeoutError outcome past it.
    """

    async def call(
        self, method: str, /, *args: Any, each: Callable[[Outcome], None] | None = None, **kwargs: Any
    ) -> list[Outcome]:
        """``client.call(method, ...)`` on every target; the outcomes in completion order."""

        async def op(client: AsyncClient) -> Any:
            return await client.call(method, *args, **kwargs)

        return await self.run(op, each=each)

    async def run(
        self, op: Callable[[AsyncClient], Awaitable[Any]], *, each: Callable[[Outcome], None] | None = None
    ) -> list[Outcome]:
        """``await op(client)`` for every target, each with its own client; ``each(outcome)`` as
        each one ends. A fleet runs once."""
        plan, outcomes = self._plan, list[Outcome]()
        changed = trio.Event()

        async def work(target: str) -> None:
            nonlocal changed
            start = trio.current_time()
            result: object = None
            error: JrpcUnixError | None = None
            try:
                with trio.fail_after(math.inf if self.timeout is None else self.timeout):
                    async with open_client(target, connect_timeout=self.timeout, log=self.log) as client:
                        result = await op(client)
            except trio.TooSlowError:
                error = RpcTimeoutError(f"{target}: timed out after {self.timeout:g} s")
            except JrpcUnixError as exc:
                error = exc
            outcome = Outcome(target, result, error, (trio.current_time() - start) * 1000)
            plan.done(outcome)
            outcomes.append(outcome)
            if each is not None:
                each(outcome)
            changed.set()
            changed = trio.Event()

        async with trio.open_nursery() as nursery:
            while True:
                while plan.running < self.parallel and (target := plan.next()) is not None:
                    nursery.start_soon(work, target)
                if not plan.running:
                    break
                await changed.wait()
        return outcomes
