"""Fan-out: one operation on many servers, with bounded parallelism, and what each answered.

The shape is Ansible's and ClusterShell's (specs/remote.md, "Fan-out"): targets named one by
one, as node sets (``ssh://web[01-12]/run/app.sock``, zero-padding kept) or in a file; at most
``parallel`` at once; each bounded by ``timeout``; ``max_fail`` stops starting new targets once
that many failed; ``serial`` runs batches of that size and starts no batch after one that had a
failure. Outcomes come in completion order.

:class:`Fleet` runs blocking :class:`~.blocking.Client` operations in threads (standard library
only: the command line uses it); :class:`~.fleet_trio.AsyncFleet` runs trio ones in tasks.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from .._errors import JrpcUnixError, RpcError, TransportError
from .blocking import Client

__all__ = ["MAX_TARGETS", "Fleet", "FleetSettings", "Outcome", "Plan", "expand_targets", "read_targets"]

#: A node set expanding to more than this many targets is refused (a typo, not a fleet).
MAX_TARGETS: Final = 100_000
_R = TypeVar("_R")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one target gave: its ``result``, or the ``error`` raised; ``ms`` it took."""

    target: str
    result: Any = None
    error: JrpcUnixError | None = None
    ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def unreachable(self) -> bool:
        """It could not be asked or did not answer: connect failed, connection lost, timeout."""
        return isinstance(self.error, TransportError)

    def to_json(self) -> dict[str, Any]:
        """``{"target", "result"|"error", "ms"}``; an error is the server's error object, or
        ``{"message", "unreachable": true}`` when the target was not reached."""
        line: dict[str, Any] = {"target": self.target}
        error = self.error
        if isinstance(error, RpcError):
            line["error"] = {"code": error.code, "message": error.message}
            if error.data is not None:
                line["error"]["data"] = error.data
        elif error is not None:
            line["error"] = {"message": str(error), "unreachable": isinstance(error, TransportError)}
        else:
            line["result"] = self.result
        line["ms"] = round(self.ms, 1)
        return line


# -- naming targets ----------------------------------------------------------------------------


def _split_top(text: str) -> list[str]:
    """Split at the commas outside brackets."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += (char == "[") - (char == "]")
        if depth < 0:
            raise ValueError(f"unmatched ']' in {text!r}")
        if char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth:
        raise ValueError(f"unmatched '[' in {text!r}")
    parts.append(text[start:])
    return [part for part in parts if part]


def _expand_one(pattern: str, out: list[str]) -> None:
    head, bracket, rest = pattern.partition("[")
    if not bracket:
        out.append(pattern)
        return
    inner, _, tail = rest.partition("]")
    for item in inner.split(","):
        low, dash, high = item.partition("-")
        if not dash:
            if not item:
                raise ValueError(f"an empty item in [{inner}]")
            values = [item]
        elif low.isdecimal() and high.isdecimal() and int(low) <= int(high):
            width = len(low) if low.startswith("0") else 0
            if len(out) + int(high) - int(low) > MAX_TARGETS:
                raise ValueError(f"[{inner}] names more than {MAX_TARGETS} targets")
            values = [f"{n:0{width}d}" for n in range(int(low), int(high) + 1)]
        else:
            raise ValueError(f"[{inner}]: {item!r} is not a range like 01-12")
        for value in values:
            _expand_one(head + value + tail, out)
            if len(out) > MAX_TARGETS:
                raise ValueError(f"{pattern!r} names more than {MAX_TARGETS} targets")


def expand_targets(spec: str) -> list[str]:
    """The targets ``spec`` names: a comma-separated list of addresses, each maybe a node set
    (``web[01-03,07]`` is web01, web02, web03, web07). A path that exists is taken as it is.
    ValueError says what is wrong."""
    if os.path.exists(spec):
        return [spec]
    out: list[str] = []
    for part in _split_top(spec):
        _expand_one(part.strip(), out)
    if not out:
        raise ValueError(f"{spec!r} names no target")
    return out


def read_targets(path: str) -> list[str]:
    """One address (or node set) a line; blank lines and ``#`` comments skipped. OSError or
    ValueError (naming the line) if it cannot be read."""
    out: list[str] = []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            line = line.partition("#")[0].strip()
            if line:
                try:
                    out += expand_targets(line)
                except ValueError as exc:
                    raise ValueError(f"{path} line {number}: {exc}") from None
    if not out:
        raise ValueError(f"{path} names no target")
    return out


# -- running -----------------------------------------------------------------------------------


class Plan:
    """Which target may start next: the batches of ``serial``, the ``max_fail`` count. Shared by
    the blocking and the trio fleet so both stop alike."""

    def __init__(self, targets: list[str], max_fail: int | None, serial: int | None) -> None:
        if max_fail is not None and max_fail < 1:
            raise ValueError("max_fail must be at least 1")
        if serial is not None and serial < 1:
            raise ValueError("serial must be at least 1")
        self.waiting = list(reversed(targets))
        self.max_fail, self.serial = max_fail, serial
        self.failed = self.running = 0
        self.batch_left = serial or len(targets)
        self.batch_failed = False

    def next(self) -> str | None:
        """The next target to start now, or None (none left, stopped, or wait for the batch)."""
        if not self.waiting or self.stopped:
            return None
        if self.batch_left == 0:
            if self.running:
                return None  # the batch is still running
            if self.batch_failed:
                return None
            self.batch_left = self.serial or len(self.waiting)
        self.batch_left -= 1
        self.running += 1
        return self.waiting.pop()

    def done(self, outcome: Outcome) -> None:
        self.running -= 1
        if not outcome.ok:
            self.failed += 1
            self.batch_failed = True

    @property
    def stopped(self) -> bool:
        """Whether no further target will start (max_fail reached, or a failed batch ended)."""
        if self.max_fail is not None and self.failed >= self.max_fail:
            return True
        return self.batch_left == 0 and not self.running and self.batch_failed and self.serial is not None

    @property
    def skipped(self) -> list[str]:
        """Targets never started (so far), in order."""
        return self.waiting[::-1]


def timed(target: str, run: Callable[[], Any]) -> Outcome:
    """Run one target's operation; its outcome (only JrpcUnixError is an answer; others raise)."""
    start = time.perf_counter()
    try:
        result = run()
    except JrpcUnixError as exc:
        return Outcome(target, error=exc, ms=(time.perf_counter() - start) * 1000)
    return Outcome(target, result, ms=(time.perf_counter() - start) * 1000)


