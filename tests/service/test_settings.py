"""Typed settings (issue 12) against a real in-process server: all or nothing, dry runs, optimistic
writers, the history, revert, reset, diff, the file, the topic.

Hooks here have real side effects (a list they append to, a file they write), checked after each
change; clients are raw line clients on a real socket.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import pytest
import trio
from helpers import TrioLineClient, request, serving, short_tmpdir

from jrpc_unix import Access, Methods, Settings, setting
from jrpc_unix._service.settings_file import read_values

applied: list[tuple[str, Any]] = []


def remember(name: str) -> Any:
    def hook(value: Any) -> None:
        applied.append((name, value))

    return hook


def refuse_13(value: int) -> None:
    applied.append(("workers", value))
    if value == 13:
        raise RuntimeError("13 workers is unlucky")


class Sample(Settings):
    mode: Literal["fast", "safe"] = setting("safe", on_change=remember("mode"))
    workers: int = setting(4, ge=1, le=64, on_change=refuse_13)
    name: str = setting("x", min_length=1, max_length=8, on_change=remember("name"))
    token: str = setting("", secret=True, access=Access.ADMIN)
    backlog: int = setting(128, restart_required=True)


@pytest.fixture
def sock() -> Any:
    applied.clear()
    with short_tmpdir() as d:
        yield d


async def session(d: str, s: Settings) -> Any:
    methods = Methods()
    s.mount(methods)
    return serving(os.path.join(d, "s.sock"), methods)


async def call(c: TrioLineClient, method: str, params: Any = None) -> Any:
    return await c.call(method, params)


async def test_all_or_nothing_under_a_failing_hook(sock: str) -> None:
    s = Sample(file=os.path.join(sock, "s.json"))
    async with await session(sock, s):
        c = await TrioLineClient.connect(os.path.join(sock, "s.sock"))
        await c.send(request("rpc.subscribe", {"topic": "settings"}, 9))
        assert "result" in await c.read_json()
        answer = await call(c, "settings.set", {"values": {"mode": "fast", "workers": 13}, "persist": True})
        assert answer["error"]["code"] == -32011
        assert answer["error"]["data"] == {"name": "workers", "reason": "13 workers is unlucky"}
        # the hook of mode ran, then was called again with the old value: a real side effect undone
        assert applied == [("mode", "fast"), ("workers", 13), ("mode", "safe")]
        assert s.mode == "safe"
        assert s.workers == 4
        assert s.version == 0
        assert not await trio.Path(sock, "s.json").exists()
        assert (await call(c, "settings.log"))["result"] == []
        ok = await call(c, "settings.set", {"values": {"workers": 8}})
        change = {"name": "workers", "old": 4, "new": 8}
        assert ok["result"] == {"version": 1, "changes": [change], "applied": True, "persisted": False}
        event = await c.read_json()  # the failed change published nothing: this is version 1
        assert event["params"]["data"]["version"] == 1
        await c.aclose()


async def test_every_invalid_value_is_reported_and_nothing_changes(sock: str) -> None:
    s = Sample()
    async with await session(sock, s):
        c = await TrioLineClient.connect(os.path.join(sock, "s.sock"))
        values = {"mode": "slow", "workers": 0, "name": "", "nope": 1, "backlog": "x"}
        answer = await call(c, "settings.set", {"values": values})
        assert answer["error"]["code"] == -32602
        reasons = {p["name"]: p["reason"] for p in answer["error"]["data"]}
        assert reasons == {
            "mode": "expected one of 'fast', 'safe', got 'slow'",
            "workers": "must be >= 1, got 0",
            "name": "must be at least 1 long",
            "nope": "no such setting",
            "backlog": "expected an integer, got string",
        }
        assert applied == []
        assert s.version == 0
        wrong = await call(c, "settings.set", {"values": "mode=fast"})
        assert wrong["error"]["data"] == "values: expected an object, got string"
        await c.aclose()


async def test_dry_run_has_no_side_effect(sock: str) -> None:
    s = Sample(file=os.path.join(sock, "s.json"))
    async with await session(sock, s):
        c = await TrioLineClient.connect(os.path.join(sock, "s.sock"))
        await c.send(request("rpc.subscribe", {"topic": "settings"}, 9))
        await c.read_json()
        answer = await call(
            c, "settings.set", {"values": {"workers": 9, "mode": "fast"}, "dry_run": True, "persist": True}
        )
        assert answer["result"] == {
            "version": 0,
            "changes": [
                {"name": "workers", "old": 4, "new": 9},
                {"name": "mode", "old": "safe", "new": "fast"},
            ],
            "applied": False,
            "persisted": False,
        }
        assert applied == []
        assert s.version == 0
        assert s.workers == 4
        assert not await trio.Path(sock, "s.json").exists()
        assert (await call(c, "settings.log"))["result"] == []
        assert (await call(c, "settings.diff"))["result"] == []
        await call(c, "settings.set", {"values": {"name": "y"}})
        event = await c.read_json()  # the first event is the real change's
        assert event["params"]["data"]["version"] == 1
        await c.aclose()


async def test_concurrent_writers_with_expected_version_exactly_one_wins(sock: str) -> None:
    s = Sample()
    async with await session(sock, s):
        clients = [await TrioLineClient.connect(os.path.join(sock, "s.sock")) for _ in range(8)]
        for i, c in enumerate(clients):  # all sent before any is read: they race in the server
            await c.send(request("settings.set", {"values": {"workers": 20 + i}, "expected_version": 0}, 1))
        answers = [await c.read_json() for c in clients]
        won = [a for a in answers if "result" in a]
        lost = [a for a in answers if "error" in a]
        assert len(won) == 1
        assert won[0]["result"]["version"] == 1
        assert all(a["error"]["code"] == -32010 and a["error"]["data"] == {"version": 1} for a in lost)
        assert s.workers == won[0]["result"]["changes"][0]["new"]
        for c in clients:
            await c.aclose()


async def test_equal_value_is_no_change_and_restart_required_waits(sock: str) -> None:
    s = Sample()
    async with await session(sock, s):
        c = await TrioLineClient.connect(os.path.join(sock, "s.sock"))
        same = await call(c, "settings.set", {"values": {"workers": 4}})
        assert same["result"] == {"version": 0, "changes": [], "applied": True, "persisted": False}
        later = await call(c, "settings.set", {"values": {"backlog": 512}})
        assert later["result"]["applied"] is False
        assert later["result"]["version"] == 1
        assert s.backlog == 128
        assert s.pending == {"backlog": 512}
        (entry,) = (await call(c, "settings.diff"))["result"]
        assert entry["name"] == "backlog"
        assert entry["pending_restart"] is True
        assert entry["pending"] == 512
        assert entry["running"] == 128
        assert entry["source"] == "default"
        await c.aclose()


async def test_log_revert_reset_and_diff(sock: str) -> None:
    s = Sample(history=3)
    async with await session(sock, s):
        c = await TrioLineClient.connect(os.path.join(sock, "s.sock"))
        for workers in (5, 6, 7, 8):
            await call(c, "settings.set", {"values": {"workers": workers}})
        log = (await call(c, "settings.log", {"limit": 20}))["result"]
        assert [e["version"] for e in log] == [4, 3, 2]  # newest first, a ring of 3
        assert log[0]["peer"] == {"uid": os.getuid(), "gid": os.getgid(), "pid": os.getpid()}
        assert log[0]["method"] == "settings.set"
        assert log[0]["changes"] == [{"name": "workers", "old": 7, "new": 8}]
        back = await call(c, "settings.revert", {"version": 2})
        assert back["result"]["changes"] == [{"name": "workers", "old": 8, "new": 6}]
        assert s.workers == 6
        assert (await call(c, "settings.revert", {"version": 4}))["result"]["changes"][0][
            "new"
        ] == 8  # undone
        gone = await call(c, "settings.revert", [1])
        assert gone["error"]["code"] == -32602
        assert "not in the history" in gone["error"]["data"]
        diff = (await call(c, "settings.diff"))["result"]
        assert diff == [
            {
                "name": "workers",
                "default": 4,
                "persisted": None,
                "running": 8,
                "source": "runtime",
                "pending_restart": False,
            }
        ]
        reset = await call(c, "settings.reset")
        assert reset["result"]["changes"] == [{"name": "workers", "old": 8, "new": 4}]
        assert (await call(c, "settings.revert", [0]))["result"]["changes"] == []
        await c.aclose()


async def test_file_holds_only_non_defaults_and_invalid_entries_are_skipped(sock: str) -> None:
    path = Path(sock, "s.json")
    await trio.Path(path).write_text(json.dumps({"workers": 99, "name": "abc", "gone": 1}))
    s = Sample(file=path)
    assert s.workers == 4
    assert s.name == "abc"
    async with await session(sock, s):
        c = await TrioLineClient.connect(os.path.join(sock, "s.sock"))
        diff = {e["name"]: e for e in (await call(c, "settings.diff"))["result"]}
        assert diff["workers"]["file_error"] == "must be <= 64, got 99"
        assert diff["workers"]["persisted"] == 99
        assert diff["name"]["source"] == "file"
        assert diff["gone"]["file_error"] == "no such setting"
        answer = await call(c, "settings.set", {"values": {"workers": 6, "name": "x"}, "persist": True})
        assert answer["result"]["persisted"] is True
        assert read_values(path) == {"workers": 6}  # "x" is the default: not in the file
        assert [n for n in os.listdir(sock) if n.endswith(".tmp")] == []
        await c.aclose()


async def test_async_hooks_and_a_second_writer_is_refused_while_they_run(sock: str) -> None:
    started, release = trio.Event(), trio.Event()

    class Slow(Settings):
        level: int = setting(1)

    s = Slow()

    @s.on_change("level")
    async def hook(values: dict[str, Any]) -> None:
        started.set()
        await release.wait()

    async with await session(sock, s):
        c1 = await TrioLineClient.connect(os.path.join(sock, "s.sock"))
        c2 = await TrioLineClient.connect(os.path.join(sock, "s.sock"))
        await c1.send(request("settings.set", {"values": {"level": 2}}, 1))
        await started.wait()
        busy = await call(c2, "settings.set", {"values": {"level": 3}})
        assert busy["error"]["code"] == -32012
        release.set()
        assert (await c1.read_json())["result"]["version"] == 1
        assert s.level == 2
        await c1.aclose()
        await c2.aclose()


def test_declaration_errors() -> None:
    with pytest.raises(TypeError, match="no default"):

        class NoDefault(Settings):
            x: int

    with pytest.raises(TypeError, match="its default"):

        class BadDefault(Settings):
            x: int = setting(0, ge=1)

    with pytest.raises(TypeError, match="taken by the Settings class"):

        class Clash(Settings):
            version: int = 1

    with pytest.raises(TypeError, match="taken by the Settings class"):

        class Clash2(Settings):
            mount: int = 1

    with pytest.raises(ValueError, match="unknown settings"):
        Sample().on_change("nope")


async def test_a_failing_group_hook_restores_pending_and_reruns_earlier_hooks(sock: str) -> None:
    class Grouped(Settings):
        a: int = setting(1, on_change=remember("a"))
        b: int = setting(1)
        later: int = setting(1, restart_required=True)

    s = Grouped()

    @s.on_change("a", "b")
    def group(values: dict[str, Any]) -> None:
        applied.append(("group", values))
        if values["b"] == 13:
            raise ValueError("b may not be 13")

    async with await session(sock, s):
        c = await TrioLineClient.connect(os.path.join(sock, "s.sock"))
        assert (await call(c, "settings.set", {"values": {"later": 5}}))["result"]["applied"] is False
        answer = await call(c, "settings.set", {"values": {"a": 2, "b": 13, "later": 6}})
        assert answer["error"]["data"] == {"name": "a,b", "reason": "b may not be 13"}
        assert applied == [("a", 2), ("group", {"a": 2, "b": 13}), ("a", 1)]
        assert (s.a, s.b, s.later, s.pending) == (1, 1, 1, {"later": 5})
        await c.aclose()
