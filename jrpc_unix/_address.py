"""What a socket address means, for both sides: the one copy of the rules.

``/run/app/control.sock``
    A socket file. ``sun_path`` holds :data:`MAX_PATH_BYTES`; a longer path is reached through
    ``/proc/self/fd/<directory fd>/<name>`` (:func:`socket_name` for ``connect``; the server
    binds through a directory fd of its own), so only a file name that is itself too long fails.
``@name``
    A Linux abstract address (``\\0name`` to the kernel): no file.
``systemd``, ``systemd:NAME``
    Only for a server: the listening socket systemd passed.

Standard library only: the blocking client and the command line import it. (An ``ssh://``
address, issue 13, is for the clients to recognise before they reach for a local socket.)
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from typing import Final

__all__ = ["MAX_PATH_BYTES", "is_abstract", "socket_name"]

#: sun_path holds 108 bytes on Linux, including the terminating NUL.
MAX_PATH_BYTES: Final = 107


def is_abstract(address: str) -> bool:
    return address.startswith("@")


@contextlib.contextmanager
def socket_name(address: str) -> Iterator[str]:
    """The name ``connect`` takes for ``address`` while the block runs, past the 107-byte limit too.

    Raises OSError: the directory's ``open`` error, or ENAMETOOLONG with a message saying how
    long the address is (only a file name that is itself too long gets there).
    """
    if is_abstract(address):
        name = "\0" + address[1:]
    elif len(os.fsencode(address)) <= MAX_PATH_BYTES:
        yield address
        return
    else:
        directory, file_name = os.path.split(os.path.abspath(address))
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            name = f"/proc/self/fd/{fd}/{file_name}"
            if len(os.fsencode(name)) <= MAX_PATH_BYTES:
                yield name
                return
        finally:
            os.close(fd)
    size = len(os.fsencode(name))
    if size > MAX_PATH_BYTES:
        raise OSError(
            errno.ENAMETOOLONG,
            f"the address is {size} bytes long; the kernel allows at most {MAX_PATH_BYTES} "
            "(use a shorter file name)",
        )
    yield name
