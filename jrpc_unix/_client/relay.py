"""Relay stdin/stdout <-> a UNIX socket: ``jrpc-unix bridge PATH``, and the ssh fallback.

This module is a whole program that needs only ``python3`` (no jrpc_unix, no third-party
package): an ssh client with no ``jrpc-unix`` on the remote host sends its source inline
(``python3 -c SOURCE PATH``), and ``jrpc-unix bridge`` runs :func:`relay` from it, so the two
remote sides behave the same. It must stay standard library only and self-contained.

Half-close goes both ways: EOF on stdin shuts the socket's write side (the server answers what it
read, then closes); the server's EOF ends the relay, closing stdout. Exit status: 0 the server
ended the connection; 3 cannot connect (the reason on stderr); 4 the connection failed midway.
"""

import os
import select
import socket
import sys

EXIT_ENDED, EXIT_CONNECT, EXIT_BROKEN = 0, 3, 4


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def relay(path: str, stdin: int = 0, stdout: int = 1) -> int:
    """Connect to ``path``, copy both ways until the server closes; the exit status."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect("\0" + path[1:] if path.startswith("@") else path)
    except OSError as exc:
        sys.stderr.write(f"jrpc-unix bridge: cannot connect to {path}: {exc.strerror or exc}\n")
        return EXIT_CONNECT
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    poller.register(stdin, select.POLLIN)
    try:
        while True:
            for fd, _ in poller.poll():
                if fd == stdin:
                    data = os.read(stdin, 65536)
                    if data:
                        sock.sendall(data)
                    else:  # the client is done sending: pass the EOF on, keep reading answers
                        poller.unregister(stdin)
                        sock.shutdown(socket.SHUT_WR)
                else:
                    data = sock.recv(65536)
                    if not data:
                        return EXIT_ENDED
                    _write_all(stdout, data)
    except OSError as exc:
        sys.stderr.write(f"jrpc-unix bridge: {path}: the connection failed ({exc.strerror or exc})\n")
        return EXIT_BROKEN
    finally:
        sock.close()


if __name__ == "__main__":
    sys.exit(relay(sys.argv[1]))
