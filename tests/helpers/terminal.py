"""The command line as a child process, its output on a real pseudo-terminal (``pty.openpty``)."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from typing import Any

from helpers import ROOT, TIMEOUT

__all__ = ["CLI", "finish", "on_terminal", "spawn"]

CLI = [sys.executable, "-m", "jrpc_unix"]


def spawn(*argv: str, **pipes: Any) -> subprocess.Popen[bytes]:
    options: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **pipes}
    return subprocess.Popen([*CLI, *argv], stdin=subprocess.DEVNULL, cwd=str(ROOT), **options)


def finish(proc: subprocess.Popen[bytes]) -> tuple[int, bytes, bytes]:
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(TIMEOUT)
    return proc.returncode, out or b"", err or b""


def on_terminal(*argv: str, stdout: bool = False, stderr: bool = False) -> tuple[int, bytes, bytes]:
    """Run the CLI with stdout and/or stderr on a 100-column pseudo-terminal.

    Returns (exit code, what the terminal showed, what the piped stream carried).
    """
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = spawn(
        *argv,
        stdout=secondary if stdout else subprocess.PIPE,
        stderr=secondary if stderr else subprocess.PIPE,
    )
    os.close(secondary)
    shown = b""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        ready, _, _ = select.select([primary], [], [], deadline - time.monotonic())
        if not ready:
            break
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # EIO: every process on the terminal's other side has closed it
            break
        if not chunk:
            break
        shown += chunk
    os.close(primary)
    code, out, err = finish(proc)
    return code, shown.replace(b"\r\n", b"\n"), out or err
