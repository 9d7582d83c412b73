"""Where a server listens, and a safe life for its socket file (trio has none: trio#279).

Three kinds of address:

``/run/app/control.sock``
    A socket file, made so that the server never changes the mode or owner of anything it did
    not create, even in a directory other users may write (specs/security.md). The socket is
    bound in a 0700 directory the server makes next to the final path and reaches only through
    its fd (no name another user could swap for a symlink), given its mode (default 0600) and
    group there, set listening, then ``rename``\\d over the final path: it appears with its final
    permissions, already listening, and clients never see the path missing. (``fchmod`` on the
    socket's fd would not do: on Linux it changes the socket's inode, not the file.)

    A live server's socket is never stolen (a test connection succeeds: AddressInUseError); a
    stale one (refused) is replaced by that rename; a path that is not a socket is never
    touched. Starters on one path take turns by ``flock`` on ``.NAME.jrpc-lock``, a file the
    server creates 0600 and deletes once set up: only its uid and root can open it, so no other
    user can hold it (one made by someone else is refused), and the wait is bounded. Stopping
    takes no lock: the server removes its file (if still its inode) *before* closing its
    listener, so its file is never stale and no starter replaces it meanwhile.

    Paths longer than ``sun_path`` (107 bytes) work through ``/proc/self/fd/<dir fd>/<name>``.
``@name``
    A Linux abstract address: no file, so no file permissions; the server insists on an access
    policy for it.
``systemd`` or ``systemd:NAME``
    The listening socket systemd passed (``LISTEN_FDS``, ``LISTEN_PID``, ``LISTEN_FDNAMES``).

The listen backlog is trio's default: as large as the kernel allows (``net.core.somaxconn``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import socket as stdsocket
import stat
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import trio

from .._address import MAX_PATH_BYTES, is_abstract
from .._errors import AddressInUseError, ServerSetupError
from .systemd import systemd_socket

__all__ = ["SocketFile", "close_on_error", "is_abstract", "listening", "open_unix_listener"]

#: How long a start waits for another starter of the same uid on the same path (its setup takes
#: milliseconds; only a stuck process of ours holds the lock longer).
LOCK_WAIT = 5.0
#: trio's default backlog (trio._highlevel_open_tcp_listeners): the largest a uint16 holds; the
#: kernel silently caps it at net.core.somaxconn.
_MAX_BACKLOG = 0xFFFF
_INNER = "s"  # the socket's name inside the private directory
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


@dataclass(slots=True)
class SocketFile:
    """The socket file a server created; :meth:`remove` deletes it only if still ours.

    Call it while still listening (:func:`listening`; see the module docstring): a few
    syscalls and no lock, so it never blocks the event loop. Idempotent.
    """

    path: str | None  # None: nothing to remove (abstract address, systemd's socket, removed)
    dev: int = 0
    ino: int = 0

    def remove(self) -> None:
        path, self.path = self.path, None
        if path is None:
            return
        directory, name = os.path.split(path)
        with contextlib.suppress(OSError):  # gone already, or not ours to remove
            dir_fd = os.open(directory, _DIR_FLAGS)
            try:
                st = os.lstat(name, dir_fd=dir_fd)
                if (st.st_dev, st.st_ino) == (self.dev, self.ino):
                    os.unlink(name, dir_fd=dir_fd)
            finally:
                os.close(dir_fd)


def _refuse_live_or_foreign(dir_fd: int, final: str, name: str, path: str) -> None:
    """Raise unless ``final`` is free or a stale socket that may be replaced."""
    try:
        st = os.lstat(final, dir_fd=dir_fd)
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


@contextlib.contextmanager
def _starters_lock(dir_fd: int, name: str, shown: str) -> Iterator[None]:
    """Hold the lock file ``name`` (see the module docstring); removed again on release."""
    deadline, pause = time.monotonic() + LOCK_WAIT, 0.001
    while True:
        fd = _open_lock(dir_fd, name, shown)
        if fd is None:
            continue  # its holder removed it between our two opens
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if time.monotonic() >= deadline:
                raise ServerSetupError(
                    f"timed out after {LOCK_WAIT:g} s waiting for {shown}: another process of uid "
                    f"{os.geteuid()} holds it (a server starting on the same path, or a stuck one)"
                ) from None
            time.sleep(pause)  # in the setup thread, never on the event loop
            pause = min(pause * 2, 0.05)
            continue
        held = os.fstat(fd)
        with contextlib.suppress(FileNotFoundError):
            now = os.lstat(name, dir_fd=dir_fd)
            if (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
                break  # still the file at that name: the lock is ours
        os.close(fd)  # its holder removed it before we got it: take the new one
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name, dir_fd=dir_fd)  # before the close that releases the lock
        os.close(fd)


def _open_lock(dir_fd: int, name: str, shown: str) -> int | None:
    """Open (creating it 0600) the lock file, refusing one another user could ever have opened."""
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        return os.open(name, flags | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=dir_fd)
    except FileExistsError:
        pass
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        why = "it is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
        raise ServerSetupError(f"refusing the lock file {shown}: {why}") from None
    st = os.fstat(fd)
    if st.st_nlink == 0:  # its holder removed it after our open
        os.close(fd)
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_nlink != 1 or st.st_mode & 0o077:
        os.close(fd)
        raise ServerSetupError(
            f"refusing the lock file {shown}: it is not a private file of uid {os.geteuid()} "
            f"(uid {st.st_uid}, {stat.filemode(st.st_mode)}, {st.st_nlink} links)"
        )
    return fd


@contextlib.contextmanager
def _private_dir(dir_fd: int, directory: str) -> Iterator[int]:
    """A fresh 0700 directory in ``dir_fd``, as an fd; removed (empty) afterwards."""
    name = f".jrpc-{secrets.token_hex(8)}"
    os.mkdir(name, 0o700, dir_fd=dir_fd)
    fd = -1
    try:
        with contextlib.suppress(OSError):
            fd = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=dir_fd)
        if fd >= 0 and ((st := os.fstat(fd)).st_uid != os.geteuid() or st.st_mode & 0o077):
            os.close(fd)
            fd = -1
        if fd < 0:
            raise ServerSetupError(
                f"{directory}: another user replaced the server's private directory "
                "while it started (others can write there: see specs/security.md)"
            )
        try:
            yield fd
        finally:
            with contextlib.suppress(OSError):
                os.unlink(_INNER, dir_fd=fd)  # there only after a failure
            os.close(fd)
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(name, dir_fd=dir_fd)


def _short(directory: str, name: str, dir_fd: int) -> str:
    """``directory/name`` as ``bind``/``connect`` take it: via ``/proc/self/fd`` if too long."""
    for candidate in (f"{directory}/{name}", f"/proc/self/fd/{dir_fd}/{name}"):
        if len(os.fsencode(candidate)) <= MAX_PATH_BYTES:
            return candidate
    size = len(os.fsencode(f"/proc/self/fd/{dir_fd}/{name}"))
    raise ServerSetupError(
        f"socket file name is too long for the kernel: {name} "
        f"({size} bytes through /proc/self/fd; the kernel allows at most {MAX_PATH_BYTES})"
    )


@contextlib.contextmanager
def close_on_error(sock: stdsocket.socket) -> Iterator[stdsocket.socket]:
    """``sock``, closed if the block raises (trio's idiom, ``_highlevel_open_unix_stream``)."""
    try:
        yield sock
    except BaseException:
        sock.close()
        raise


def _bind_file(path: str, mode: int, gid: int | None, backlog: int) -> tuple[stdsocket.socket, SocketFile]:
    directory, final = os.path.split(os.path.abspath(path))
    try:
        dir_fd = os.open(directory, _DIR_FLAGS)
    except OSError as exc:
        raise ServerSetupError(f"cannot use directory {directory}: {exc.strerror}") from None
    lock = f".{final}.jrpc-lock"
    try:
        with close_on_error(stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)) as sock:
            probe = _short(directory, final, dir_fd)
            with _starters_lock(dir_fd, lock, os.path.join(directory, lock)):
                _refuse_live_or_foreign(dir_fd, final, probe, path)
                with _private_dir(dir_fd, directory) as private_fd:
                    sock.bind(f"/proc/self/fd/{private_fd}/{_INNER}")  # no name another user can redirect
                    st = os.lstat(_INNER, dir_fd=private_fd)  # ours: nobody else can write in there
                    if gid is not None:
                        os.chown(_INNER, -1, gid, dir_fd=private_fd, follow_symlinks=False)
                    os.chmod(_INNER, mode, dir_fd=private_fd)
                    sock.listen(backlog)
                    os.rename(_INNER, final, src_dir_fd=private_fd, dst_dir_fd=dir_fd)
        # Absolute: a relative path must still name our file after the program changes directory.
        return sock, SocketFile(os.path.join(directory, final), st.st_dev, st.st_ino)
    except OSError as exc:
        raise ServerSetupError(f"cannot listen on {path}: {exc.strerror or exc}") from None
    finally:
        os.close(dir_fd)


