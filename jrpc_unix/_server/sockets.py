"""Several sockets, one service: each address with its own permissions, policy and ceiling.

HAProxy's habit: ``/run/app/ro.sock`` mode 0666 capped at ``read`` for monitoring, and
``/run/app/admin.sock`` mode 0600 for the operator, both serving the same methods, state and
statistics. A connection's level is what the socket's policy grants (``admin`` without one),
then lowered to the socket's ``ceiling``: a read socket never reaches an admin method, whatever
any policy says, root included.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import trio

from .._errors import ServerSetupError
from .._service.access import Access, Policy, group_id
from .admission import Serve
from .listener import SocketFile, is_abstract, listening, open_unix_listener

__all__ = ["Bound", "Listen", "accept_all", "addresses", "open_listeners", "parse_listen", "stop_listening"]


@dataclass(frozen=True, slots=True)
class Listen:
    """One more address for :class:`~jrpc_unix.Server` (``Server(listen=[...])``).

    ``socket_mode``/``socket_group``/``policy``: as the Server's own options, for this socket
    (its policy replaces the Server's, which applies when this one is None). ``ceiling``: the
    highest level any caller on this socket gets.
    """

    path: str
    socket_mode: int = 0o600
    socket_group: int | str | None = None
    policy: Policy | None = None
    ceiling: Access = Access.ADMIN

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path:
            raise ValueError(f"Listen needs an address, not {self.path!r}")
        object.__setattr__(self, "ceiling", Access(self.ceiling))

    @property
    def gid(self) -> int | None:
        return None if self.socket_group is None else group_id(self.socket_group)


def parse_listen(text: str) -> Listen:
    """``PATH[,mode=0666][,group=G][,ceiling=read]``: the command line's ``--listen``."""
    path, *options = text.split(",")
    fields: dict[str, object] = {}
    for option in options:
        key, eq, value = option.partition("=")
        if not eq or not value:
            raise ValueError(f"--listen {text!r}: {option!r} is not KEY=VALUE")
        if key == "mode":
            fields["socket_mode"] = int(value, 8)
        elif key == "group":
            fields["socket_group"] = int(value) if value.isdigit() else value
        elif key == "ceiling":
            try:
                fields["ceiling"] = Access[value.upper()]
            except KeyError:
                raise ValueError(f"--listen {text!r}: ceiling must be read, operate or admin") from None
        else:
            raise ValueError(f"--listen {text!r}: unknown option {key!r} (mode, group, ceiling)")
    return Listen(path, **fields)  # type: ignore[arg-type]


#: A socket's own (policy, ceiling); None: the Server's policy, no ceiling.
Gate = tuple[Policy | None, Access] | None
Accept = Callable[[trio.SocketListener, Serve, trio.Nursery, Gate], Awaitable[None]]


@dataclass(slots=True)
class Bound:
    """One listening socket of the server."""

    path: str
    listener: trio.SocketListener
    sockfile: SocketFile
    gate: Gate


def addresses(
    path: str, mode: int, gid: int | None, policy: Policy | None, more: Sequence[Listen]
) -> list[tuple[str, int, int | None, Gate]]:
    """Every address to listen on (``path`` with the Server's own options first); refuses an
    abstract address without a policy, before anything is opened."""
    wanted: list[tuple[str, int, int | None, Gate]] = [(path, mode, gid, None)]
    for extra in more:
        wanted.append((extra.path, extra.socket_mode, extra.gid, (extra.policy or policy, extra.ceiling)))
    for address, _, _, gate in wanted:
        if is_abstract(address) and (policy if gate is None else gate[0]) is None:
            raise ServerSetupError(
                f"{address} is an abstract address: it has no file permissions, so it needs a policy "
                "(Server(..., policy=Policy(allow_users=...)))"
            )
    return wanted


async def open_listeners(
    stack: contextlib.AsyncExitStack, wanted: list[tuple[str, int, int | None, Gate]]
) -> list[Bound]:
    """Listen on each address; ``stack`` closes them (each file removed first) on the way out."""
    bound = []
    try:
        for address, mode, gid, gate in wanted:
            listener, sockfile = await open_unix_listener(address, mode=mode, gid=gid)
            await stack.enter_async_context(listening(listener, sockfile))
            bound.append(Bound(address, listener, sockfile, gate))
    except BaseException:
        await stack.aclose()  # those opened already
        raise
    return bound


async def accept_all(bound: list[Bound], accept: Accept, serve: Serve, nursery: trio.Nursery) -> None:
    """Run each socket's accept loop (admission's), serving connections in ``nursery``."""
    async with trio.open_nursery() as accepting:
        for b in bound:
            accepting.start_soon(accept, b.listener, serve, nursery, b.gate)


async def stop_listening(bound: list[Bound]) -> bool:
    """Stop listening now: a newcomer is refused at once instead of waiting out the grace, and
    a new server may take a path while we drain. Each file goes while still listening (see
    :mod:`.listener`). True if any was a file (not abstract, nor systemd's)."""
    had_file = any(b.sockfile.path is not None for b in bound)
    for b in bound:
        b.sockfile.remove()
        await b.listener.aclose()
    return had_file