class FleetSettings:
    """What both fleets take: the targets, ``parallel`` at most at once, ``timeout`` per target
    (connecting included), ``max_fail``, ``serial``; ``log`` as the clients' (ssh's ``-v``)."""

    def __init__(
        self,
        targets: list[str],
        *,
        parallel: int = 16,
        timeout: float | None = 30.0,
        max_fail: int | None = None,
        serial: int | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        if parallel < 1:
            raise ValueError("parallel must be at least 1")
        self.targets, self.parallel, self.timeout, self.log = list(targets), parallel, timeout, log
        self._plan = Plan(self.targets, max_fail, serial)

    @property
    def skipped(self) -> list[str]:
        return self._plan.skipped


class Fleet(FleetSettings):
    """Many servers, asked the same thing with blocking clients, ``parallel`` threads at most.

    ::

        fleet = Fleet(expand_targets("ssh://web[01-12]/run/app.sock"), max_fail=2)
        for outcome in fleet.call("ping"):      # in completion order
            print(outcome.target, outcome.result if outcome.ok else outcome.error)
        print(fleet.skipped)                    # targets never started (max_fail, serial)
    """

    def call(self, method: str, /, *args: Any, **kwargs: Any) -> Iterator[Outcome]:
        """``client.call(method, ...)`` on every target; outcomes in completion order."""
        return self.run(lambda client: client.call(method, *args, **kwargs))

    def run(self, op: Callable[[Client], Any]) -> Iterator[Outcome]:
        """``op(client)`` for every target, each with its own client (closed after); a fleet
        runs once. Leaving the iteration early lets the running targets finish unseen."""
        plan, done = self._plan, queue.SimpleQueue[Outcome | BaseException]()

        def work(target: str) -> None:
            def once() -> Any:
                with Client(target, self.timeout, log=self.log) as client:
                    return op(client)

            try:
                done.put(timed(target, once))
            except BaseException as exc:  # a bug in op: raised where the fleet is iterated
                done.put(exc)

        while True:
            while plan.running < self.parallel and (target := plan.next()) is not None:
                threading.Thread(target=work, args=(target,), daemon=True, name=f"fleet {target}").start()
            if not plan.running:
                return
            outcome = done.get()
            if isinstance(outcome, BaseException):
                raise outcome
            plan.done(outcome)
            yield outcome
