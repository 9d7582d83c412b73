"""current_context() in servers running side by side in several threads of one process."""

from __future__ import annotations

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
