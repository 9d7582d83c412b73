"""What a socket address means, for both sides: the one copy of the rules.

``/run/app/control.sock``
    A socket file. ``sun_path`` holds :data:`MAX_PATH_BYTES`; a longer path is reached through
    ``/proc/self/fd/<directory fd>/<name>`` (:func:`socket_name` for ``connect``; the server
    binds through a directory fd of its own), so only a file name that is itself too long fails.
``@name``
    A Linux abstract address (``\\0name`` to the kernel): no file.
``systemd``, ``systemd:NAME``
    Only for a server: the listening socket systemd passed.
``ssh://[user@]host[:port]/abs/path.sock``
    Only for a client: the socket ``/abs/path.sock`` on ``host``, reached through the system's
    ``ssh`` (:mod:`._client.ssh`; specs/remote.md). :func:`parse_ssh` reads it.

Standard library only: the blocking client and the command line import it.
"""

from __future__ import annotations

import errno
import os

TYPE_CHECKING = False  # typing's import is a share of a CLI start (specs/performance.md)
if TYPE_CHECKING:
    from typing import Final

__all__ = ["MAX_PATH_BYTES", "SSH_SCHEME", "SshAddress", "is_abstract", "is_ssh", "parse_ssh", "socket_name"]

SSH_SCHEME: Final = "ssh://"

#: sun_path holds 108 bytes on Linux, including the terminating NUL.
MAX_PATH_BYTES: Final = 107


def is_abstract(address: str) -> bool:
    return address.startswith("@")


def is_ssh(address: str) -> bool:
    return address.startswith(SSH_SCHEME)


class SshAddress(tuple[str | None, str, int | None, str]):
    """``(user, host, port, path)`` of an ssh address. A tuple subclass with named properties,
    not a NamedTuple: building one at import is a measurable share of a CLI start
    (specs/performance.md, as for ``_wire.requests.Notification``)."""

    __slots__ = ()

    def __new__(cls, user: str | None, host: str, port: int | None, path: str) -> SshAddress:
        return super().__new__(cls, (user, host, port, path))

    @property
    def user(self) -> str | None:
        return self[0]

    @property
    def host(self) -> str:
        return self[1]

    @property
    def port(self) -> int | None:
        return self[2]

    @property
    def path(self) -> str:
        return self[3]


def parse_ssh(address: str) -> SshAddress:
    """Read an ``ssh://`` address; ValueError saying what is wrong with it.

    The host may be an alias of ``~/.ssh/config`` or ``[v6 address]``; the path must be absolute
    (``/@name`` names an abstract socket on the remote host).
    """
    rest = address[len(SSH_SCHEME) :] if is_ssh(address) else ""
    authority, slash, path = rest.partition("/")
    user, at, hostport = authority.rpartition("@")
    host, port = hostport, ""
    if hostport.startswith("["):
        host, _, after = hostport[1:].partition("]")
        port = after.removeprefix(":")
    elif ":" in hostport:
        host, _, port = hostport.rpartition(":")
    problem = (
        "it does not start with ssh://"
        if not is_ssh(address)
        else "no host"
        if not host or host.startswith("-")
        else "no socket path after the host (ssh://host/abs/path.sock)"
        if not slash or not path
        else "an empty user name"
        if at and not user
        else f"the port {port!r} is not a number from 1 to 65535"
        if port and not (port.isdecimal() and 0 < int(port) < 65536)
        else None
    )
    if problem is not None:
        raise ValueError(f"bad ssh address {address!r}: {problem}")
    path = path if path.startswith("@") else "/" + path
    return SshAddress(user or None, host, int(port) if port else None, path)


class socket_name:  # (lower case: a context manager used as the function it was)
    """The name ``connect`` takes for ``address`` while the block runs, past the 107-byte limit too.

    Raises OSError: the directory's ``open`` error, or ENAMETOOLONG with a message saying how
    long the address is (only a file name that is itself too long gets there). A class rather
    than ``contextlib.contextmanager``: importing contextlib is a share of a CLI start.
    """

    __slots__ = ("_address", "_fd")

    def __init__(self, address: str) -> None:
        self._address = address
        self._fd: int | None = None  # the directory held open while a /proc/self/fd name is in use

    def __enter__(self) -> str:
        address = self._address
        if is_abstract(address):
            name = "\0" + address[1:]
        elif len(os.fsencode(address)) <= MAX_PATH_BYTES:
            return address
        else:
            directory, file_name = os.path.split(os.path.abspath(address))
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            name = f"/proc/self/fd/{fd}/{file_name}"
            if len(os.fsencode(name)) <= MAX_PATH_BYTES:
                self._fd = fd
                return name
            os.close(fd)
        size = len(os.fsencode(name))
        if size > MAX_PATH_BYTES:
            raise OSError(
                errno.ENAMETOOLONG,
                f"the address is {size} bytes long; the kernel allows at most {MAX_PATH_BYTES} "
                "(use a shorter file name)",
            )
        return name

    def __exit__(self, *exc_info: object) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
