"""A trio listener on a UNIX socket file, with a safe file lifecycle (trio has none: trio#279).

* The file appears with its final mode (default 0600) and group: the socket is bound under a
  random temporary name in the same directory (created 0600 by ``fchmod`` before ``bind``),
  given its mode and group, set listening, then ``rename``\\d over the final path. Nobody can
  ever connect to a file with looser permissions, and clients never see the path missing.
* A live server's socket is never stolen (a test connection succeeds: AddressInUseError); a
  stale one (connection refused) is replaced by that rename; a path that is not a socket is
  never touched. Two servers starting at once are serialised by an ``flock`` on the directory.
* On close the file is removed only if it is still ours (same device and inode).
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import socket as stdsocket
import stat
from dataclasses import dataclass

import trio

from ._errors import AddressInUseError, ServerSetupError

__all__ = ["SocketFile", "open_unix_listener"]

#: sun_path is 108 bytes on Linux, including the terminating NUL.
MAX_PATH_BYTES = 107


@dataclass(slots=True)
class SocketFile:
    """The socket file a server created; :meth:`remove` deletes it only if still ours."""

    path: str
    dev: int
    ino: int

    def remove(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if (st.st_dev, st.st_ino) == (self.dev, self.ino):
            os.unlink(self.path)


def _check_path(path: str) -> None:
    size = len(os.fsencode(path))
    if size > MAX_PATH_BYTES:
        raise ServerSetupError(
            f"socket path is {size} bytes long; the kernel allows at most {MAX_PATH_BYTES}: {path}"
        )


def _refuse_live_or_foreign(path: str) -> None:
    """Raise unless ``path`` is free or a stale socket that may be replaced."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ServerSetupError(f"{path} exists and is not a socket; refusing to replace it")
    probe = stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        return  # stale: nobody listening
    except OSError as exc:
        if exc.errno in (errno.ENOENT,):
            return
        raise ServerSetupError(f"cannot check the existing socket {path}: {exc.strerror}") from None
    finally:
        probe.close()
    raise AddressInUseError(f"another server is already listening on {path}")


def _bind_in_place(
    path: str, mode: int, gid: int | None, backlog: int
) -> tuple[stdsocket.socket, SocketFile]:
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{secrets.token_hex(4)}.sock")
    _check_path(tmp if len(tmp) > len(path) else path)
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise ServerSetupError(f"cannot use directory {directory}: {exc.strerror}") from None
    sock = stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
    try:
        fcntl.flock(dir_fd, fcntl.LOCK_EX)  # held for microseconds: setup only
        _refuse_live_or_foreign(path)
        os.fchmod(sock.fileno(), 0o600)  # the new file's mode is this & ~umask
        sock.bind(tmp)
        try:
            if gid is not None:
                os.chown(tmp, -1, gid)
            os.chmod(tmp, mode)
            sock.listen(backlog)
            os.rename(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
        st = os.stat(path)
        return sock, SocketFile(path, st.st_dev, st.st_ino)
    except OSError as exc:
        sock.close()
        raise ServerSetupError(f"cannot listen on {path}: {exc.strerror or exc}") from None
    except BaseException:
        sock.close()
        raise
    finally:
        os.close(dir_fd)  # closing releases the flock


async def open_unix_listener(
    path: str, *, mode: int = 0o600, gid: int | None = None, backlog: int = 128
) -> tuple[trio.SocketListener, SocketFile]:
    """Listen on ``path``; see the module docstring for how the file is made safe."""
    sock, sockfile = await trio.to_thread.run_sync(_bind_in_place, path, mode, gid, backlog)
    return trio.SocketListener(trio.socket.from_stdlib_socket(sock)), sockfile
