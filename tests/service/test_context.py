"""current_context() in servers running side by side in several threads of one process."""

from __future__ import annotations

import json
import threading

from helpers import LineClient
from helpers.ops import served

from jrpc_unix import Methods, ServerThread, current_context


def _methods(tag: str, handles: dict[str, ServerThread]) -> Methods:
    m = Methods()

    @m.add
    def who() -> str:
        ctx = current_context()
        return f"{tag}:{ctx.method}:{ctx.request_id}:{ctx.server is handles[tag].server}"

    return m


def test_each_server_thread_sees_its_own_inline_requests(sock_dir: str) -> None:
    handles: dict[str, ServerThread] = {}
    wrong: list[str] = []

    def hammer(tag: str) -> None:
        with LineClient(f"{sock_dir}/{tag}.sock") as c:
            for i in range(2000):
                answer = c.call("who", rid=i)["result"]
                if answer != f"{tag}:who:{i}:True":
                    wrong.append(answer)

    with (
        served(f"{sock_dir}/a.sock", _methods("a", handles)) as a,
        served(f"{sock_dir}/b.sock", _methods("b", handles)) as b,
    ):
        handles.update(a=a, b=b)
        threads = [threading.Thread(target=hammer, args=(tag,)) for tag in "abab"]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert wrong == []


def test_inline_contexts_describe_each_request_and_a_burst_shares_one(sock_dir: str) -> None:
    """current_context() reuses the context it made only while it describes the request: the
    same method, id, kind and connection (a burst of notifications asks for one, not many)."""
    seen: list[tuple[int, str, object, bool, int]] = []

    m = Methods()

    @m.add
    def note(n: int) -> None:
        ctx = current_context()
        seen.append((id(ctx), ctx.method, ctx.request_id, ctx.is_notification, ctx.connection.id))

    @m.add
    def other(n: int) -> None:
        note(n)

    path = f"{sock_dir}/c.sock"
    with served(path, m), LineClient(path) as one, LineClient(path) as two:
        batch = [{"jsonrpc": "2.0", "method": "note", "params": [i]} for i in range(3)]
        calls = [
            {"jsonrpc": "2.0", "method": "note", "params": [3], "id": 1},
            {"jsonrpc": "2.0", "method": "note", "params": [4], "id": 1},
            {"jsonrpc": "2.0", "method": "note", "params": [5], "id": "1"},
            {"jsonrpc": "2.0", "method": "other", "params": [6], "id": "1"},
            {"jsonrpc": "2.0", "method": "other", "params": [7]},
        ]
        one.send("\n".join(json.dumps(x) for x in [*batch, *calls]) + "\n")
        assert [one.read_json()["id"] for _ in range(4)] == [1, 1, "1", "1"]
        assert two.call("note", [8], rid=1)["id"] == 1
    conn_one = seen[0][4]
    assert [s[1:4] for s in seen] == [
        ("note", None, True),
        ("note", None, True),
        ("note", None, True),
        ("note", 1, False),
        ("note", 1, False),
        ("note", "1", False),
        ("other", "1", False),
        ("other", None, True),
        ("note", 1, False),
    ]
    assert [s[4] == conn_one for s in seen] == [True] * 8 + [False]
    assert seen[0][0] == seen[1][0] == seen[2][0], "one context for the burst"
