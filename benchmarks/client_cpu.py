"""The blocking client's own CPU per call, with no server: ``python benchmarks/client_cpu.py``.

The :class:`~jrpc_unix.Client` talks to one end of a ``socketpair``; before each call the other
end already holds the answer, so the client sends, polls (ready at once), reads and parses with
nobody else's CPU or wake-ups in the figure. What it counts is the client's Python and its
syscalls, the part a change to the client moves (specs/performance.md, "The blocking client's
round trip"); against a real server, ``benchmarks/peers.py`` measures the whole. Best and
median of the rounds: pin it to a CPU (``taskset -c 1``) and compare A/B in turns.
"""

from __future__ import annotations

import argparse
import socket
import time

from jrpc_unix import Client
from jrpc_unix._client.connect import UnixSocketStream


def measure(calls: int, rounds: int) -> list[float]:
    """CPU µs per ``Client.call("config.get", key="level")``, one figure per round."""
    mine, theirs = socket.socketpair()
    client = Client("/nonexistent")  # never dialled: the stream below is handed over instead
    client._transport._connect = lambda address, deadline: UnixSocketStream(mine)
    rid, figures = 0, []
    for _ in range(rounds + 1):  # the first round warms up
        answers = [b'{"jsonrpc":"2.0","result":"info","id":%d}\n' % (rid + i) for i in range(1, calls + 1)]
        rid += calls
        start = time.process_time()
        for i in range(0, calls, 100):
            for answer in answers[i : i + 100]:
                theirs.send(answer)
                client.call("config.get", key="level")
            theirs.recv(1 << 20)  # the requests, so the socket's buffer never fills
        figures.append((time.process_time() - start) / calls * 1e6)
    client.close()
    theirs.close()
    return figures[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls per round (default 20,000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default 5)")
    args = parser.parse_args()
    figures = sorted(measure(args.calls, args.rounds))
    print(f"client CPU per call: best {figures[0]:.2f} µs, median {figures[len(figures) // 2]:.2f} µs")


if __name__ == "__main__":
    main()
