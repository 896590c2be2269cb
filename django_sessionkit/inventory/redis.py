"""Inventory of sessions in Redis: sessionkit's redis engine, and Django's cache engine.

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

:class:`StockCacheInventory` lists Django's ``cache`` engine on django-redis,
which keeps no index: every operation SCANs the cache's session keys with a
large COUNT and pipelines the GETs and PTTLs, O(keys in the Redis database).
Redis expires those sessions itself, so there is nothing to clear; activity
is not recorded, so the activity filters match nothing.
"""

from __future__ import annotations

import fnmatch
import heapq
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from importlib import import_module
from itertools import islice
from operator import itemgetter
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase
from django.core.cache import caches
from django.utils import timezone
from django_redis.client.default import glob_escape
from redis.exceptions import ResponseError

from django_sessionkit.backends import redis as backend
from django_sessionkit.backends.base import CopiedMetadata, decoded_data, is_session_key
from django_sessionkit.inventory.base import (
    BatchSizer,
    Count,
    ExportedSession,
    Filters,
    InventoryUnavailable,
    Ordering,
    SessionInfo,
    SessionInventory,
    Stats,
    Status,
    batched,
    decoded_info,
)
from django_sessionkit.public_id import public_id as public_id_of

logger = logging.getLogger(__name__)

OUR_ENGINE = "django_sessionkit.backends.redis"
STOCK_CACHE_ENGINE = "django.contrib.sessions.backends.cache"
PUBLIC_ID = re.compile(r"[0-9a-f]{32}")
#: Keys SCAN looks at per round trip: large, so that millions of keys take
#: thousands of round trips rather than millions.
SCAN_COUNT = 10_000
#: Random keys sampled to estimate how many of a database's keys are sessions.
ESTIMATE_SAMPLE = 200
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


def django_redis_cache(alias: str, engine: str) -> Any:
    """Return the django-redis cache *alias*, or raise InventoryUnavailable saying why not."""
    cache = caches[alias]
    try:
        from django_redis.cache import RedisCache
    except ImportError:
        RedisCache = None
    if RedisCache is None or not isinstance(cache, RedisCache):
        backend = f"{type(cache).__module__}.{type(cache).__qualname__}"
        raise InventoryUnavailable(
            f"The session engine {engine!r} keeps sessions in the cache {alias!r} "
            f"({backend}), which cannot list its keys. Sessions in a cache can be listed "
            f"only on django-redis (django_redis.cache.RedisCache)."
        )
    if not hasattr(cache.client, "get_client"):
        raise InventoryUnavailable(
            f"The cache {alias!r} uses {type(cache.client).__qualname__}, which spreads keys "
            f"over several servers; its sessions cannot be listed."
        )
    return cache


def _is_ms(value: bytes | str | None) -> bool:
    """Whether *value* is a stored time in milliseconds, as the engine writes them."""
    try:
        return backend.from_ms(value) is not None
    except ValueError:
        return False


def _scan(redis: Any, pattern: str) -> Iterator[list[bytes]]:
    """Yield the keys matching *pattern*, one SCAN reply at a time."""
    cursor = 0
    while True:
        cursor, keys = redis.scan(cursor=cursor, match=pattern, count=SCAN_COUNT)
        if keys:
            yield keys
        if cursor == 0:
            return


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


def _sort_key(ordering: Ordering) -> Callable[[SessionInfo], float]:
    """Sort by the ordering's field; a session without that field sorts first."""
    field = ordering.lstrip("-")

    def key(info: SessionInfo) -> float:
        moment = getattr(info, field)
        return float("-inf") if moment is None else float(moment.timestamp())

    return key


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
            sessions.sort(key=_sort_key(ordering), reverse=descending)
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
        sessions.sort(key=_sort_key("-last_activity"), reverse=True)
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


