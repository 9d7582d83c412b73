"""Reaching a socket on another host through the system's ``ssh`` (``ssh://`` addresses).

The ssh client does the distributed part (keys, agents, ``~/.ssh/config``, ProxyJump,
ControlMaster); we run it non-interactively with one end of a socketpair as its stdin and stdout
and speak the protocol over the other end, so the blocking client reuses
:class:`~.connect.UnixSocketStream` unchanged and the trio client a ``trio.SocketStream``. The
remote side, in order of preference (specs/remote.md):

1. ``ssh -W /path`` when the local OpenSSH is 9.4 or later (streamlocal over stdio; nothing runs
   remotely);
2. else a remote command: ``jrpc-unix bridge /path`` if the remote host has it, else the relay
   of :mod:`.relay` sent inline to the remote ``python3``.

ssh's own failures (exit 255: unreachable, auth refused, host key changed) and the remote side's
(no such socket) end the stream before a byte came: that EOF becomes a ConnectError quoting
ssh's stderr. Standard library only: the blocking client and the command line import it.
"""

from __future__ import annotations

import contextlib
import math
import os
import select
import shlex
import socket
from collections.abc import Callable
from typing import Final

from .._address import SshAddress, parse_ssh
from .._errors import ConnectError
from .connect import UnixSocketStream, remaining

__all__ = ["CLOSE_WAIT", "SSH_ENV", "Log", "SshProcess", "SshStream", "ssh_command"]

#: The ssh command line, split like a shell would (git's ``GIT_SSH_COMMAND``).
SSH_ENV: Final = "JRPC_UNIX_SSH"
#: What the remote command writes on stderr first, naming the remote side it runs.
_MARK = "jrpc-unix remote side: "
#: How long closing waits for ssh to finish passing on what was written, before SIGTERM.
CLOSE_WAIT: Final = 5.0

#: Told, in words, how an ssh address is reached (the command line's ``-v``).
Log = Callable[[str], None]


def _ssh_argv() -> list[str]:
    argv = shlex.split(os.environ.get(SSH_ENV) or "ssh")
    if not argv:
        raise ConnectError(f"${SSH_ENV} names no command")
    return argv


_stdio_forwarding: dict[tuple[str, ...], bool] = {}


def stdio_forwarding(argv: list[str]) -> bool:
    """Whether this ssh is OpenSSH 9.4 or later (``-W`` to a UNIX socket); asked once per process."""
    key = tuple(argv)
    if key not in _stdio_forwarding:
        found = False
        err = os.memfd_create("ssh-version", os.MFD_CLOEXEC)
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        try:
            os.waitpid(_spawn([*argv, "-V"], null, err), 0)
            version = _read_all(err).partition("OpenSSH_")[2]
            major, _, minor = version.partition(".")
            found = (int(major), int(minor[:1] or 0)) >= (9, 4)
        except (OSError, ValueError):
            pass
        finally:
            os.close(err)
            os.close(null)
        _stdio_forwarding[key] = found
    return _stdio_forwarding[key]


def ssh_command(target: SshAddress, connect_timeout: float | None, stdio: bool, ssh: list[str]) -> list[str]:
    """The command line that gives ``target``'s socket on its stdin/stdout (``ssh``: the client)."""
    argv = [*ssh, "-o", "BatchMode=yes"]
    if connect_timeout is not None:
        argv += ["-o", f"ConnectTimeout={max(math.ceil(connect_timeout), 1)}"]
    if target.port is not None:
        argv += ["-p", str(target.port)]
    if target.user is not None:
        argv += ["-l", target.user]
    if stdio:
        return [*argv, "-W", target.path, "--", target.host]
    return [*argv, "-T", "--", target.host, remote_command(target.path)]


def remote_command(path: str) -> str:
    """A POSIX shell command: ``jrpc-unix bridge`` if installed, else the inline python3 relay."""
    from . import relay

    with open(relay.__file__, encoding="utf-8") as source:
        program = source.read()
    p = shlex.quote(path)
    return (
        f"if command -v jrpc-unix >/dev/null 2>&1; then echo '{_MARK}jrpc-unix bridge' >&2; "
        f"exec jrpc-unix bridge {p}; fi; echo '{_MARK}python3 relay' >&2; "
        f"exec python3 -c {shlex.quote(program)} {p}"
    )


def _spawn(argv: list[str], stdio: int, err: int) -> int:
    """Start ``argv`` with ``stdio`` as its stdin and stdout and ``err`` as its stderr, in its own
    process group: Ctrl-C at the terminal is ours to handle (``watch`` unsubscribes through ssh)."""
    actions = [(os.POSIX_SPAWN_DUP2, fd, target) for fd, target in ((stdio, 0), (stdio, 1), (err, 2))]
    return os.posix_spawnp(argv[0], argv, os.environ, file_actions=actions, setpgroup=0)