def _bind_abstract(address: str, backlog: int) -> tuple[stdsocket.socket, SocketFile]:
    try:
        with close_on_error(stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)) as sock:
            sock.bind("\0" + address[1:])
            sock.listen(backlog)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise AddressInUseError(f"another server is already listening on {address}") from None
        raise ServerSetupError(f"cannot listen on {address}: {exc.strerror}") from None
    return sock, SocketFile(None)


def _open(address: str, mode: int, gid: int | None, backlog: int) -> tuple[stdsocket.socket, SocketFile]:
    if is_abstract(address):
        return _bind_abstract(address, backlog)
    if address == "systemd" or address.startswith("systemd:"):
        return systemd_socket(address), SocketFile(None)
    return _bind_file(address, mode, gid, backlog)


async def open_unix_listener(
    address: str, *, mode: int = 0o600, gid: int | None = None, backlog: int | None = None
) -> tuple[trio.SocketListener, SocketFile]:
    """Listen on ``address``; see the module docstring for the kinds and their safety.

    The setup (a bounded lock wait, filesystem calls) runs in a worker thread, never on the
    event loop. ``backlog`` None: as large as the kernel allows.
    """
    backlog = _MAX_BACKLOG if backlog is None else min(backlog, _MAX_BACKLOG)
    sock, sockfile = await trio.to_thread.run_sync(_open, address, mode, gid, backlog)
    return trio.SocketListener(trio.socket.from_stdlib_socket(sock)), sockfile


@contextlib.asynccontextmanager
async def listening(listener: trio.SocketListener, sockfile: SocketFile) -> AsyncIterator[None]:
    """Close ``listener`` on the way out, removing ``sockfile`` first (so it is never stale)."""
    try:
        yield
    finally:
        sockfile.remove()
        await listener.aclose()
