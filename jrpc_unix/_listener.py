"""Where a server listens, and a safe life for its socket file (trio has none: trio#279).

Three kinds of address:

``/run/app/control.sock``
    A socket file. It appears with its final mode (default 0600) and group: the socket is bound
    under a random temporary name in the same directory (created 0600 by ``fchmod`` before
    ``bind``), given its mode and group, set listening, then ``rename``\\d over the final path.
    Nobody ever connects to a file with looser permissions, and clients never see the path
    missing. A live server's socket is never stolen (a test connection succeeds:
    AddressInUseError); a stale one (connection refused) is replaced by that rename; a path that
    is not a socket is never touched. Two servers starting at once are serialised by an
    ``flock`` on the directory. On close the file is removed only if it is still ours (same
    device and inode). Paths longer than ``sun_path`` (107 bytes) work through
    ``/proc/self/fd/<directory fd>/<name>``.
``@name``
    A Linux abstract address: no file, so no file permissions; the server insists on an access
    policy for it.
``systemd`` or ``systemd:NAME``
    The listening socket systemd passed (``LISTEN_FDS``, ``LISTEN_PID``, ``LISTEN_FDNAMES``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import socket as stdsocket
import stat
from collections.abc import Iterator
from dataclasses import dataclass

import trio

from ._errors import AddressInUseError, ServerSetupError

__all__ = ["MAX_PATH_BYTES", "SocketFile", "connect_path", "is_abstract", "open_unix_listener"]

#: sun_path is 108 bytes on Linux, including the terminating NUL.
MAX_PATH_BYTES = 107
_SD_LISTEN_FDS_START = 3


def is_abstract(address: str) -> bool:
    return address.startswith("@")


@dataclass(slots=True)
class SocketFile:
    """The socket file a server created; :meth:`remove` deletes it only if still ours."""

    path: str | None  # None: nothing to remove (abstract address, systemd's socket)
    dev: int = 0
    ino: int = 0

    def remove(self) -> None:
        if self.path is None:
            return
        directory, name = os.path.split(os.path.abspath(self.path))
        try:
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return
        try:
            # Under the starters' lock: a server starting now (seeing our file as stale once our
            # listener is closed) cannot rename its socket in between our check and our unlink.
            fcntl.flock(dir_fd, fcntl.LOCK_EX)
            st = os.lstat(name, dir_fd=dir_fd)
            if (st.st_dev, st.st_ino) == (self.dev, self.ino):
                os.unlink(name, dir_fd=dir_fd)
        except OSError:
            pass  # gone already, or not ours to remove
        finally:
            os.close(dir_fd)  # closing releases the flock


@contextlib.contextmanager
def connect_path(path: str) -> Iterator[str]:
    """A name ``connect``/``bind`` accept for ``path``, even past the 107-byte limit."""
    if len(os.fsencode(path)) <= MAX_PATH_BYTES:
        yield path
        return
    directory, name = os.path.split(os.path.abspath(path))
    if len(os.fsencode(name)) > MAX_PATH_BYTES - 30:
        raise ServerSetupError(f"socket file name is too long for the kernel (max ~77 bytes): {name}")
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{name}"
    finally:
        os.close(fd)


def _refuse_live_or_foreign(path: str, name: str) -> None:
    """Raise unless ``path`` is free or a stale socket that may be replaced."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ServerSetupError(f"{path} exists and is not a socket; refusing to replace it")
    probe = stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
    probe.setblocking(False)  # a live server whose accept queue is full must not block us
    try:
        probe.connect(name)
    except (ConnectionRefusedError, FileNotFoundError):
        return  # stale: nobody listening
    except BlockingIOError:
        pass  # EAGAIN: listening, its accept queue full: live
    except OSError as exc:
        raise ServerSetupError(f"cannot check the existing socket {path}: {exc.strerror}") from None
    finally:
        probe.close()
    raise AddressInUseError(f"another server is already listening on {path}")


