"""The ``jrpc-unix`` command line, against the real demo service over a real socket.

In-process (``main([...])`` with captured output) for what it prints; as a subprocess
(``python -m jrpc_unix`` and the ``jrpc-unix`` console script) for exit codes, stdin, a
terminal, a closed pipe, signals, and for what it imports.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT, TIMEOUT, DemoProcess, ServerProcess, server_stats, wait_for
from helpers.client import FullBacklog
from helpers.ops import basic_methods, served
from helpers.terminal import CLI, on_terminal

from jrpc_unix import Call, Client, Notify
from jrpc_unix._cli.main import main
from jrpc_unix._cli.params import UsageError, batch_item, parse_params

SCRIPT = Path(sys.executable).with_name("jrpc-unix")


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run(*argv: str, stdin: str = "", script: bool = False) -> subprocess.CompletedProcess[str]:
    command = [str(SCRIPT)] if script else CLI
    return subprocess.run(
        [*command, *argv], input=stdin, capture_output=True, text=True, timeout=TIMEOUT, cwd=str(ROOT)
    )


@pytest.fixture
def stdin(monkeypatch: pytest.MonkeyPatch) -> Any:
    def feed(text: str) -> None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(text))

    return feed


# -- params ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("words", "style", "params"),
    [
        ([], "auto", None),
        (['[1, "a"]'], "auto", [1, "a"]),
        (['{"key": "level"}'], "auto", {"key": "level"}),
        (["[]"], "auto", None),
        (["key=level", "value=5"], "auto", {"key": "level", "value": 5}),
        (
            ['value={"a":[1]}', "flag=true", "n=null", "zip=007"],
            "auto",
            {"value": {"a": [1]}, "flag": True, "n": None, "zip": "007"},
        ),
        (["x=a=b"], "auto", {"x": "a=b"}),
        (["42", "23"], "auto", [42, 23]),
        (["hello", "-5", "2.5", '"7"'], "auto", ["hello", -5, 2.5, "7"]),
        (["a=b", "c"], "ordered", ["a=b", "c"]),
        (["[1]"], "ordered", [[1]]),
        (["key=1"], "keywords", {"key": 1}),
    ],
)
def test_parse_params(words: list[str], style: str, params: Any) -> None:
    assert parse_params(words, style) == params


@pytest.mark.parametrize(
    ("words", "style", "message"),
    [
        (
            ["a=1", "b"],
            "auto",
            r"^params are all key=value or all positional; use -o to send 'a=b' words as strings$",
        ),
        (["a=1", "b"], "keywords", r"^params must be key=value pairs here, not 'b'$"),
        (["[1,"], "auto", r"^PARAMS is not valid JSON: "),
        (['{"a": NaN}'], "auto", r"^PARAMS is not valid JSON: "),
    ],
)
def test_parse_params_usage_errors(words: list[str], style: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_params(words, style)


def test_params_from_stdin() -> None:
    assert parse_params(["-"], stdin=io.StringIO('{"minuend": 1, "subtrahend": 2}\n')) == {
        "minuend": 1,
        "subtrahend": 2,
    }
    assert parse_params(["-"], stdin=io.StringIO(" \n")) is None
    with pytest.raises(UsageError, match=r"^params read from stdin must be a JSON array or object, not 5$"):
        parse_params(["-"], stdin=io.StringIO("5"))


def test_batch_lines() -> None:
    assert batch_item("  # a comment") is None
    assert batch_item("   ") is None
    assert batch_item("ping") == Call("ping")
    assert batch_item("subtract 42 23") == Call("subtract", 42, 23)
    assert batch_item("config.set key=level value='a b'") == Call("config.set", key="level", value="a b")
    assert batch_item('{"jsonrpc":"2.0","method":"update","params":[1]}') == Notify("update", 1)
    assert batch_item('{"jsonrpc":"2.0","method":"ping","id":"mine"}') == Call("ping")
    with pytest.raises(UsageError, match=r"^a JSON request needs a string 'method'"):
        batch_item('{"params":[1]}')
    with pytest.raises(UsageError, match=r"^'-' \(params from stdin\) cannot be used inside a batch$"):
        batch_item("echo -")
    with pytest.raises(UsageError, match=r"^cannot split \"echo 'x\": No closing quotation$"):
        batch_item("echo 'x")


# -- call --------------------------------------------------------------------------------------


def test_call_prints_the_result_as_json(shared_demo: DemoProcess, capsys: pytest.CaptureFixture[str]) -> None:
    s = shared_demo.path
    assert cli(capsys, "call", s, "ping") == (0, '"pong"\n', "")
    assert cli(capsys, "call", s, "subtract", "42", "23") == (0, "19\n", "")
    assert cli(capsys, "call", s, "subtract", "minuend=42", "subtrahend=23") == (0, "19\n", "")
    assert cli(capsys, "call", s, "subtract", '{"minuend": 1, "subtrahend": 3}') == (0, "-2\n", "")
    assert cli(capsys, "call", "-o", s, "echo", "a=b") == (0, '"a=b"\n', "")
    assert cli(capsys, "call", s, "echo", "msg=☃") == (0, '"☃"\n', "")
    assert cli(capsys, "call", s, "get_data", "--pretty") == (0, '[\n  "hello",\n  5\n]\n', "")
    assert cli(capsys, "call", "--raw", s, "subtract", "5", "3") == (
        0,
        '{"jsonrpc":"2.0","result":2,"id":1}\n',
        "",
    )


def test_call_params_from_stdin(
    shared_demo: DemoProcess, capsys: pytest.CaptureFixture[str], stdin: Any
) -> None:
    stdin('{"minuend": 10, "subtrahend": 4}')
    assert cli(capsys, "call", shared_demo.path, "subtract", "-") == (0, "6\n", "")


def test_call_error_answers(demo: DemoProcess, capsys: pytest.CaptureFixture[str]) -> None:
    s = demo.path
    assert cli(capsys, "call", s, "nope") == (1, "", 'error [-32601] Method not found\n  data: "nope"\n')
    assert cli(capsys, "call", s, "config.get", "colour") == (
        1,
        "",
        'error [1] unknown config key \'colour\'\n  data: {"known":["level"]}\n',
    )
    assert cli(capsys, "call", s, "fail", "boom") == (1, "", "error [1] boom\n")
    code, out, err = cli(capsys, "call", s, "crash")
    assert (code, out) == (1, "")
    assert err.startswith('error [-32603] Internal error\n  data: {"error_id":')


def test_usage_errors(shared_demo: DemoProcess, capsys: pytest.CaptureFixture[str]) -> None:
    s = shared_demo.path
    assert cli(capsys, "call", s, "echo", "a=1", "b") == (
        2,
        "",
        "jrpc-unix call: params are all key=value or all positional; use -o to send 'a=b' words as strings\n",
    )
    code, _, err = cli(capsys, "call", s, "echo", "[1,")
    assert code == 2
    assert err.startswith("jrpc-unix call: PARAMS is not valid JSON: ")
    for argv in ([], ["frobnicate"], ["call", s], ["call", "--timeout", "soon", s, "ping"]):
        code, out, err = cli(capsys, *argv)
        assert (code, out) == (2, ""), argv
        assert err.startswith("usage: jrpc-unix"), argv
    code, out, _ = cli(capsys, "--help")
    assert code == 0
    assert "exit codes: 0 ok, 1 the server answered with an error, 2 usage" in " ".join(out.split())


def test_cannot_connect_and_timeout(
    shared_demo: DemoProcess, sock_dir: str, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = os.path.join(sock_dir, "gone.sock")
    assert cli(capsys, "call", missing, "ping") == (
        3,
        "",
        f"jrpc-unix: cannot connect to {missing}: no such socket file (is the server running?)\n",
    )
    assert cli(capsys, "call", "--timeout", "0.2", shared_demo.path, "sleep", "30") == (
        3,
        "",
        f"jrpc-unix: {shared_demo.path}: timed out after 0.2 s waiting for the answer to 'sleep'\n",
    )
    full = os.path.join(sock_dir, "full.sock")
    with FullBacklog(full):
        code, out, err = cli(capsys, "call", "--timeout", "0.2", full, "ping")
    assert (code, out) == (3, "")
    assert re.fullmatch(
        f"jrpc-unix: cannot connect to {full}: the server is not accepting connections: its accept "
        r"queue stayed full for 0\.\d s \(it is overloaded or stuck\)\n",
        err,
    )


# -- notify, batch, methods --------------------------------------------------------------------


def test_notify_then_call(demo: DemoProcess, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "notify", demo.path, "config.set", "key=level", "value=debug") == (0, "", "")
    assert cli(capsys, "call", demo.path, "config.get", "key=level") == (0, '"debug"\n', "")


def test_batch_prints_answers_in_request_order(
    demo: DemoProcess, capsys: pytest.CaptureFixture[str], stdin: Any
) -> None:
    stdin(
        "# warm up\n"
        "ping\n"
        "\n"
        'config.set key=level value="debug"\n'
        '{"jsonrpc":"2.0","method":"notify_hello","params":[7]}\n'
        "sleep 0.05\n"
        "nope\n"
        "subtract [42, 23]\n"
    )
    code, out, err = cli(capsys, "batch", demo.path)
    assert code == 1
    assert [json.loads(line) for line in out.splitlines()] == [
        {"jsonrpc": "2.0", "result": "pong", "id": 1},
        {"jsonrpc": "2.0", "result": "info", "id": 2},
        {"jsonrpc": "2.0", "result": 0.05, "id": 3},
        {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found", "data": "nope"}, "id": 4},
        {"jsonrpc": "2.0", "result": 19, "id": 5},
    ]
    assert err == 'call 4: error [-32601] Method not found\n  data: "nope"\n'


def test_batch_all_good_and_raw(
    shared_demo: DemoProcess, capsys: pytest.CaptureFixture[str], stdin: Any
) -> None:
    stdin("ping\nget_data\n")
    assert cli(capsys, "batch", shared_demo.path) == (
        0,
        '{"jsonrpc":"2.0","result":"pong","id":1}\n{"jsonrpc":"2.0","result":["hello",5],"id":2}\n',
        "",
    )
    stdin("ping\n")
    assert cli(capsys, "batch", "--raw", shared_demo.path) == (
        0,
        '[{"jsonrpc":"2.0","result":"pong","id":1}]\n',
        "",
    )


def test_batch_usage_errors(shared_demo: DemoProcess, capsys: pytest.CaptureFixture[str], stdin: Any) -> None:
    stdin("\n# nothing\n")
    assert cli(capsys, "batch", shared_demo.path) == (
        2,
        "",
        "jrpc-unix batch: no requests on stdin (one per line: METHOD [PARAMS], or a JSON request)\n",
    )
    stdin("ping\necho 'x\n")
    assert cli(capsys, "batch", shared_demo.path) == (
        2,
        "",
        'jrpc-unix batch: stdin line 2: cannot split "echo \'x": No closing quotation\n',
    )


def test_methods(shared_demo: DemoProcess, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "methods", shared_demo.path)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert any(
        line.startswith("ping() -> string ") and line.endswith('Answer "pong": is the service alive?')
        for line in lines
    )
    assert any(line.startswith("subtract(minuend: number, subtrahend: number) -> number") for line in lines)
    assert any(line.startswith("sum(*numbers: number) -> number") for line in lines)
    assert any(line.startswith("rpc.discover() -> object") for line in lines)
    code, out, _ = cli(capsys, "methods", shared_demo.path, "config.set")
    assert code == 0
    assert out == (
        "config.set(key: string, value: any) -> any\n"
        "\n"
        "  Set configuration `key` to `value`; returns the previous value.\n"
        "\n"
        "  At most 1,000 keys (256 characters each, values up to 16 KiB of JSON): FAIL beyond that.\n"
        "\n"
        "params (by name or by position):\n"
        "  key: string  (required)\n"
        "  value: any  (required)\n"
        "result: any\n"
        "access: operate\n"
    )
    code, out, _ = cli(capsys, "methods", "--json", shared_demo.path)
    assert code == 0
    assert json.loads(out)["openrpc"] == "1.2.6"
    assert cli(capsys, "methods", shared_demo.path, "nope") == (
        1,
        "",
        f"error: {shared_demo.path} has no method 'nope'\n",
    )


def test_methods_when_discovery_is_off(sock_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = os.path.join(sock_dir, "s.sock")
    with served(path, basic_methods(), discover=False):
        assert cli(capsys, "methods", path) == (
            1,
            "",
            "error [-32601] Method not found (this server does not offer rpc.discover)\n"
            '  data: "rpc.discover"\n',
        )


def test_stats(shared_demo: DemoProcess, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "stats", shared_demo.path)
    assert (code, err) == (0, "")
    stats = json.loads(out)
    assert stats["server"]["connections"]["open"] >= 1
    assert "methods" in stats


def test_watch_prints_each_event(demo: DemoProcess, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "watch", demo.path, "stats", "interval=0.05", "--count", "3")
    assert (code, err) == (0, "")
    events = [json.loads(line) for line in out.splitlines()]
    assert len(events) == 3
    assert all(event["server"]["subscriptions"] == 1 for event in events)


def test_watch_a_service_topic(demo: DemoProcess) -> None:
    watcher = subprocess.Popen(
        [*CLI, "watch", demo.path, "config", "--count", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: server_stats(demo.path)["server"]["subscriptions"] == 1, "the watcher to subscribe")
        with Client(demo.path) as client:
            client.notify("config.set", "level", "debug")
            client.notify("config.set", "colour", "blue")
        out, err = watcher.communicate(timeout=TIMEOUT)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait(TIMEOUT)
    assert (watcher.returncode, err) == (0, "")
    assert out.splitlines() == [
        '{"key":"level","value":"debug","previous":"info"}',
        '{"key":"colour","value":"blue","previous":null}',
    ]


def test_watch_errors(shared_demo: DemoProcess, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "watch", shared_demo.path, "nosuch")
    assert (code, out) == (1, "")
    assert err.startswith("error [-32602] Invalid params\n  data: \"no topic 'nosuch'; topics: ")
    assert cli(capsys, "watch", shared_demo.path, "stats", "1") == (
        2,
        "",
        "jrpc-unix watch: params must be key=value pairs here, not '1'\n",
    )


# -- as a process: exit codes, stdin, terminal, pipes, imports ---------------------------------


def test_exit_codes_as_a_process(shared_demo: DemoProcess, sock_dir: str) -> None:
    s = shared_demo.path
    for script in (False, True):
        ok = run("call", s, "subtract", "42", "23", script=script)
        assert (ok.returncode, ok.stdout, ok.stderr) == (0, "19\n", "")
        answered = run("call", s, "nope", script=script)
        assert (answered.returncode, answered.stderr) == (
            1,
            'error [-32601] Method not found\n  data: "nope"\n',
        )
        usage = run("call", script=script)
        assert usage.returncode == 2
        assert "usage: jrpc-unix call" in usage.stderr
        gone = run("call", os.path.join(sock_dir, "gone.sock"), "ping", script=script)
        assert gone.returncode == 3
        assert gone.stderr.endswith("no such socket file (is the server running?)\n")
        for proc in (ok, answered, usage, gone):
            assert "Traceback" not in proc.stderr


def test_stdin_as_a_process(demo: DemoProcess) -> None:
    proc = run("call", demo.path, "echo", "-", stdin='["from stdin"]')
    assert (proc.returncode, proc.stdout) == (0, '"from stdin"\n')
    proc = run("batch", demo.path, stdin="counter.incr\ncounter.incr\ncounter.get\n")
    assert (proc.returncode, [json.loads(x)["result"] for x in proc.stdout.splitlines()]) == (0, [1, 2, 2])
    proc = run("notify", demo.path, "config.set", "-", stdin='{"key": "k", "value": [1]}')
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert run("call", demo.path, "config.get", "k").stdout == "[1]\n"


def test_pretty_on_a_terminal_compact_in_a_pipe(shared_demo: DemoProcess) -> None:
    assert run("call", shared_demo.path, "get_data").stdout == '["hello",5]\n'
    code, output, _ = on_terminal("call", shared_demo.path, "get_data", stdout=True)
    assert code == 0
    assert output == b'[\n  "hello",\n  5\n]\n'


def test_a_closed_pipe_is_not_an_error(shared_demo: DemoProcess) -> None:
    proc = subprocess.Popen(
        [str(SCRIPT), "call", shared_demo.path, "echo", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    assert proc.stderr is not None
    proc.stdin.write(json.dumps(["x" * 900_000]).encode())
    proc.stdin.close()
    assert proc.stdout.read(10) == b'"' + b"x" * 9
    proc.stdout.close()  # like `| head -c 10`
    assert proc.wait(TIMEOUT) == 0
    assert proc.stderr.read() == b""
    proc.stderr.close()


def test_client_commands_import_neither_trio_nor_jsonrpcserver(shared_demo: DemoProcess) -> None:
    """Start-up: ``call`` loads no server, no orjson, no argparse, no jsonrpcclient, no typing (and
    what those pull in: specs/performance.md, "The command line's start-up")."""
    code = (
        "import sys\n"
        "from jrpc_unix._cli.main import main\n"
        f"assert main(['call', {shared_demo.path!r}, 'ping']) == 0\n"
        "loaded = {m.split('.')[0] for m in sys.modules}\n"
        "heavy = {'trio', 'jsonrpcserver', 'oslash', 'jsonschema', 'orjson', 'argparse', 'dataclasses',\n"
        "         'inspect', 'threading', 'signal', 'shutil', 'shlex', 'jrpc_unix._wire.fastjson',\n"
        "         'readline', 'difflib', 'jsonrpcclient', 'typing'}\n"
        "print('call:', sorted((loaded | set(sys.modules)) & heavy))\n"
        f"assert main(['methods', {shared_demo.path!r}]) == 0\n"
        "loaded = {m.split('.')[0] for m in sys.modules}\n"
        "print('methods:', sorted(loaded & {'trio', 'jsonrpcserver', 'oslash', 'jsonschema', 'orjson'}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT, check=True
    )
    report = [line for line in proc.stdout.splitlines() if line.startswith(("call:", "methods:"))]
    assert report == ["call: []", "methods: []"]


@pytest.mark.parametrize(
    "argv",
    [
        ["call", "S", "ping"],
        ["call", "S", "subtract", "42", "23"],
        ["call", "S", "subtract", "-5", "-3.5", "-.5"],
        ["call", "S", "config.get", "key=level"],
        ["call", "S", "echo", "-"],
        ["call", "-", "echo", "", "a b", "[1, 2]", '{"a": 1}', "x=-y"],
        ["notify", "S", "config.set", "key=level", "value=debug"],
        ["notify", "S", "update", "1", "-2"],
    ],
)
def test_the_fast_command_line_reads_as_argparse_does(argv: list[str]) -> None:
    from jrpc_unix._cli.main import quick_args
    from jrpc_unix._cli.parser import build_parser

    quick = quick_args(argv)
    assert quick is not None
    assert vars(quick) == vars(build_parser(serve=False).parse_args(argv))


@pytest.mark.parametrize(
    "argv",
    [
        ["call", "S"],
        ["call", "--raw", "S", "ping"],
        ["call", "S", "ping", "--pretty"],
        ["call", "S", "echo", "-x"],
        ["call", "S", "echo", "-1e5"],
        ["call", "S", "echo", "--"],
        ["call", "S", "echo", "-1."],
        ["notify", "-k", "S", "m"],
        ["stats", "S", "x"],
        ["watch", "S", "t"],
        [],
    ],
)
def test_anything_else_goes_to_argparse(argv: list[str]) -> None:
    from jrpc_unix._cli.main import quick_args

    assert quick_args(argv) is None


def test_stats_table_renders_every_figure() -> None:
    from jrpc_unix._cli.text import render_stats

    stats = {
        "server": {
            "uptime_s": 3725.5,
            "connections": {"open": 2, "total": 1234, "rejected": {"max_connections": 1}},
            "calls": 1200,
            "notifications": 4,
            "errors": 3,
            "in_flight": 0,
            "subscriptions": 1,
            "events_dropped": 0,
            "rejected_requests": {},
            "new_figure": [1, 2],
        },
        "methods": {
            "ping": {
                "calls": 1199,
                "notifications": 0,
                "errors": 0,
                "latency_us": {"count": 1199, "mean": 3.1, "p50": 2.9, "p99": 10.2},
            },
            "rpc.stats": {"calls": 1, "notifications": 4, "errors": 3, "latency_us": {}},
        },
        "service": {"counter": 3},
    }
    assert render_stats(stats) == (
        "uptime             1 h 2 min 5 s\n"
        "connections        2 open, 1,234 total, rejected: max_connections 1\n"
        "calls              1,200\n"
        "notifications      4\n"
        "errors             3\n"
        "in flight          0\n"
        "subscriptions      1\n"
        "events dropped     0\n"
        "rejected requests  none\n"
        "new_figure         [1, 2]\n"
        "\n"
        "method     calls  notifs  errors  mean us  p50 us  p99 us\n"
        "ping       1,199       0       0      3.1     2.9    10.2\n"
        "rpc.stats      1       4       3        -       -       -\n"
        "\n"
        'service            {"counter": 3}'
    )
    assert render_stats({"not": "stats"}) is None
    assert render_stats([1]) is None
    assert render_stats({"server": {"uptime_s": 0.25}}) == "uptime             0.2 s"


def test_progress_bar_lines() -> None:
    from jrpc_unix._cli.render import ProgressBar

    bar = ProgressBar(io.StringIO(), width=10)
    assert bar.line(3, 10, "step 3") == "[###.......]   30%  3/10  step 3"
    assert bar.line(2.5, 5, None) == "[#####.....]   50%  2.5/5"
    assert bar.line(12, 10, None) == "[##########]  100%  12/10"
    assert bar.line(7, None, "seven") == "7  seven"
    assert bar.line(7, 0, None) == "7"
    bar(1, 2, "x")
    bar.clear()
    bar.clear()
    assert bar.stream.getvalue() == "\r[#####.....]   50%  1/2  x\x1b[K\r\x1b[K"  # type: ignore[attr-defined]


def test_stats_table_on_request(shared_demo: DemoProcess, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "stats", shared_demo.path, "--table")
    assert (code, err) == (0, "")
    assert out.startswith("uptime ")
    assert "\nmethod " in out


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")
def test_permission_denied(sock_dir: str) -> None:
    """As user nobody (a forked child: nobody cannot run root's Python), a 0600 root socket."""
    os.chmod(sock_dir, 0o755)
    path = os.path.join(sock_dir, "s.sock")
    with served(path, basic_methods()):  # socket mode 0600, owned by root
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report (exit code, stderr) through the pipe, never return
            try:
                os.setgid(65534)
                os.setuid(65534)
                sys.stderr = io.StringIO()
                code = main(["call", path, "ping"])
                os.write(write_end, json.dumps([code, sys.stderr.getvalue()]).encode())
            finally:
                os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            report = pipe.read()
        os.waitpid(pid, 0)
    assert json.loads(report) == [
        3,
        f"jrpc-unix: cannot connect to {path}: permission denied "
        "(check the mode and group of the socket file and its directory)\n",
    ]


# -- serve and demo ----------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["jrpc_unix.demo:methods", "examples/demo_server.py:methods"])
def test_serve_until_sigterm(sock_dir: str, target: str) -> None:
    path = os.path.join(sock_dir, "s.sock")
    argv = ["serve", target, path, "--topic", "config=changes", "--max-batch", "2", "--mode", "serial"]
    with ServerProcess([*CLI, *argv], os.path.join(sock_dir, "log"), lambda: os.path.exists(path)) as server:
        assert oct(os.stat(path).st_mode & 0o777) == "0o600"
        with Client(path) as client:
            assert client.call("config.set", "level", "debug") == "info"
            too_long = client.batch(Call("ping"), Call("ping"), Call("ping"))
            assert [str(e) for e in too_long] == ["[-32001] Request too large"] * 3
            assert client.call("ping") == "pong"
        assert server.signal(signal.SIGTERM) == 0
        log = server.log()
    assert "SIGTERM received; stopping" in log
    assert "Traceback" not in log
    assert not os.path.exists(path)


def test_serve_usage_and_setup_errors(sock_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = os.path.join(sock_dir, "s.sock")
    cases = [
        (
            ["nosuch.module:methods"],
            "jrpc-unix serve: cannot import 'nosuch.module': no module named 'nosuch'\n",
        ),
        (["jrpc_unix.demo:nope"], "jrpc-unix serve: 'jrpc_unix.demo' has no attribute 'nope'\n"),
        (
            ["jrpc_unix.demo:ping"],
            "jrpc-unix serve: jrpc_unix.demo:ping is a function, not a Methods object or a mapping\n",
        ),
        (["missing.py:methods"], "jrpc-unix serve: no such file: missing.py\n"),
        (
            ["jrpc_unix.demo", "--max-batch", "0"],
            "jrpc-unix serve: Limits.max_batch must be positive, not 0\n",
        ),
    ]
    for extra, message in cases:
        assert cli(capsys, "serve", extra[0], path, *extra[1:]) == (2, "", message)
    code, _, err = cli(capsys, "serve", "jrpc_unix.demo", path, "--idle-timeout", "soon")
    assert code == 2
    assert "argument --idle-timeout: expected a number or none" in err
    not_a_socket = os.path.join(sock_dir, "file")
    open(not_a_socket, "w").close()
    assert cli(capsys, "serve", "jrpc_unix.demo:methods", not_a_socket) == (
        3,
        "",
        f"jrpc-unix: {not_a_socket} exists and is not a socket; refusing to replace it\n",
    )


def test_serve_with_discovery_off(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "s.sock")
    argv = ["serve", "jrpc_unix.demo:methods", path, "--no-discover", "--log-level", "error"]
    with ServerProcess([*CLI, *argv], os.path.join(sock_dir, "log"), lambda: os.path.exists(path)) as server:
        methods = run("methods", path)
        assert methods.returncode == 1
        assert "(this server does not offer rpc.discover)" in methods.stderr
        assert server.signal(signal.SIGINT) == 0
        assert server.log() == ""


def test_demo_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "demo")
    assert (code, err) == (0, "")
    first = out.splitlines()[0]
    assert first.startswith("The demo service is listening on /tmp/jrpc-unix-demo-")
    socket_path = first.rsplit(" ", 1)[1]
    assert not os.path.exists(os.path.dirname(socket_path)), "the temporary directory is removed"
    for expected in (
        '     -> {"jsonrpc":"2.0","method":"ping","id":1}',
        '     <- {"jsonrpc":"2.0","result":"pong","id":1}',
        "     (no answer: a notification never gets one)",
        "  raised RpcError: [-32601] Method not found  data='no.such.method'",
        "  raised RpcError: [1] unknown config key 'colour'  data={'known': ['level']}",
        "     server log: ERROR method 'crash' raised; error id ",
        "  raised RpcError: [-32602] Invalid params  data=[{'name': 'workers', 'reason': 'must be >= 1",
        "The service has stopped and its socket is gone. Try it yourself:",
    ):
        assert expected in out


def test_demo_as_a_process() -> None:
    proc = run("demo", script=True)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert "4. A batch: several requests in one message, answers matched by id" in proc.stdout
    assert "Traceback" not in proc.stdout
