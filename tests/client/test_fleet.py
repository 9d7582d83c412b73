"""Fan-out (``Fleet``, ``AsyncFleet``): naming targets, bounded parallelism, ``max_fail`` and
``serial``, outcomes in completion order, over real sockets."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import trio
from helpers import serving
from helpers.ops import basic_methods, served

from jrpc_unix import Client, ConnectError, RpcError
from jrpc_unix._client.fleet import Fleet, Outcome, expand_targets, read_targets
from jrpc_unix._client.fleet_trio import AsyncFleet


def test_node_sets_expand_clustershell_style() -> None:
    assert expand_targets("ssh://web[01-03,10]/run/a.sock") == [
        "ssh://web01/run/a.sock",
        "ssh://web02/run/a.sock",
        "ssh://web03/run/a.sock",
        "ssh://web10/run/a.sock",
    ]
    assert expand_targets("/a.sock,ssh://h[8-10]/x,/b[1-2]/[0-1].sock") == [
        "/a.sock",
        "ssh://h8/x",
        "ssh://h9/x",
        "ssh://h10/x",
        "/b1/0.sock",
        "/b1/1.sock",
        "/b2/0.sock",
        "/b2/1.sock",
    ]


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("/a[1-", "unmatched '\\['"),
        ("/a]1", "unmatched '\\]'"),
        ("/a[3-1]", "not a range"),
        ("/a[x-y]", "not a range"),
        ("/a[1,]", "an empty item"),
        ("/a[0-99999999]", "more than"),
        (",", "names no target"),
    ],
)
def test_bad_node_sets_say_why(spec: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        expand_targets(spec)


def test_an_existing_path_is_taken_as_it_is(sock_dir: str) -> None:
    odd = os.path.join(sock_dir, "a,b[1-2].sock")
    open(odd, "w").close()
    assert expand_targets(odd) == [odd]


def test_targets_file(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "targets")
    with open(path, "w") as out:
        out.write("# the web tier\nssh://web[1-2]/run/a.sock  # two\n\n/run/b.sock\n")
    assert read_targets(path) == ["ssh://web1/run/a.sock", "ssh://web2/run/a.sock", "/run/b.sock"]
    with open(path, "w") as out:
        out.write("/ok\n/bad[2-1]\n")
    with pytest.raises(ValueError, match="targets line 2"):
        read_targets(path)


@pytest.fixture
def fleet_dir(sock_dir: str) -> Iterator[tuple[str, str]]:
    """One good server (``good.sock``) and a method that answers an error; ``down.sock`` is none."""
    methods = basic_methods()

    @methods.add
    def boom() -> None:
        raise ValueError("boom")

    good = os.path.join(sock_dir, "good.sock")
    with served(good, methods):
        yield good, os.path.join(sock_dir, "down.sock")


def summary(outcomes: list[Outcome]) -> list[tuple[str, Any]]:
    return [(o.target, o.result if o.ok else type(o.error).__name__) for o in outcomes]


def test_fleet_calls_every_target(fleet_dir: tuple[str, str]) -> None:
    good, down = fleet_dir
    fleet = Fleet([good, down, good], parallel=2, timeout=10)
    outcomes = list(fleet.call("echo", "hi"))
    assert sorted(summary(outcomes)) == sorted([(good, "hi"), (good, "hi"), (down, "ConnectError")])
    assert fleet.skipped == []
    failed = next(o for o in outcomes if not o.ok)
    assert failed.unreachable
    assert isinstance(failed.error, ConnectError)
    assert failed.to_json() == {
        "target": down,
        "error": {"message": str(failed.error), "unreachable": True},
        "ms": failed.to_json()["ms"],
    }
    errors = list(Fleet([good], timeout=10).call("boom"))
    assert isinstance(errors[0].error, RpcError)
    assert not errors[0].unreachable
    assert errors[0].to_json()["error"]["code"] == errors[0].error.code


def test_max_fail_stops_starting_targets(fleet_dir: tuple[str, str]) -> None:
    good, down = fleet_dir
    fleet = Fleet([down, good, down, good, good], parallel=1, max_fail=2)
    assert summary(list(fleet.call("ping"))) == [
        (down, "ConnectError"),
        (good, "pong"),
        (down, "ConnectError"),
    ]
    assert fleet.skipped == [good, good]


def test_serial_stops_after_a_failed_batch(fleet_dir: tuple[str, str]) -> None:
    good, down = fleet_dir
    fleet = Fleet([good, good, good, down, good, good], parallel=16, serial=2)
    outcomes = list(fleet.call("ping"))
    assert len(outcomes) == 4
    assert fleet.skipped == [good, good]
    assert [o.target for o in outcomes[:2]] == [good, good]  # the first batch ended before the second began


def test_a_bug_in_the_operation_is_raised(fleet_dir: tuple[str, str]) -> None:
    def op(client: Client) -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        list(Fleet([fleet_dir[0]]).run(op))


@pytest.mark.parametrize("bad", [{"parallel": 0}, {"max_fail": 0}, {"serial": 0}])
def test_bad_settings(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Fleet(["/a"], **bad)


async def test_async_fleet(sock_dir: str) -> None:
    good, down = os.path.join(sock_dir, "good.sock"), os.path.join(sock_dir, "down.sock")
    seen: list[Outcome] = []
    async with serving(good, basic_methods()):
        fleet = AsyncFleet([good, down, good, good], parallel=1, max_fail=1)
        outcomes = await fleet.call("echo", "x", each=seen.append)
    assert summary(outcomes) == [(good, "x"), (down, "ConnectError")]
    assert seen == outcomes
    assert fleet.skipped == [good, good]


async def test_async_fleet_timeout_per_target(sock_dir: str, autojump_clock: trio.testing.MockClock) -> None:
    methods = basic_methods()

    @methods.add
    async def slow() -> str:
        await trio.sleep(60)
        return "late"

    path = os.path.join(sock_dir, "s.sock")
    async with serving(path, methods):
        outcomes = await AsyncFleet([path, path], timeout=5).call("slow")
    assert [type(o.error).__name__ for o in outcomes] == ["RpcTimeoutError"] * 2
    assert all(o.unreachable for o in outcomes)