def _bind_file(path: str, mode: int, gid: int | None, backlog: int) -> tuple[stdsocket.socket, SocketFile]:
    directory, final = os.path.split(os.path.abspath(path))
    tmp = f".{secrets.token_hex(4)}.sock"
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise ServerSetupError(f"cannot use directory {directory}: {exc.strerror}") from None
    sock = stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
    longest = max(len(os.fsencode(final)), len(tmp))  # both names are bound or connected to
    via_fd = len(os.fsencode(directory)) + 1 + longest > MAX_PATH_BYTES
    prefix = f"/proc/self/fd/{dir_fd}/" if via_fd else directory + "/"
    if len(os.fsencode(prefix)) + longest > MAX_PATH_BYTES:
        os.close(dir_fd)
        sock.close()
        raise ServerSetupError(f"socket file name is too long for the kernel: {final}")
    try:
        fcntl.flock(dir_fd, fcntl.LOCK_EX)  # held for microseconds: setup only
        _refuse_live_or_foreign(path, prefix + final)
        os.fchmod(sock.fileno(), 0o600)  # the new file's mode is this & ~umask
        sock.bind(prefix + tmp)
        try:
            if gid is not None:
                os.chown(tmp, -1, gid, dir_fd=dir_fd)
            os.chmod(tmp, mode, dir_fd=dir_fd)
            sock.listen(backlog)
            os.rename(tmp, final, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            os.unlink(tmp, dir_fd=dir_fd)
            raise
        st = os.stat(final, dir_fd=dir_fd)
        # Absolute: a relative path must still name our file after the program changes directory.
        return sock, SocketFile(os.path.join(directory, final), st.st_dev, st.st_ino)
    except OSError as exc:
        sock.close()
        raise ServerSetupError(f"cannot listen on {path}: {exc.strerror or exc}") from None
    except BaseException:
        sock.close()
        raise
    finally:
        os.close(dir_fd)  # closing releases the flock


def _bind_abstract(address: str, backlog: int) -> tuple[stdsocket.socket, SocketFile]:
    sock = stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
    try:
        sock.bind("\0" + address[1:])
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise AddressInUseError(f"another server is already listening on {address}") from None
        raise ServerSetupError(f"cannot listen on {address}: {exc.strerror}") from None
    return sock, SocketFile(None)


def _systemd_socket(address: str) -> tuple[stdsocket.socket, SocketFile]:
    """Take the listening socket systemd passed, by name (``systemd:NAME``) or the only one."""
    wanted = address.partition(":")[2] or None
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        raise ServerSetupError("no socket from systemd: LISTEN_PID is not this process")
    count = int(os.environ.get("LISTEN_FDS", "0") or "0")
    names = os.environ.get("LISTEN_FDNAMES", "").split(":")
    fds = list(range(_SD_LISTEN_FDS_START, _SD_LISTEN_FDS_START + count))
    if wanted is not None:
        fds = [fd for i, fd in enumerate(fds) if i < len(names) and names[i] == wanted]
    if len(fds) != 1:
        which = f"named {wanted!r}" if wanted else "(pass systemd:NAME to choose)"
        raise ServerSetupError(f"systemd passed {count} socket(s); need exactly one {which}")
    for var in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):  # not for our children
        os.environ.pop(var, None)
    sock = stdsocket.socket(fileno=fds[0])
    if sock.family != stdsocket.AF_UNIX or not sock.getsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_ACCEPTCONN):
        sock.detach()
        raise ServerSetupError(f"fd {fds[0]} from systemd is not a listening UNIX socket")
    return sock, SocketFile(None)


def _open(address: str, mode: int, gid: int | None, backlog: int) -> tuple[stdsocket.socket, SocketFile]:
    if is_abstract(address):
        return _bind_abstract(address, backlog)
    if address == "systemd" or address.startswith("systemd:"):
        return _systemd_socket(address)
    return _bind_file(address, mode, gid, backlog)


async def open_unix_listener(
    address: str, *, mode: int = 0o600, gid: int | None = None, backlog: int = 0xFFFF
) -> tuple[trio.SocketListener, SocketFile]:
    """Listen on ``address``; see the module docstring for the kinds and their safety."""
    sock, sockfile = await trio.to_thread.run_sync(_open, address, mode, gid, backlog)
    return trio.SocketListener(trio.socket.from_stdlib_socket(sock)), sockfile