class StockCacheInventory(SessionInventory):
    """Read and revoke the sessions of Django's ``cache`` engine on django-redis.

    No index exists: every call SCANs the cache's session keys (``COUNT``
    10,000 per round trip, GET/PTTL pipelined), so each costs O(keys in the
    Redis database). The user comes from the decoded ``_auth_user_id``, the
    expiry from the key's TTL; IP, user agent and activity are not recorded.
    """

    records_metadata = False
    expires_itself = "Redis"

    def __init__(self, engine: str = STOCK_CACHE_ENGINE, cache_alias: str | None = None) -> None:
        self.engine = engine
        self.store_class: type[SessionBase] = import_module(engine).SessionStore
        self.cache_alias = cache_alias or settings.SESSION_CACHE_ALIAS
        self.cache = django_redis_cache(self.cache_alias, engine)
        self.prefix: str = getattr(self.store_class, "cache_key_prefix", "")
        if not self.prefix:
            raise InventoryUnavailable(f"The session engine {engine!r} is not a cache engine.")

    # -- helpers ------------------------------------------------------------

    @property
    def _client(self) -> Any:
        return self.cache.client

    def _redis(self, write: bool = False) -> Any:
        return self._client.get_client(write=write)

    def _session_key(self, raw_key: bytes | str) -> str | None:
        """Return the session key of a Redis key, None when it is not one of this engine's."""
        text = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
        session_key = str(self._client.reverse_key(text)[len(self.prefix) :])
        # Stock cached_db's prefix extends this one; its keys fail this check.
        return session_key if is_session_key(session_key) else None

    def _scan(self) -> Iterator[list[tuple[bytes, str]]]:
        """Yield the (Redis key, session key) pairs of each SCAN reply."""
        pattern = self._client.make_pattern(self.prefix + "*")
        for raw_keys in _scan(self._redis(), pattern):
            pairs = [(raw, key) for raw in raw_keys if (key := self._session_key(raw))]
            if pairs:
                yield pairs

    def _sessions(
        self, *, with_data: bool
    ) -> Iterator[tuple[bytes, str, datetime | None, dict[str, Any] | None]]:
        """Yield (Redis key, session key, expiry, data or None) for every live session."""
        redis = self._redis()
        for pairs in self._scan():
            pipe = redis.pipeline(transaction=False)
            for raw, _ in pairs:
                pipe.pttl(raw)
                if with_data:
                    pipe.get(raw)
            replies = pipe.execute()
            now = timezone.now()
            width = 2 if with_data else 1
            for index, (raw, session_key) in enumerate(pairs):
                pttl = replies[index * width]
                if pttl == -2:
                    continue  # expired or deleted since SCAN saw it
                data = None
                if with_data:
                    value = replies[index * width + 1]
                    if value is None:
                        continue
                    data = self._decode(value)
                expire_date = None if pttl < 0 else now + timedelta(milliseconds=pttl)
                yield raw, session_key, expire_date, data

    def _decode(self, value: bytes) -> dict[str, Any]:
        return decoded_data(self._client.decode, value, f"the cache {self.cache_alias!r}")

    def _estimate(self) -> int:
        """Estimate the sessions from DBSIZE and a sample of random keys."""
        redis = self._redis()
        pipe = redis.pipeline(transaction=False)
        pipe.dbsize()
        for _ in range(ESTIMATE_SAMPLE):
            pipe.randomkey()
        size, *sample = pipe.execute()
        keys = [key for key in sample if key is not None]
        if not keys:
            return 0
        pattern = self._client.make_pattern(self.prefix + "*")
        hits = sum(
            1
            for key in keys
            if fnmatch.fnmatchcase(key.decode(), pattern) and self._session_key(key)
        )
        return round(size * hits / len(keys))

    # -- SessionInventory -----------------------------------------------------

    def _can_match(self, filters: Filters) -> bool:
        # Redis drops expired sessions itself.
        return filters.status != "expired" and super()._can_match(filters)

    def _count(self, filters: Filters, *, estimate: bool) -> Count:
        """Count by SCAN (O(keys), expensive); *estimate* samples random keys instead."""
        if filters.users is None and filters.authenticated is None:
            if estimate:
                return Count(self._estimate(), exact=False)
            return Count(sum(len(pairs) for pairs in self._scan()))
        now = timezone.now()
        return Count(
            sum(
                1
                for _, key, expiry, data in self._sessions(with_data=True)
                if filters.matches(decoded_info(key, data or {}, expiry), now)
            )
        )

    def _page(
        self, filters: Filters, *, offset: int, limit: int, ordering: Ordering
    ) -> list[SessionInfo]:
        """Return a page ordered by expiry (activity is not recorded), after a full SCAN.

        Memory holds only *offset* + *limit* sessions; the page's data is read
        in one pipelined round trip.
        """
        with_data = filters.users is not None or filters.authenticated is not None
        now = timezone.now()
        # A key without a TTL never expires: it sorts after every other.
        candidates = (
            (float("inf") if expiry is None else expiry.timestamp(), raw, key, expiry, data)
            for raw, key, expiry, data in self._sessions(with_data=with_data)
            if not with_data or filters.matches(decoded_info(key, data or {}, expiry), now)
        )
        pick = heapq.nlargest if ordering.startswith("-") else heapq.nsmallest
        chosen = pick(offset + limit, candidates, key=itemgetter(0))[offset:]
        if not with_data and chosen:
            pipe = self._redis().pipeline(transaction=False)
            for _, raw, _, _, _ in chosen:
                pipe.get(raw)
            values = pipe.execute()
            chosen = [
                (order, raw, key, expiry, self._decode(value))
                for (order, raw, key, expiry, _), value in zip(chosen, values, strict=True)
                if value is not None
            ]
        return [decoded_info(key, data or {}, expiry) for _, _, key, expiry, data in chosen]

    def get(self, public_id: str) -> SessionInfo | None:
        """Find the session with *public_id*: a SCAN that digests every key."""
        found = self._find(public_id)
        if found is None:
            return None
        raw, session_key = found
        redis = self._redis()
        pipe = redis.pipeline(transaction=False)
        pipe.pttl(raw)
        pipe.get(raw)
        pttl, value = pipe.execute()
        if value is None:
            return None
        expire_date = None if pttl < 0 else timezone.now() + timedelta(milliseconds=pttl)
        return decoded_info(session_key, self._decode(value), expire_date)

    def _find(self, public_id: str) -> tuple[bytes, str] | None:
        if not PUBLIC_ID.fullmatch(public_id):
            return None
        for pairs in self._scan():
            for raw, session_key in pairs:
                if public_id_of(session_key) == public_id:
                    return raw, session_key
        return None

    def for_user(self, user_id: str) -> list[SessionInfo]:
        """Return the user's sessions, latest expiry (i.e. latest save) first: a full SCAN."""
        now = timezone.now()
        of_user = Filters(users=frozenset((user_id,)))
        infos = (
            decoded_info(key, data or {}, expiry)
            for _, key, expiry, data in self._sessions(with_data=True)
        )
        sessions = [info for info in infos if of_user.matches(info, now)]
        sessions.sort(key=_sort_key("-expire_date"), reverse=True)
        return sessions

    def revoke(self, public_id: str) -> bool:
        found = self._find(public_id)
        return found is not None and bool(self._redis(write=True).delete(found[0]))

    def revoke_user(self, user_id: str, *, keep: str | None = None) -> int:
        """Delete the user's sessions but *keep*: a full SCAN, one DEL per SCAN reply."""
        redis = self._redis(write=True)
        doomed: list[bytes] = []
        revoked = 0
        now = timezone.now()
        of_user = Filters(users=frozenset((user_id,)))
        for raw, key, expiry, data in self._sessions(with_data=True):
            info = decoded_info(key, data or {}, expiry)
            if of_user.matches(info, now) and info.public_id != keep:
                doomed.append(raw)
            if len(doomed) >= SCAN_COUNT:
                revoked += redis.delete(*doomed)
                doomed = []
        if doomed:
            revoked += redis.delete(*doomed)
        return int(revoked)

    def clear_expired(self, *, batch_size: int | BatchSizer = 1000) -> Iterator[int]:
        """Yield nothing: Redis deletes cache sessions itself when their TTL runs out."""
        BatchSizer.of(batch_size)  # rejects a size below 1
        return iter(())

    def export(self, *, batch_size: int = 1000) -> Iterator[list[ExportedSession]]:
        """Yield the live sessions, keys included, found by SCAN, in lists of *batch_size*.

        SCAN may return a key twice while Redis rehashes: the copy then finds
        the session already at the destination. A key without a TTL (set by
        hand) expires by the session's own expiry policy.
        """
        decoder: Any = self.store_class()
        sessions = (
            ExportedSession(key, data or {}, expiry or self._policy_expiry(decoder, data or {}))
            for _, key, expiry, data in self._sessions(with_data=True)
        )
        return batched(sessions, batch_size)

    @staticmethod
    def _policy_expiry(decoder: Any, data: dict[str, Any]) -> datetime:
        decoder._session_cache = data
        expiry: datetime = decoder.get_expiry_date(modification=timezone.now())
        return expiry

    def stats(self) -> Stats:
        """Count the sessions with a SCAN; Redis keeps no expired ones, records no user index.

        Counts only: finding the busiest user would mean reading and decoding
        every session.
        """
        sessions = sum(len(pairs) for pairs in self._scan())
        return Stats(
            sessions=sessions, active=sessions, expired=0, oldest_expired=None, busiest_user=None
        )
