"""The command line's conventions (issue 15): options anywhere and ``--``, ``$JRPC_UNIX_SOCKET``,
``-v``, ``--connect-timeout``, ``--wait``, ``@file`` params, did-you-mean, and the defects an
operator met (notify after a refusal, ``--raw`` of an error, an empty SOCK, an abstract name).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from typing import Any

import pytest
from helpers import ROOT, TIMEOUT, DemoProcess, LineClient, ServerProcess, wait_for
from helpers.client import FullBacklog
from helpers.ops import basic_methods, served
from helpers.terminal import CLI

from jrpc_unix import Client, Limits, Methods, RpcError
from jrpc_unix._cli.main import main, quick_args
from jrpc_unix._cli.params import UsageError, parse_params
from jrpc_unix._cli.parser import build_parser, parse


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run(*argv: str, env: dict[str, str] | None = None, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *argv],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=str(ROOT),
        env={**os.environ, **(env or {})},
    )


# -- options anywhere, and -- ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["call", "S", "sum", "1", "--timeout", "2", "3"], {"params": ["1", "3"], "timeout": 2.0}),
        (["call", "S", "echo", "--raw"], {"method": "echo", "params": [], "raw": True}),
        (["call", "--raw", "S", "echo", "-v"], {"raw": True, "verbose": 1}),
        (["call", "S", "echo", "--", "--raw", "-x", "--"], {"params": ["--raw", "-x", "--"], "raw": False}),
        (["call", "--", "S", "m", "-x"], {"socket": "S", "method": "m", "params": ["-x"]}),
        (["call", "S", "sum", "-5", "2.5"], {"params": ["-5", "2.5"]}),
        (["watch", "S", "stats", "interval=1", "--count", "2"], {"params": ["interval=1"], "count": 2}),
    ],
)
def test_options_anywhere_after_the_command(
    argv: list[str], expected: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JRPC_UNIX_SOCKET", raising=False)
    args = vars(parse(build_parser(serve=False), argv))
    assert {k: args[k] for k in expected} == expected


def test_a_usage_error_shows_the_subcommands_usage(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "call", "S", "ping", "--bogus")
    assert (code, out) == (2, "")
    assert err.startswith("usage: jrpc-unix call [-h] [-v]")
    assert "[PARAMS ...]" in err  # optional params are shown as optional
    assert err.endswith("jrpc-unix call: error: unrecognized arguments: --bogus\n")


def test_help_ends_with_examples_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("call", "notify", "batch", "methods", "stats", "watch", "serve", "demo"):
        code, out, _ = cli(capsys, command, "--help")
        assert code == 0
        assert "\nexamples:\n  " in out, command
    code, out, _ = cli(capsys, "call", "--help")
    assert code == 0
    assert "\nexamples:\n  jrpc-unix call /run/app.sock subtract 42 23\n" in out
    code, out, _ = cli(capsys, "--help")
    assert "143 terminated" in out
    assert "-- ends them" in out


def test_options_after_params_as_a_process(shared_demo: DemoProcess) -> None:
    done = run("call", shared_demo.path, "sum", "1", "--timeout", "5", "3", "--compact")
    assert (done.returncode, done.stdout, done.stderr) == (0, "4\n", "")
    done = run("call", shared_demo.path, "echo", "--", "--raw")
    assert (done.returncode, done.stdout) == (0, '"--raw"\n')


# -- JRPC_UNIX_SOCKET -------------------------------------------------------------------------


def test_default_target_from_the_environment(shared_demo: DemoProcess) -> None:
    env = {"JRPC_UNIX_SOCKET": shared_demo.path}
    done = run("call", "subtract", "42", "23", env=env)
    assert (done.returncode, done.stdout, done.stderr) == (0, "19\n", "")
    done = run("stats", "--json", env=env)
    assert done.returncode == 0
    assert "server" in json.loads(done.stdout)
    done = run("call", "--timeout", "5", "ping", env=env)  # options before the method too
    assert (done.returncode, done.stdout) == (0, '"pong"\n')
    # an explicit SOCK wins over the variable
    done = run("call", shared_demo.path, "ping", env={"JRPC_UNIX_SOCKET": "/nonexistent/x.sock"})
    assert (done.returncode, done.stdout) == (0, '"pong"\n')


@pytest.mark.parametrize(
    "argv",
    [
        ["call", "ping"],
        ["call", "subtract", "1", "2"],
        ["notify", "update", "x=1"],
        ["call", "/s.sock", "ping"],
    ],
)
def test_the_fast_path_reads_the_default_target_as_the_parser_does(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JRPC_UNIX_SOCKET", "/run/app.sock")
    quick = quick_args(argv)
    assert quick is not None
    assert vars(quick) == vars(parse(build_parser(serve=False), argv))


def test_without_a_target_the_usage_says_so(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JRPC_UNIX_SOCKET", raising=False)
    code, _, err = cli(capsys, "stats")
    assert code == 2
    assert "the following arguments are required: SOCK" in err


# -- -v, --connect-timeout, --wait -----------------------------------------------------------


def test_verbose_shows_the_transport_and_the_lines(
    shared_demo: DemoProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "call", shared_demo.path, "subtract", "5", "3", "-v")
    assert (code, out) == (0, "2\n")
    lines = err.splitlines()
    assert lines[0] == f"jrpc-unix: connecting to unix socket {shared_demo.path}"
    assert lines[1].startswith('-> {"jsonrpc":"2.0","method":"subtract","params":[5,3],"id":')
    assert lines[2].startswith('<- {"jsonrpc":"2.0","result":2,"id":')


def test_connect_timeout_bounds_connecting_alone(sock_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
    full = os.path.join(sock_dir, "full.sock")
    with FullBacklog(full):
        code, out, err = cli(capsys, "call", full, "ping", "--timeout", "60", "--connect-timeout", "0.1")
    assert (code, out) == (3, "")
    assert err.startswith(f"jrpc-unix: cannot connect to {full}: the server is not accepting connections")


def test_wait_for_a_socket_that_is_not_up_yet(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "later.sock")
    proc = subprocess.Popen(
        [*CLI, "call", "-v", "--wait", str(TIMEOUT), path, "ping"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        assert proc.stderr.readline() == f"jrpc-unix: connecting to unix socket {path}\n"
        assert proc.poll() is None  # still waiting: nothing listens there
        with served(path, basic_methods()):
            out, _ = proc.communicate(timeout=TIMEOUT)
        assert (proc.returncode, out) == (0, '"pong"\n')
    finally:
        proc.kill()
        proc.wait()


def test_without_wait_a_missing_socket_fails_at_once(
    sock_dir: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = os.path.join(sock_dir, "none.sock")
    code, _, err = cli(capsys, "call", path, "ping", "--wait", "0.05")
    assert code == 3
    assert err == f"jrpc-unix: cannot connect to {path}: no such socket file (is the server running?)\n"


# -- params from files and stdin -------------------------------------------------------------


def test_params_from_files(sock_dir: str) -> None:
    whole = os.path.join(sock_dir, "p.json")
    with open(whole, "w") as f:
        f.write('{"minuend": 5, "subtrahend": 3}\n')
    text = os.path.join(sock_dir, "t.txt")
    with open(text, "w") as f:
        f.write("two\nlines")
    assert parse_params([f"@{whole}"]) == {"minuend": 5, "subtrahend": 3}
    assert parse_params([f"value=@{whole}", "key=k"]) == {
        "value": {"minuend": 5, "subtrahend": 3},
        "key": "k",
    }
    assert parse_params([f"msg=@{text}"]) == {"msg": "two\nlines"}
    assert parse_params(['"@x"']) == ["@x"]  # a word that starts with @: written as JSON
    with pytest.raises(UsageError, match=r"^cannot read @/nonexistent.json: No such file or directory$"):
        parse_params(["@/nonexistent.json"])
    with pytest.raises(UsageError, match=r"^params read from .*t.txt is not valid JSON: "):
        parse_params([f"@{text}"])


def test_params_from_a_file_and_stdin_as_a_process(shared_demo: DemoProcess, sock_dir: str) -> None:
    whole = os.path.join(sock_dir, "p.json")
    with open(whole, "w") as f:
        f.write("[10, 4]")
    done = run("call", shared_demo.path, "subtract", f"@{whole}")
    assert (done.returncode, done.stdout) == (0, "6\n")
    done = run("call", shared_demo.path, "echo", "msg=@-", stdin='{"a": [1]}')
    assert (done.returncode, done.stdout) == (0, '{"a":[1]}\n')


# -- did you mean -----------------------------------------------------------------------------


def test_did_you_mean(shared_demo: DemoProcess, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "call", shared_demo.path, "substract", "5", "3")
    assert (code, out) == (1, "")
    assert err == "error [-32601] Method not found\n  did you mean: subtract?\n"
    with Client(shared_demo.path) as client, pytest.raises(RpcError) as info:
        client.call("config.sett")
    assert info.value.data == {
        "method": "config.sett",
        "did_you_mean": ["config.set", "config.get", "rpc.log.set"],
    }
    with pytest.raises(RpcError) as info, Client(shared_demo.path) as client:
        client.call("zzzzzz")
    assert info.value.data == "zzzzzz"  # nothing close: jsonrpcserver's data, the name


def test_no_suggestions_when_the_api_is_hidden(sock_path: str) -> None:
    with served(sock_path, basic_methods(), discover=False), Client(sock_path) as client:
        with pytest.raises(RpcError) as info:
            client.call("pong")
        assert info.value.data == "pong"
        with pytest.raises(RpcError) as info:
            client.call("ping2")
        assert info.value.data == "ping2"


# -- defects ------------------------------------------------------------------------------------


def test_notify_fails_when_the_server_refused_the_connection(
    sock_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with served(sock_path, basic_methods(), limits=Limits(max_connections_per_uid=1)):
        with LineClient(sock_path) as holder:
            assert holder.call("ping")["result"] == "pong"  # it holds the one connection allowed
            code, out, err = cli(capsys, "notify", sock_path, "ping")
            assert (code, out) == (1, "")
            assert err.startswith("error [-32006] Server overloaded\n")
            with (
                Client(sock_path) as client,
                pytest.raises(RpcError, match=r"^\[-32006\] Server overloaded$"),
            ):
                client.notify("ping")

        def admitted() -> bool:  # once the server has seen the holder leave
            with Client(sock_path) as client:
                try:
                    client.notify("ping")
                except RpcError:
                    return False
                return True

        wait_for(admitted, "room for a connection again")  # and then notify succeeds


def test_raw_prints_an_error_answer(shared_demo: DemoProcess, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "call", shared_demo.path, "fail", "no", "--raw")
    assert code == 1
    answer = json.loads(out)
    assert answer["error"]["message"] == "no"
    assert err.startswith("error [")


def test_an_empty_sock_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "call", "", "ping") == (
        2,
        "",
        "jrpc-unix call: SOCK is empty: give a socket path or @name (or set $JRPC_UNIX_SOCKET)\n",
    )


def test_an_abstract_name_with_no_listener(capsys: pytest.CaptureFixture[str]) -> None:
    name = f"@jrpc-unix-test-nobody-{os.getpid()}"
    assert cli(capsys, "call", name, "ping") == (
        3,
        "",
        f"jrpc-unix: cannot connect to {name}: "
        "connection refused (no server is listening on this abstract name)\n",
    )


def test_registering_a_name_twice() -> None:
    methods = Methods()
    methods.add("ping")(lambda: "pong")
    with pytest.raises(
        ValueError, match=r"^method 'ping' is registered already \(replace=True to replace it\)$"
    ):
        methods.add("ping")(lambda: "PONG")
    methods.add("ping", replace=True)(lambda: "PONG")
    assert methods["ping"]() == "PONG"
    with pytest.raises(ValueError, match=r"^method 'ping' is registered already"):
        Methods({"ping": lambda: 1}).register("ping", lambda: 2)


def test_a_timeout_on_a_plain_function_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^method 'f': timeout= cannot be enforced on a plain function"):
        Methods().add("f", timeout=1.0)(lambda: None)


# -- serve ----------------------------------------------------------------------------------------


def test_a_bad_serve_target_is_one_line_and_exit_2(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "s.sock")
    broken = os.path.join(sock_dir, "broken.py")
    with open(broken, "w") as f:
        f.write("import no_such_module_anywhere\n")
    bad_values = os.path.join(sock_dir, "values.py")
    with open(bad_values, "w") as f:
        f.write("methods = {'ping': 5}\n")
    for target, message in (
        (f"{broken}:methods", f"cannot load {broken}: ModuleNotFoundError: No module named"),
        (f"{bad_values}:methods", f"{bad_values}:methods: method 'ping': 5 is not callable"),
    ):
        done = run("serve", target, path)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(f"jrpc-unix serve: {message}")
        assert done.stderr.count("\n") == 1  # one line, no traceback


def test_serve_an_abstract_address_with_a_policy(sock_dir: str) -> None:
    name = f"@jrpc-unix-test-{os.getpid()}"
    done = run("serve", "jrpc_unix.demo:methods", name)
    assert done.returncode == 2
    assert done.stderr == (
        f"jrpc-unix serve: {name} is an abstract address: it has no file permissions, so say who "
        "may connect (--allow-user USER, --allow-group GROUP)\n"
    )
    done = run("serve", "jrpc_unix.demo:methods", name, "--allow-user", "no-such-user-here")
    assert (done.returncode, done.stderr) == (2, "jrpc-unix serve: no such user: 'no-such-user-here'\n")
    done = run("serve", "jrpc_unix.demo:methods", name, "--grant-user", "root")
    assert done.returncode == 2
    assert "expected NAME=LEVEL" in done.stderr
    argv = ["serve", "jrpc_unix.demo:methods", name, "--allow-user", "root", "--grant-user", "nobody=operate"]
    log = os.path.join(sock_dir, "log")
    with ServerProcess([*CLI, *argv], log, lambda: f"listening on {name}".encode() in _read(log)) as server:
        with Client(name) as client:
            assert client.call("ping") == "pong"
        assert server.signal(signal.SIGTERM) == 0
        assert f"stopped accepting on {name}" in server.log()  # no file was removed


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""
