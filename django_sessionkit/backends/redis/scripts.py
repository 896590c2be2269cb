"""The redis engine's Lua scripts: their sources, what they take and what they answer.

Each script is ``lua/lib.lua`` followed by its own file, read once as a
package resource. :class:`Save` turns one write into the SAVE script's ARGV;
:class:`Stored` is what the scripts (and the plain reads of
:mod:`.keyspace`) answer about a session.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, NamedTuple

from django_sessionkit.backends.redis.codec import text, user_digest

logger = logging.getLogger(__name__)

#: Index entries of expired sessions each save prunes on its way.
PRUNE_ON_WRITE = 4

#: The scripts, each ``lua/<name>.lua``.
NAMES = (
    *("save", "delete", "touch", "prune", "sweep"),
    *("user", "count", "estimate", "page", "chunk", "idle", "delete_idle"),
)


def _sources() -> dict[str, str]:
    lua = resources.files("django_sessionkit.backends.redis") / "lua"
    lib = (lua / "lib.lua").read_text(encoding="utf-8")
    return {name: lib + (lua / f"{name}.lua").read_text(encoding="utf-8") for name in NAMES}


#: The Lua of each script by name.
SOURCES = _sources()


@dataclass(frozen=True)
class Save:
    """One write of a session, as the SAVE script takes it; times in Unix ms.

    *now* is the clock of the write: the activity it records and, for a new
    session, the creation, unless *activity* and *created* are given (a copy
    from another engine). A *ttl* (seconds) of 0 or less deletes the session.
    *metadata* is the request's ``(ip, user agent)``; None keeps the stored
    ones. *moved_from* is the public id the session was loaded under (another
    secret's, after a rotation), or "".
    """

    pid: str
    session_key: str
    data: bytes
    now: int
    ttl: int
    expiry: int
    user_id: str | None = None
    metadata: tuple[str | None, str] | None = None
    moved_from: str = ""
    created: int | None = None
    activity: int | None = None

    def arguments(self, *, create: bool) -> tuple[str | int | bytes, ...]:
        """Return the SAVE script's ARGV after the key base (see ``lua/save.lua``)."""
        ip, user_agent = self.metadata or (None, "")
        return (
            "create" if create else "update",
            self.pid,
            self.now,
            self.ttl,
            self.expiry,
            self.user_id or "",
            "" if self.user_id is None else user_digest(self.user_id),
            self.data,
            self.session_key,
            "0" if self.metadata is None else "1",
            ip or "",
            user_agent,
            self.moved_from,
            "" if self.created is None else self.created,
            "" if self.activity is None else self.activity,
            PRUNE_ON_WRITE,
        )


class Stored(NamedTuple):
    """What Redis holds under one public id, as a script or a read found it.

    *state* is ``"ok"`` (a session's hash), ``"gone"`` (nothing: a session
    expired, its index entries awaiting pruning) or ``"bad"`` (no session: a
    key of another type; for the scripts, also a hash without data). The
    values are as stored (bytes), None when missing. *indexed_expiry* is the
    expiry index's score (ms) of a session listed from that index.
    """

    pid: str
    state: str
    user_id: bytes | None = None
    expiry: bytes | None = None
    ip: bytes | None = None
    user_agent: bytes | None = None
    created: bytes | None = None
    activity: bytes | None = None
    indexed_expiry: int | None = None
    session_key: bytes | None = None
    data: bytes | None = None


def described(pid: str, reply: Sequence[Any], score: Any = None) -> Stored:
    """Return what the scripts' ``described()`` appends: the state, then
    ``u, e, ip, ua, c, a``; *score* is the session's expiry index entry's."""
    state, user_id, expiry, ip, user_agent, created, activity = reply[:7]
    indexed = None if score is None else int(float(score))
    return Stored(
        pid, str(text(state)), user_id, expiry, ip, user_agent, created, activity, indexed
    )


def listed(reply: Sequence[Any]) -> list[Stored]:
    """Parse PAGE and CHUNK replies: member, score, then ``described()``, per entry.

    A member is ``<public id>`` or, for an authenticated session,
    ``<public id>:<user digest>``.
    """
    return [
        described(str(text(reply[i])).split(":", 1)[0], reply[i + 2 : i + 9], reply[i + 1])
        for i in range(0, len(reply), 9)
    ]


def users_sessions(reply: Sequence[Any]) -> list[Stored]:
    """Parse USER's "list" reply: public id, then ``described()``, per session."""
    return [described(str(text(reply[i])), reply[i + 1 : i + 8]) for i in range(0, len(reply), 8)]