def _read_all(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


class SshProcess:
    """One ``ssh`` process reaching ``address``: ``sock`` is our end of its stdin/stdout, its
    stderr is kept (in memory) to quote when it fails."""

    def __init__(self, address: str, connect_timeout: float | None, log: Log | None = None) -> None:
        self.address = address
        self.log = log
        try:
            target = parse_ssh(address)
        except ValueError as exc:
            raise ConnectError(str(exc)) from None
        ssh = _ssh_argv()
        stdio = stdio_forwarding(ssh)
        argv = ssh_command(target, connect_timeout, stdio, ssh)
        if log is not None:
            how = "ssh -W (OpenSSH >= 9.4)" if stdio else "a remote command (jrpc-unix bridge, else python3)"
            log(f"{address}: through {how}: {shlex.join(argv[:-1] if not stdio else argv)} ...")
        self.sock, theirs = socket.socketpair()
        self._err = os.memfd_create("ssh-stderr", os.MFD_CLOEXEC)
        try:
            self.pid = _spawn(argv, theirs.fileno(), self._err)
        except OSError as exc:
            self.sock.close()
            os.close(self._err)
            why = f"cannot run {argv[0]!r} ({exc.strerror})"
            raise ConnectError(f"cannot connect to {address}: {why}") from None
        finally:
            theirs.close()
        self.pidfd = os.pidfd_open(self.pid)
        self.status: int | None = None

    def poll(self) -> int | None:
        """ssh's exit status once it has ended (then reaped), else None; never blocks."""
        if self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
                os.close(self.pidfd)
        return self.status

    def wait(self, seconds: float) -> int | None:
        """Wait up to ``seconds`` for ssh to end; its exit status, or None."""
        if self.status is None:
            poller = select.poll()
            poller.register(self.pidfd, select.POLLIN)
            poller.poll(max(math.ceil(seconds * 1000), 0))
        return self.poll()

    def stderr(self) -> tuple[str | None, str]:
        """The remote side that ran (if one said so), and the rest of ssh's stderr."""
        side, lines = None, []
        for line in _read_all(self._err).splitlines():
            if line.startswith(_MARK):
                side = line[len(_MARK) :]
            elif line.strip():
                lines.append(line.strip())
        return side, "; ".join(lines)

    def failure(self) -> ConnectError:
        """Why the stream ended before anything came (call once ssh has ended, or soon will)."""
        status = self.wait(CLOSE_WAIT)
        side, text = self.stderr()
        where = f"cannot connect to {self.address}"
        if status == 255:
            return ConnectError(f"{where}: ssh failed: {text or 'exit status 255'}")
        said = text or f"the remote side ({side or 'ssh'}) ended with status {status}"
        return ConnectError(f"{where}: {said}")

    def finish(self, grace: float = CLOSE_WAIT) -> None:
        """End ssh: it has ``grace`` seconds to pass on what was written (our end is shut for
        writing first), then SIGTERM; reaped, so no zombie stays."""
        if self.status is None and self.wait(grace) is None:
            import signal

            os.kill(self.pid, signal.SIGTERM)
            if self.wait(CLOSE_WAIT) is None:
                os.kill(self.pid, signal.SIGKILL)
                self.wait(CLOSE_WAIT)
        if self.log is not None:
            side = self.stderr()[0]
            self.log(f"{self.address}: remote side: {side or 'ssh -W'}; ssh exit status {self.status}")
        os.close(self._err)


class SshStream(UnixSocketStream):
    """The blocking client's stream to an ``ssh://`` address (a :class:`~.transport.BlockingStream`)."""

    def __init__(self, process: SshProcess) -> None:
        super().__init__(process.sock)
        self._process = process
        self._heard = False
        self._gave_up = False  # the last wait timed out: an answer is abandoned, not awaited

    def send_all(self, data: bytes, deadline: float | None) -> None:
        self._gave_up = False
        super().send_all(data, deadline)

    def wait_readable(self, deadline: float | None) -> bool:
        ready = super().wait_readable(deadline)
        self._gave_up = not ready
        return ready

    @classmethod
    def connecting(cls, log: Log | None) -> Callable[[str, float | None], SshStream]:
        """The ``connect`` of :class:`~.blocking_io.BlockingTransport` for ssh addresses."""

        def connect(address: str, deadline: float | None) -> SshStream:
            return cls(SshProcess(address, remaining(deadline), log))

        return connect

    def receive_some(self) -> bytes:
        """As a socket's; an EOF before anything came is a ConnectError quoting ssh."""
        try:
            data = super().receive_some()
        except ConnectionResetError:  # ssh ended with our request unread
            if self._heard:
                raise
            data = b""
        if data:
            self._heard = True
        elif not self._heard:
            raise self._process.failure()
        return data

    def close(self) -> None:
        """Shut our writing side and let ssh pass on what was written; after a timeout (the
        transport closes to drop a late answer) ssh is ended at once instead."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)
        self._process.finish(0.0 if self._gave_up else CLOSE_WAIT)
        super().close()
