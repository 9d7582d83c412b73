"""Who may connect, and what each caller may call. Pure policy: no sockets here.

The socket file's permissions are the first gate. A :class:`Policy` adds a second one that also
holds where there is no file (abstract addresses): the peer's credentials (SO_PEERCRED, read
when it connects) must be allowed, and each method names the :class:`Access` level it needs
(``@methods.add(access=Access.ADMIN)``; ``OPERATE`` when it names none). Root and the server's own
user are always allowed, at ``ADMIN``. Without a policy every peer that can open the socket is
``ADMIN``.
"""

from __future__ import annotations

import contextlib
import enum
import grp
import os
import pwd
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["Access", "Peer", "Policy", "group_id", "user_id"]


@dataclass(frozen=True, slots=True)
class Peer:
    """The connecting process's credentials, read with SO_PEERCRED when it connected."""

    pid: int
    uid: int
    gid: int


class Access(enum.IntEnum):
    """Ordered access levels: a caller at a level may call methods at or below it."""

    READ = 1
    OPERATE = 2
    ADMIN = 3


def user_id(who: str | int) -> int:
    """A uid, given a uid or a user name."""
    if isinstance(who, int):
        return who
    try:
        return pwd.getpwnam(who).pw_uid
    except KeyError:
        raise ValueError(f"no such user: {who!r}") from None


def group_id(who: str | int) -> int:
    """A gid, given a gid or a group name."""
    if isinstance(who, int):
        return who
    try:
        return grp.getgrnam(who).gr_gid
    except KeyError:
        raise ValueError(f"no such group: {who!r}") from None


#: (uid, gid) -> (when looked up, groups): NSS lookups (files, LDAP, ...) can block, and they
#: run on the event loop, so each user's groups are looked up once a minute at most.
_GROUPS_TTL = 60.0
_groups_cache: dict[tuple[int, int], tuple[float, frozenset[int]]] = {}


def _groups_of(peer: Peer) -> frozenset[int]:
    """The peer's primary group and the supplementary groups its user is configured with."""
    key, now = (peer.uid, peer.gid), time.monotonic()
    cached = _groups_cache.get(key)
    if cached is not None and now - cached[0] < _GROUPS_TTL:
        return cached[1]
    gids = {peer.gid}
    with contextlib.suppress(KeyError, OSError):  # a uid with no passwd entry: primary only
        gids.update(os.getgrouplist(pwd.getpwuid(peer.uid).pw_name, peer.gid))
    if len(_groups_cache) > 1024:  # bounded: many distinct uids only cost lookups
        _groups_cache.clear()
    _groups_cache[key] = (now, frozenset(gids))
    return _groups_cache[key][1]


@dataclass(frozen=True, slots=True)
class Policy:
    """Allow-lists and grants by uid and gid; users and groups may be given by name.

    ``allow_users``/``allow_groups``: who may connect (None for both: anyone who can open the
    socket). ``grant_users``/``grant_groups``: the level of those users or group members.
    ``default``: the level of every other admitted caller.
    """

    allow_users: Iterable[str | int] | None = None
    allow_groups: Iterable[str | int] | None = None
    grant_users: Mapping[str | int, Access] = field(default_factory=dict)
    grant_groups: Mapping[str | int, Access] = field(default_factory=dict)
    default: Access = Access.READ
    _allow_uids: frozenset[int] | None = field(init=False, repr=False)
    _allow_gids: frozenset[int] | None = field(init=False, repr=False)
    _uid_levels: dict[int, Access] = field(init=False, repr=False)
    _gid_levels: dict[int, Access] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # a frozen dataclass: resolve names once, here
        users, groups = self.allow_users, self.allow_groups
        set_(self, "_allow_uids", None if users is None else frozenset(map(user_id, users)))
        set_(self, "_allow_gids", None if groups is None else frozenset(map(group_id, groups)))
        levels = {user_id(u): Access(a) for u, a in self.grant_users.items()}
        for uid in (0, os.getuid()):
            levels[uid] = Access.ADMIN
        set_(self, "_uid_levels", levels)
        set_(self, "_gid_levels", {group_id(g): Access(a) for g, a in self.grant_groups.items()})

    def admits(self, peer: Peer | None) -> bool:
        """May this peer connect at all?"""
        if peer is None:
            return False
        if peer.uid in self._uid_levels and self._uid_levels[peer.uid] is Access.ADMIN:
            return True
        if self._allow_uids is None and self._allow_gids is None:
            return True
        if self._allow_uids is not None and peer.uid in self._allow_uids:
            return True
        return self._allow_gids is not None and not self._allow_gids.isdisjoint(_groups_of(peer))

    def level(self, peer: Peer) -> Access:
        """The highest level any rule grants this peer (``default`` if none does)."""
        level = max(self.default, self._uid_levels.get(peer.uid, self.default))
        if self._gid_levels:
            for gid in _groups_of(peer):
                level = max(level, self._gid_levels.get(gid, level))
        return Access(level)
