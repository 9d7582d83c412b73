"""The :class:`~jrpc_unix.Server`'s keyword options as one type, for the functions that pass
them on (:func:`~jrpc_unix.serve`, :func:`~jrpc_unix.run`, :func:`~jrpc_unix.serve_in_thread`).
Each option's meaning: :class:`~jrpc_unix.Server`."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Literal, TypedDict

from .._service.access import Policy
from .._service.limits import Limits
from .sockets import Listen

__all__ = ["ServerOptions"]


class ServerOptions(TypedDict, total=False):
    """:class:`Server`'s keyword options, as :func:`serve`, :func:`run` and
    :func:`~jrpc_unix.serve_in_thread` pass them on."""

    limits: Limits | None
    mode: Literal["concurrent", "serial"]
    socket_mode: int
    socket_group: int | str | None
    policy: Policy | None
    topics: Mapping[str, str] | None
    fast_path: bool
    discover: bool
    method_stats: bool
    name: str | None
    version: str | None
    slow_call_threshold: float | None
    disable_builtins: Collection[str]
    audit: bool | None
    listen: Sequence[Listen]
    topic_history: int
