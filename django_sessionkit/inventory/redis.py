"""Inventory of sessionkit's redis engine, through its keyspace.

:class:`RedisInventory` reads the indexes that ``django_sessionkit.backends.redis``
keeps (see that package), through the methods of its keyspace: counting is a
few commands, a user's sessions cost O(their number) in one round trip, paging
skips whole chunks of the expiry index. Redis pages are ordered by expiry: no
index orders sessions by activity (it would add as much memory as the expiry
index), so the ``last_activity`` orderings are served by expiry, which moves
with every save. The sessions of one user are few, so
:meth:`RedisInventory.for_user` and pages filtered by user are ordered by their
real ``last_activity``. Filters by activity (and by IP) walk the sessions
unless a user filter narrows them; :meth:`RedisInventory.stats` and
:meth:`RedisInventory.clear_inactive` walk the indexes chunk by chunk, each
round trip a small command, so that Redis never blocks on one long script.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime
from importlib import import_module
from itertools import islice
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase
from django.utils import timezone

from django_sessionkit.backends.base import CopiedMetadata, from_ms, to_ms
from django_sessionkit.backends.redis.codec import text
from django_sessionkit.backends.redis.keyspace import Keyspace
from django_sessionkit.backends.redis.scripts import Stored
from django_sessionkit.inventory.base import (
    BatchSizer,
    Count,
    ExportedSession,
    Filters,
    Ordering,
    SessionInfo,
    SessionInventory,
    Stats,
    Status,
    batched,
    busiest,
)
from django_sessionkit.inventory.cache import PUBLIC_ID, SCAN_COUNT, django_redis_cache, sort_key

logger = logging.getLogger(__name__)

OUR_ENGINE = "django_sessionkit.backends.redis"
#: Chunk ids the page script reads from the directory per command.
PAGE_SLICE = 500
#: Expiry index chunks sampled to estimate how many entries have expired.
ESTIMATE_SAMPLES = 64
#: Index chunks read per pipelined round trip by stats() (each holds at most 120 entries).
CHUNKS_PER_ROUND_TRIP = 100
#: Which expiry index entries a status lists: every one, the expired, the others.
EXPIRED: dict[Status, bool | None] = {"all": None, "expired": True, "active": False}


def _is_ms(value: bytes | str | None) -> bool:
    """Whether *value* is a stored time in milliseconds, as the engine writes them."""
    try:
        return from_ms(value) is not None
    except ValueError:
        return False


def _exported_session(reader: Any, stored: Stored) -> ExportedSession:
    """Return the session of an exported entry; ValueError if it is none."""
    if stored.state != "ok":
        raise ValueError("the key is not a hash")
    expire_date = from_ms(stored.expiry)
    if stored.session_key is None or stored.data is None or expire_date is None:
        raise ValueError("no key, data or expiry")
    copied = CopiedMetadata(
        text(stored.ip), text(stored.user_agent) or "",
        from_ms(stored.created), from_ms(stored.activity),
    )  # fmt: skip
    return ExportedSession(
        stored.session_key.decode(), reader.deserialize_data(stored.data), expire_date, copied
    )


class RedisInventory(SessionInventory):
    """Read and revoke the sessions of ``django_sessionkit.backends.redis``."""

    records_metadata = True
    records_activity = True

    def __init__(self, engine: str = OUR_ENGINE, cache_alias: str | None = None) -> None:
        self.engine = engine
        self.store_class: type[SessionBase] = import_module(engine).SessionStore
        self.cache_alias = cache_alias or settings.SESSION_CACHE_ALIAS
        django_redis_cache(self.cache_alias, engine)

    # -- helpers ------------------------------------------------------------

    @property
    def keyspace(self) -> Keyspace:
        return Keyspace.of(self.cache_alias)

    def _loader(self, pid: str) -> Callable[[], dict[str, Any]]:
        def load() -> dict[str, Any]:
            try:
                data = self.keyspace.data(pid)
            except ValueError as exc:  # a key of another type
                self.skip_unreadable(pid, str(exc))
                return {}
            if data is None:
                return {}
            store: Any = self.store_class()
            decoded: dict[str, Any] = store.deserialize_data(data)
            return decoded

        return load

    def _info(self, stored: Stored) -> SessionInfo | None:
        """Build the SessionInfo of what the keyspace describes; None if it is unreadable.

        A session that is gone (expired, its index entry awaiting pruning) is
        described by its index entry alone; one that is not a readable session
        (a key of another type, a hash without data or with a garbled field) is
        skipped and counted. Listed from the expiry index, a session's expiry
        is the index's: the hash may be saved again with a later one by now,
        which its own entry lists.
        """
        if stored.state == "bad" or (stored.state == "ok" and not _is_ms(stored.expiry)):
            reason = "the key holds no session data" if stored.state != "ok" else "no valid expiry"
            self.skip_unreadable(stored.pid, reason)
            return None
        try:
            info = SessionInfo(
                public_id=stored.pid,
                user_id=text(stored.user_id),
                ip=text(stored.ip),
                user_agent=text(stored.user_agent) or "",
                created_at=from_ms(stored.created),
                last_activity=from_ms(stored.activity),
                expire_date=from_ms(stored.expiry),
                _load=self._loader(stored.pid),
            )
        except ValueError as exc:
            self.skip_unreadable(stored.pid, str(exc))
            return None
        if stored.indexed_expiry is None:
            return info
        return replace(info, expire_date=from_ms(stored.indexed_expiry))

    def _infos(self, stored: list[Stored]) -> list[SessionInfo]:
        return [info for entry in stored if (info := self._info(entry)) is not None]

    def _users_sessions(self, users: frozenset[str]) -> list[SessionInfo]:
        """Return every stored session of the *users*: one round trip per user."""
        keyspace = self.keyspace
        return [
            info
            for user_id in sorted(users)
            for info in self._infos(keyspace.user_sessions(user_id))
        ]

    def _walk(self, status: Status, descending: bool, now: datetime) -> Iterator[SessionInfo]:
        """Yield the sessions in expiry order, one chunk of the index per round trip.

        For filters no index answers (IP, authenticated). Under concurrent
        writes a session may be listed twice or missed, as chunks split and merge.
        """
        indexes = self.keyspace.indexes
        chunk_ids = indexes.expiry_chunks()
        if descending:
            chunk_ids.reverse()
        now_ms = to_ms(now)
        for chunk_id in chunk_ids:
            entries = indexes.chunk_entries(
                chunk_id, now_ms, expired=EXPIRED[status], descending=descending
            )
            yield from self._infos(entries)

    # -- SessionInventory -----------------------------------------------------

    def _count(self, filters: Filters, *, estimate: bool) -> Count:
        """Count sessions: exact and cheap, except with *ip* or an activity filter
        and no user filter, which walk every session.

        "expired" counts sessions whose index entries still await pruning.
        """
        now = timezone.now()
        if filters.users is not None:
            sessions = self._users_sessions(filters.users)
            return Count(sum(filters.matches(s, now) for s in sessions))
        if filters.ip is not None or filters.by_activity:
            walk = self._walk(filters.status, False, now)
            return Count(sum(filters.matches(s, now) for s in walk))
        authenticated = filters.authenticated
        total, auth, expired, expired_auth = self.keyspace.indexes.totals(
            to_ms(now), authenticated=authenticated is not None
        )
        if authenticated is True:
            total, expired = auth, expired_auth
        elif authenticated is False:
            total, expired = total - auth, expired - expired_auth
        return Count({"all": total, "active": total - expired, "expired": expired}[filters.status])

    def totals(self, *, estimate: bool = False) -> tuple[Count, Count]:
        """Return the index entries and the expired ones.

        Exact, in one pass over the expired chunks' sizes; with *estimate*,
        from the chunk directory and ``ESTIMATE_SAMPLES`` of those chunks, in
        one short call (exact all the same when no more chunks than that hold
        expired entries).
        """
        now_ms = to_ms(timezone.now())
        if not estimate:
            total, _, expired, _ = self.keyspace.indexes.totals(now_ms)
            return Count(total), Count(expired)
        total, chunks, expired = self.keyspace.indexes.estimate(now_ms, ESTIMATE_SAMPLES)
        return Count(total), Count(expired, exact=chunks <= ESTIMATE_SAMPLES + 1)

    def _page(
        self, filters: Filters, *, offset: int, limit: int, ordering: Ordering
    ) -> list[SessionInfo]:
        """Return a page ordered by expiry (``last_activity`` orderings too, see the module).

        Filtered by user, the page is ordered as asked. Unfiltered, whole
        chunks before *offset* are skipped by their count; filtered by IP,
        authentication or activity, sessions are walked in order until the
        page is full.
        """
        now = timezone.now()
        descending = ordering.startswith("-")
        if filters.users is not None:
            sessions = [s for s in self._users_sessions(filters.users) if filters.matches(s, now)]
            sessions.sort(key=sort_key(ordering), reverse=descending)
            return sessions[offset : offset + limit]
        if filters.ip is not None or filters.authenticated is not None or filters.by_activity:
            walk = self._walk(filters.status, descending, now)
            return list(
                islice((s for s in walk if filters.matches(s, now)), offset, offset + limit)
            )
        entries = self.keyspace.indexes.page(
            to_ms(now),
            expired=EXPIRED[filters.status],
            offset=offset,
            limit=limit,
            descending=descending,
            directory_slice=PAGE_SLICE,
        )
        return self._infos(entries)

    def get(self, public_id: str) -> SessionInfo | None:
        if not PUBLIC_ID.fullmatch(public_id):
            return None
        stored = self.keyspace.describe(public_id)
        return None if stored is None else self._info(stored)

    def for_user(self, user_id: str) -> list[SessionInfo]:
        """Return the user's unexpired sessions, newest activity first: one round trip."""
        now = timezone.now()
        live = Filters("active")
        sessions = [s for s in self._users_sessions(frozenset((user_id,))) if live.matches(s, now)]
        sessions.sort(key=sort_key("-last_activity"), reverse=True)
        return sessions

    def revoke(self, public_id: str) -> bool:
        if not PUBLIC_ID.fullmatch(public_id):
            return False
        return bool(self.keyspace.delete(public_id))

    def revoke_user(self, user_id: str, *, keep: str | None = None) -> int:
        """Delete the user's sessions but *keep*, in one round trip; return how many."""
        return self.keyspace.revoke_user(user_id, keep)

    def clear_expired(self, *, batch_size: int | BatchSizer = 1000) -> Iterator[int]:
        """Prune expired sessions from the indexes, *batch_size* entries per round trip.

        Redis deletes the sessions themselves when their TTL runs out; what is
        left are their index entries (and sessions that Django's clock, ahead
        of Redis's, already sees as expired).
        """
        return self.keyspace.indexes.prune(timezone.now(), BatchSizer.of(batch_size).limit)

    def clear_inactive(
        self, *, before: datetime, batch_size: int | BatchSizer = 1000
    ) -> Iterator[int]:
        """Delete sessions last active before *before*, expired or not, in batches.

        No index orders sessions by activity: each chunk of the expiry index
        is read in one short script that returns its idle sessions, which are
        deleted *batch_size* at a time (in short script calls), each
        re-checked so that a session active meanwhile is kept. O(sessions) in
        small commands; Redis is never blocked for long.
        """
        batch_size = BatchSizer.of(batch_size).limit  # no transaction to keep short
        return self._clear_inactive(to_ms(before), batch_size)

    def _clear_inactive(self, before_ms: int, batch_size: int) -> Iterator[int]:
        indexes = self.keyspace.indexes
        idle: list[str] = []
        for chunk_id in indexes.expiry_chunks():
            found, unreadable = indexes.idle_in_chunk(chunk_id, before_ms)
            for pid in unreadable:
                self.skip_unreadable(pid, "its last activity is not a time")
            idle.extend(found)
            while len(idle) >= batch_size:
                batch, idle = idle[:batch_size], idle[batch_size:]
                if deleted := self.keyspace.delete_idle(before_ms, batch):
                    yield deleted
        if idle and (deleted := self.keyspace.delete_idle(before_ms, idle)):
            yield deleted

    def export(self, *, batch_size: int = 1000) -> Iterator[list[ExportedSession]]:
        """Yield the unexpired sessions, keys included, found by SCAN, in lists of *batch_size*.

        SCAN rather than a walk of the expiry index: the index's chunks split
        and merge while the site runs, and a walk by rank could then skip
        sessions, whereas SCAN returns every session that lives throughout.
        """
        return batched(self._exported(), batch_size)

    def _exported(self) -> Iterator[ExportedSession]:
        reader: Any = self.store_class()  # the engine stores its own (unsigned) serialization
        for found in self.keyspace.export(SCAN_COUNT):
            now = timezone.now()
            for stored in found:
                try:
                    session = _exported_session(reader, stored)
                except ValueError as exc:
                    self.skip_unreadable(stored.pid, str(exc))
                    continue
                if session.expire_date > now:  # else expired by Django's clock, not yet Redis's
                    yield session

    def stats(self) -> Stats:
        """Return the totals from the indexes, in small pipelined commands.

        Counts and the oldest expired come from the expiry index (a ZCOUNT per
        chunk that holds expired entries). The busiest user is found by
        reading the user index chunk by chunk: the sessions of one user always
        sit in one chunk, so memory holds one round trip's chunks, and each
        session's user and expiry are read to count only unexpired sessions
        of the right user (two users may share an index score). Among users
        with as many sessions, the smallest id.
        """
        now_ms = to_ms(timezone.now())
        total, _, expired, _ = self.keyspace.indexes.totals(now_ms)
        lowest = self.keyspace.indexes.lowest_expiry()
        return Stats(
            sessions=total,
            active=total - expired,
            expired=expired,
            oldest_expired=None if lowest is None or lowest > now_ms else from_ms(lowest),
            busiest_user=self._busiest_user(now_ms),
        )

    def _busiest_user(self, now_ms: int) -> tuple[str, int] | None:
        # The sessions of one user all sit in one chunk of the user index: the
        # best of each round trip's chunks is a candidate for the best overall.
        leaders: dict[str, int] = {}
        for sessions in self.keyspace.indexes.user_index_sessions(CHUNKS_PER_ROUND_TRIP):
            live: Counter[str] = Counter()
            for stored in sessions:
                try:
                    expiry_ms = None if stored.expiry is None else int(stored.expiry)
                except ValueError:
                    expiry_ms = None
                if stored.state == "bad" or (stored.expiry is not None and expiry_ms is None):
                    self.skip_unreadable(stored.pid, f"expiry {stored.expiry!r}")
                elif stored.user_id is not None and expiry_ms is not None and expiry_ms > now_ms:
                    live[str(text(stored.user_id))] += 1
            leader = busiest(live)
            if leader is not None:
                leaders[leader[0]] = leader[1]
        return busiest(leaders)
