"""Inventory of sessionkit's redis engine.

:class:`RedisInventory` reads the indexes that ``django_sessionkit.backends.redis``
keeps (see that module): counting is a few commands, a user's sessions cost
O(their number) in one round trip, paging skips whole chunks of the expiry
index. Redis pages are ordered by expiry: no index orders sessions by
activity (it would add as much memory as the expiry index), so the
``last_activity`` orderings are served by expiry, which moves with every save.
The sessions of one user are few, so :meth:`RedisInventory.for_user` and pages
filtered by user are ordered by their real ``last_activity``. Filters by
activity (and by IP) walk the sessions unless a user filter narrows them;
:meth:`RedisInventory.stats` and :meth:`RedisInventory.clear_inactive` walk
the indexes chunk by chunk, each round trip a small command, so that Redis
never blocks on one long script.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from importlib import import_module
from itertools import islice
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase
from django.utils import timezone
from django_redis.client.default import glob_escape
from redis.exceptions import ResponseError

from django_sessionkit.backends import redis as backend
from django_sessionkit.backends.base import CopiedMetadata
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
)
from django_sessionkit.inventory.cache import (
    PUBLIC_ID,
    _scan,
    django_redis_cache,
    sort_key,
)

logger = logging.getLogger(__name__)

OUR_ENGINE = "django_sessionkit.backends.redis"
#: Chunk ids the page script reads from the directory per command.
PAGE_SLICE = 500
#: Expiry index chunks sampled to estimate how many entries have expired.
ESTIMATE_SAMPLES = 64
#: Index chunks read per pipelined round trip by stats() (each holds at most 120 entries).
CHUNKS_PER_ROUND_TRIP = 100
#: Chunks of the expiry index one counting script call reads: a ZCARD each,
#: or, to count authenticated sessions, up to 120 members each. Either way a
#: call takes a few milliseconds at most.
COUNT_CHUNKS = 500
COUNT_CHUNKS_AUTHENTICATED = 50
#: Sessions one script call deletes at most: a batch of clear_inactive() takes
#: several calls, so that no single command keeps Redis busy for long.
DELETE_SLICE = 200

# ARGV: base, chunk id of the expiry index, moment (ms). The public ids of the
# chunk's sessions last active before the moment, and "!<public id>" for each
# whose activity cannot be read.
IDLE = """
local key = ck(X, ARGV[2])
local before = tonumber(ARGV[3])
local out = {}
for _, member in ipairs(redis.call('ZRANGE', key, 0, -1)) do
  local sep = string.find(member, ':', 1, true)
  local pid = member
  if sep then pid = string.sub(member, 1, sep - 1) end
  local f, wrong = hfields(skey(pid), 'a')
  local a = tonumber(f[1])
  if a then
    if a < before then out[#out + 1] = pid end
  elseif wrong or f[1] then
    out[#out + 1] = '!' .. pid  -- no session: counted as unreadable, never deleted here
  end
end
return out
"""

# ARGV: base, moment (ms), public ids... Deletes those sessions still last
# active before the moment (one active meanwhile is kept); returns how many.
DELETE_IDLE = """
local before = tonumber(ARGV[2])
local n = 0
for i = 3, #ARGV do
  local a = tonumber(hfield(skey(ARGV[i]), 'a'))
  if a and a < before then n = n + drop(ARGV[i]) end
end
return n
"""

IDLE_SCRIPT = backend.LuaScript(IDLE)
DELETE_IDLE_SCRIPT = backend.LuaScript(DELETE_IDLE)


def _is_ms(value: bytes | str | None) -> bool:
    """Whether *value* is a stored time in milliseconds, as the engine writes them."""
    try:
        return backend.from_ms(value) is not None
    except ValueError:
        return False


def _exported_session(reader: Any, reply: Any) -> ExportedSession:
    """Return the session of a ``k, d, e, ip, ua, c, a`` reply; ValueError if it is none."""
    if isinstance(reply, ResponseError):
        raise ValueError("the key is not a hash")
    session_key, session_data, expiry, ip, user_agent, created, activity = reply
    expire_date = backend.from_ms(expiry)
    if session_key is None or session_data is None or expire_date is None:
        raise ValueError("no key, data or expiry")
    copied = CopiedMetadata(
        backend.text(ip), backend.text(user_agent) or "",
        backend.from_ms(created), backend.from_ms(activity),
    )  # fmt: skip
    return ExportedSession(
        session_key.decode(), reader.deserialize_data(session_data), expire_date, copied
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
    def keyspace(self) -> backend.Keyspace:
        return backend.Keyspace.of(self.cache_alias)

    def _loader(self, pid: str) -> Callable[[], dict[str, Any]]:
        def load() -> dict[str, Any]:
            keyspace = self.keyspace
            try:
                data = keyspace.client(write=False).hget(keyspace.session(pid), "d")
            except ResponseError as exc:  # a key of another type
                self.skip_unreadable(pid, str(exc))
                return {}
            if data is None:
                return {}
            return self.store_class().deserialize_data(data)  # type: ignore[attr-defined]

        return load

    def _info(self, pid: str, row: Sequence[Any]) -> SessionInfo | None:
        """Build the SessionInfo of a ``u, e, ip, ua, c, a`` reply; None if it is unreadable."""
        try:
            fields = backend.session_fields(row)
        except ValueError as exc:
            self.skip_unreadable(pid, str(exc))
            return None
        return SessionInfo(public_id=pid, _load=self._loader(pid), **fields)

    def _described(self, pid: str, state: Any, fields: Sequence[Any]) -> SessionInfo | None:
        """Build the SessionInfo of a pid and what the scripts' ``described()`` returns.

        A session that is gone (expired, its index entry awaiting pruning) is
        described by its index entry alone; one that is not a readable session
        (a key of another type, a hash without data or with a garbled field) is
        skipped and counted.
        """
        state = backend.text(state)
        if state == "gone":
            return self._info(pid, fields)
        if state != "ok" or not _is_ms(fields[1]):
            reason = "the key holds no session data" if state != "ok" else "no valid expiry"
            self.skip_unreadable(pid, reason)
            return None
        return self._info(pid, fields)

    def _entries(self, reply: Sequence[Any]) -> list[SessionInfo]:
        """Parse PAGE / CHUNK replies: member, score, then ``described()`` per entry.

        A session's expiry is the index's: the hash may be saved again with a
        later one by now, which its own entry lists.
        """
        infos = []
        for i in range(0, len(reply), 9):
            member, score, state, *fields = reply[i : i + 9]
            pid = str(backend.text(member)).split(":", 1)[0]
            info = self._described(pid, state, fields)
            if info is not None:
                infos.append(replace(info, expire_date=backend.from_ms(int(float(score)))))
        return infos

    def _user_sessions(self, user_id: str) -> list[SessionInfo]:
        """Return every stored session of *user_id*, expired ones included: one round trip."""
        reply = self.keyspace.run(
            backend.USER_SCRIPT, user_id, backend.user_digest(user_id), "list", ""
        )
        infos = (
            self._described(str(backend.text(reply[i])), reply[i + 1], reply[i + 2 : i + 8])
            for i in range(0, len(reply), 8)
        )
        return [info for info in infos if info is not None]

    def _users_sessions(self, users: frozenset[str]) -> list[SessionInfo]:
        """Return every stored session of the *users*: one round trip per user."""
        return [info for user_id in sorted(users) for info in self._user_sessions(user_id)]

    def _bounds(self, status: Status, now: datetime) -> tuple[str, str]:
        now_ms = backend.to_ms(now)
        if status == "active":
            return f"({now_ms}", "+inf"
        if status == "expired":
            return "-inf", str(now_ms)
        return "-inf", "+inf"

    def _walk(self, status: Status, descending: bool, now: datetime) -> Iterator[SessionInfo]:
        """Yield the sessions in expiry order, one chunk of the index per round trip.

        For filters no index answers (IP, authenticated). Under concurrent
        writes a session may be listed twice or missed, as chunks split and merge.
        """
        keyspace = self.keyspace
        lo, hi = self._bounds(status, now)
        chunk_ids = keyspace.client().zrange(f"{keyspace.base}:x:d", 0, -1)
        if descending:
            chunk_ids.reverse()
        flag = "1" if descending else "0"
        for chunk_id in chunk_ids:
            yield from self._entries(keyspace.run(backend.CHUNK_SCRIPT, chunk_id, lo, hi, flag))

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
        total, auth, expired, expired_auth = self._totals(
            backend.to_ms(now), authenticated=authenticated is not None
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
        now_ms = backend.to_ms(timezone.now())
        if not estimate:
            total, _, expired, _ = self._totals(now_ms)
            return Count(total), Count(expired)
        total, chunks, expired = (
            int(value)
            for value in self.keyspace.run(backend.ESTIMATE_SCRIPT, now_ms, ESTIMATE_SAMPLES)
        )
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
        lo, hi = self._bounds(filters.status, now)
        reply = self.keyspace.run(
            backend.PAGE_SCRIPT, lo, hi, offset, limit, "1" if descending else "0", PAGE_SLICE
        )
        return self._entries(reply)

    def get(self, public_id: str) -> SessionInfo | None:
        if not PUBLIC_ID.fullmatch(public_id):
            return None
        keyspace = self.keyspace
        pipe = keyspace.client(write=False).pipeline(transaction=False)
        name = keyspace.session(public_id)
        pipe.hmget(name, ("u", "e", "ip", "ua", "c", "a"))
        pipe.hexists(name, "d")
        row, has_data = pipe.execute(raise_on_error=False)
        if isinstance(row, ResponseError):
            return self._described(public_id, "bad", ())  # a key of another type
        if not has_data and all(value is None for value in row):
            return None
        return self._described(public_id, "ok" if has_data else "bad", row)

    def for_user(self, user_id: str) -> list[SessionInfo]:
        """Return the user's unexpired sessions, newest activity first: one round trip."""
        now = timezone.now()
        live = Filters("active")
        sessions = [s for s in self._user_sessions(user_id) if live.matches(s, now)]
        sessions.sort(key=sort_key("-last_activity"), reverse=True)
        return sessions

    def revoke(self, public_id: str) -> bool:
        if not PUBLIC_ID.fullmatch(public_id):
            return False
        return bool(self.keyspace.run(backend.DELETE_SCRIPT, public_id))

    def revoke_user(self, user_id: str, *, keep: str | None = None) -> int:
        """Delete the user's sessions but *keep*, in one round trip; return how many."""
        return int(
            self.keyspace.run(
                backend.USER_SCRIPT, user_id, backend.user_digest(user_id), "revoke", keep or ""
            )
        )

    def clear_expired(self, *, batch_size: int | BatchSizer = 1000) -> Iterator[int]:
        """Prune expired sessions from the indexes, *batch_size* entries per round trip.

        Redis deletes the sessions themselves when their TTL runs out; what is
        left are their index entries (and sessions that Django's clock, ahead
        of Redis's, already sees as expired).
        """
        return self.keyspace.prune(timezone.now(), BatchSizer.of(batch_size).limit)

    def clear_inactive(
        self, *, before: datetime, batch_size: int | BatchSizer = 1000
    ) -> Iterator[int]:
        """Delete sessions last active before *before*, expired or not, in batches.

        No index orders sessions by activity: each chunk of the expiry index
        is read in one short script that returns its idle sessions, which are
        deleted *batch_size* at a time (in script calls of at most
        ``DELETE_SLICE``), each re-checked so that a session active meanwhile
        is kept. O(sessions) in small commands; Redis is never blocked for long.
        """
        batch_size = BatchSizer.of(batch_size).limit  # no transaction to keep short
        return self._clear_inactive(backend.to_ms(before), batch_size)

    def _clear_inactive(self, before_ms: int, batch_size: int) -> Iterator[int]:
        keyspace = self.keyspace
        chunk_ids = keyspace.client().zrange(f"{keyspace.base}:x:d", 0, -1)
        idle: list[str] = []
        for chunk_id in chunk_ids:
            for found in keyspace.run(IDLE_SCRIPT, chunk_id, before_ms):
                entry = str(backend.text(found))
                if entry.startswith("!"):
                    self.skip_unreadable(entry[1:], "its last activity is not a time")
                else:
                    idle.append(entry)
            while len(idle) >= batch_size:
                batch, idle = idle[:batch_size], idle[batch_size:]
                if deleted := self._delete_idle(before_ms, batch):
                    yield deleted
        if idle and (deleted := self._delete_idle(before_ms, idle)):
            yield deleted

    def _delete_idle(self, before_ms: int, pids: list[str]) -> int:
        return sum(
            int(self.keyspace.run(DELETE_IDLE_SCRIPT, before_ms, *pids[i : i + DELETE_SLICE]))
            for i in range(0, len(pids), DELETE_SLICE)
        )

    def export(self, *, batch_size: int = 1000) -> Iterator[list[ExportedSession]]:
        """Yield the unexpired sessions, keys included, found by SCAN, in lists of *batch_size*.

        SCAN rather than a walk of the expiry index: the index's chunks split
        and merge while the site runs, and a walk by rank could then skip
        sessions, whereas SCAN returns every session that lives throughout.
        """
        return batched(self._exported(), batch_size)

    def _exported(self) -> Iterator[ExportedSession]:
        keyspace = self.keyspace
        redis = keyspace.client(write=False)
        reader: Any = self.store_class()  # the engine stores its own (unsigned) serialization
        prefix = keyspace.session("")
        for names in _scan(redis, glob_escape(prefix) + "*"):
            pipe = redis.pipeline(transaction=False)
            for name in names:
                pipe.hmget(name, ("k", "d", "e", "ip", "ua", "c", "a"))
            now = timezone.now()
            for name, reply in zip(names, pipe.execute(raise_on_error=False), strict=True):
                pid = name.decode()[len(prefix) :]
                if not isinstance(reply, ResponseError) and all(value is None for value in reply):
                    continue  # gone meanwhile
                try:
                    session = _exported_session(reader, reply)
                except ValueError as exc:
                    self.skip_unreadable(pid, str(exc))
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
        keyspace = self.keyspace
        client = keyspace.client(write=False)
        now_ms = backend.to_ms(timezone.now())
        expiry_index = f"{keyspace.base}:x"
        total, _, expired, _ = self._totals(now_ms)
        oldest_expired = None
        head = client.zrange(f"{expiry_index}:d", 0, 0)
        if head:
            first = client.zrange(
                f"{expiry_index}:c:{backend.text(head[0])}", 0, 0, withscores=True
            )
            if first and first[0][1] <= now_ms:
                oldest_expired = backend.from_ms(int(first[0][1]))
        return Stats(
            sessions=total,
            active=total - expired,
            expired=expired,
            oldest_expired=oldest_expired,
            busiest_user=self._busiest_user(client, now_ms),
        )

    def _totals(self, now_ms: int, *, authenticated: bool = False) -> tuple[int, int, int, int]:
        """Return the index entries, the authenticated ones, and of each those
        expired at *now_ms*, in short script calls over slices of the chunks.

        Without *authenticated*, a chunk costs one ZCARD; with it, its members
        are read (the authenticated ones carry the user's score).
        """
        total = auth = expired = expired_auth = 0
        first = 0
        limit = COUNT_CHUNKS_AUTHENTICATED if authenticated else COUNT_CHUNKS
        while True:
            total, auth, read, some, some_auth = (
                int(value)
                for value in self.keyspace.run(
                    backend.COUNT_SCRIPT,
                    now_ms,
                    first,
                    limit,
                    "1" if authenticated else "0",
                )
            )
            expired += some
            expired_auth += some_auth
            first += read
            if read < limit:
                return total, auth, expired, expired_auth

    def _busiest_user(self, client: Any, now_ms: int) -> tuple[str, int] | None:
        keyspace = self.keyspace
        user_index = f"{keyspace.base}:u"
        best: tuple[int, str] | None = None  # (-sessions, user id): the smallest is the best
        start = 0
        while True:
            chunk_ids = client.zrange(f"{user_index}:d", start, start + CHUNKS_PER_ROUND_TRIP - 1)
            if not chunk_ids:
                return None if best is None else (best[1], -best[0])
            start += len(chunk_ids)
            pipe = client.pipeline(transaction=False)
            for chunk_id in chunk_ids:
                pipe.zrange(f"{user_index}:c:{backend.text(chunk_id)}", 0, -1)
            pids = [backend.text(pid) for members in pipe.execute() for pid in members]
            pipe = client.pipeline(transaction=False)
            for pid in pids:
                pipe.hmget(keyspace.session(str(pid)), ("u", "e"))
            live: Counter[str] = Counter()
            for pid, reply in zip(pids, pipe.execute(raise_on_error=False), strict=True):
                user_id, expiry = (None, None) if isinstance(reply, ResponseError) else reply
                try:
                    expiry_ms = None if expiry is None else int(expiry)
                except ValueError:
                    expiry_ms = None
                if isinstance(reply, ResponseError) or (expiry is not None and expiry_ms is None):
                    self.skip_unreadable(str(pid), f"expiry {expiry!r}")
                elif user_id is not None and expiry_ms is not None and expiry_ms > now_ms:
                    live[str(backend.text(user_id))] += 1
            for user_id, sessions in live.items():
                if best is None or (-sessions, user_id) < best:
                    best = (-sessions, user_id)
