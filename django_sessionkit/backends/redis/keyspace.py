"""Where the redis engine's sessions live: every key name, hash field and script.

:class:`Keyspace` alone builds key names, reads hash fields and runs the
scripts of :mod:`.scripts` (the package's docstring describes the layout);
:class:`Indexes`, reached as :attr:`Keyspace.indexes`, does the same for the
two chunked indexes as a whole. The engine and the inventory call their
methods, which answer plain values: ints, tuples and :class:`.Stored` records.

The scripts run through redis-py's :class:`~redis.commands.core.Script`: an
EVALSHA, the script loaded when the server answers NOSCRIPT; in a pipeline,
loaded (after a ``SCRIPT EXISTS``) before the pipeline runs.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from functools import cached_property
from itertools import islice
from typing import Any

from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django_redis.client.default import glob_escape
from redis.commands.core import Script
from redis.exceptions import ResponseError

from django_sessionkit.backends.base import to_ms
from django_sessionkit.backends.redis.codec import text, user_digest
from django_sessionkit.backends.redis.scripts import (
    SOURCES,
    Save,
    Stored,
    listed,
    users_sessions,
)
from django_sessionkit.conf import conf

logger = logging.getLogger(__name__)

#: The two chunked indexes (see the package): by expiry, and by user.
EXPIRY_INDEX = "x"
USER_INDEX = "u"
#: The hash fields a load reads: data, last activity, expiry.
LOAD_FIELDS = ("d", "a", "e")
#: The hash fields that describe a session, in the order of the scripts' ``described()``.
METADATA_FIELDS = ("u", "e", "ip", "ua", "c", "a")
#: The hash fields an export reads: the session key and data, then the metadata.
EXPORT_FIELDS = ("k", "d", "e", "ip", "ua", "c", "a")
#: Index entries one PRUNE script call removes at most (some 10 us each with
#: the session's hash): a batch of prune() takes several calls, so that no
#: single command keeps Redis busy for more than a millisecond or two.
PRUNE_SLICE = 50
#: PRUNE script calls sent per pipelined round trip.
PRUNE_PIPELINE = 10
#: User index chunks swept per pipelined round trip (one script call each).
SWEEP_PIPELINE = 50
#: User index chunk ids read from its directory per round trip: reading a
#: directory of tens of thousands of chunks at once would hold Redis for 10 ms.
SWEEP_PAGE = 1000
#: Chunks of the expiry index one counting script call reads: a ZCARD each,
#: or, to count authenticated sessions, up to 120 members each. Either way a
#: call takes a few milliseconds at most.
COUNT_CHUNKS = 500
COUNT_CHUNKS_AUTHENTICATED = 50
#: Sessions one script call deletes at most: delete_idle() takes several
#: calls, so that no single command keeps Redis busy for long.
DELETE_SLICE = 200

#: Keyspaces by cache object and prefix: a cache's KEY_PREFIX and version are
#: fixed for its lifetime, and Django makes new cache objects when CACHES changes.
_keyspaces: weakref.WeakKeyDictionary[Any, dict[str, Keyspace]] = weakref.WeakKeyDictionary()


class Keyspace:
    """Where the sessions of one django-redis cache live."""

    def __init__(self, alias: str, cache: Any = None) -> None:
        self.alias = alias
        self.cache: Any = caches[alias] if cache is None else cache
        self.base = str(self.cache.make_key(conf.REDIS_PREFIX))
        self._scripts: dict[str, Script] | None = None

    @classmethod
    def of(cls, alias: str) -> Keyspace:
        """Return the keyspace of the cache *alias*, made once per cache object."""
        cache = caches[alias]
        prefix = conf.REDIS_PREFIX
        known = _keyspaces.setdefault(cache, {})
        keyspace = known.get(prefix)
        if keyspace is None:
            keyspace = known[prefix] = cls(alias, cache)
        return keyspace

    @cached_property
    def indexes(self) -> Indexes:
        """The expiry and user indexes of this keyspace."""
        return Indexes(self)

    def client(self, write: bool = True) -> Any:
        """Return django-redis's raw redis-py client of the cache.

        Raise ImproperlyConfigured when the cache is not django-redis on one
        server (system check ``sessionkit.E007`` / ``E008`` says so at start-up).
        """
        # What django_redis.get_redis_connection(alias) does, on the cache in hand.
        try:
            return self.cache.client.get_client(write)
        except AttributeError as exc:
            backend = type(self.cache)
            raise ImproperlyConfigured(
                f"django_sessionkit.backends.redis needs SESSION_CACHE_ALIAS to name a "
                f"django-redis cache (django_redis.cache.RedisCache) on one server; "
                f"{self.alias!r} is {backend.__module__}.{backend.__qualname__}."
            ) from exc
        except NotImplementedError as exc:
            raise ImproperlyConfigured(
                f"django_sessionkit.backends.redis cannot use the cache {self.alias!r}: "
                f"django-redis's sharded client spreads keys over several servers, and each "
                f"write of a session changes its hash and its index entries in one script."
            ) from exc

    def reach(self) -> None:
        """Connect the write client to Redis, sending no command, or raise as redis-py does.

        A write that fails here was refused: nothing was sent, so nothing was
        changed. Once connected, a write that fails (a timeout, a connection
        lost while waiting for the reply, even if redis-py's retries then find
        the server refusing) may have been applied.
        """
        pool = self.client().connection_pool
        try:
            connection = pool.get_connection()
        except TypeError:  # redis-py before 5.3 names the command
            connection = pool.get_connection("EVALSHA")
        pool.release(connection)

    @property
    def scripts(self) -> dict[str, Script]:
        """The scripts by name, as redis-py Script objects of the write client."""
        if self._scripts is None:
            client = self.client()
            self._scripts = {name: client.register_script(lua) for name, lua in SOURCES.items()}
        return self._scripts

    def run(self, name: str, *args: Any, client: Any = None) -> Any:
        """Run the script *name* with the key base and *args*, on the write client.

        On *client* instead, a pipeline: the call is queued, its reply comes
        with the pipeline's.
        """
        script = self.scripts[name]
        return script(args=(self.base, *args), client=self.client() if client is None else client)

    # -- key names ---------------------------------------------------------------

    def session(self, pid: str) -> str:
        """Return the name of the hash of the session with public id *pid*."""
        return f"{self.base}:s:{pid}"

    def directory(self, index: str) -> str:
        """Return the name of the directory of *index*: its chunk ids by lowest score."""
        return f"{self.base}:{index}:d"

    def chunk(self, index: str, chunk_id: str) -> str:
        """Return the name of the chunk *chunk_id* of *index*."""
        return f"{self.base}:{index}:c:{chunk_id}"

    def size(self, index: str) -> str:
        """Return the name of the count of *index*'s entries."""
        return f"{self.base}:{index}:n"

    def authenticated(self) -> str:
        """Return the name of the count of the expiry index's authenticated entries."""
        return f"{self.base}:{EXPIRY_INDEX}:a"

    def session_pattern(self) -> str:
        """Return the SCAN pattern of every session's hash."""
        return glob_escape(self.session("")) + "*"

    def index_pattern(self) -> str:
        """Return the SCAN pattern of every key of the indexes."""
        return glob_escape(self.base) + f":[{EXPIRY_INDEX}{USER_INDEX}]:*"

    # -- sessions ----------------------------------------------------------------

    def load(self, pids: Sequence[str]) -> list[Stored]:
        """Return the data, last activity and expiry stored under each of *pids*: one round trip."""
        pipe = self.client(write=False).pipeline(transaction=False)
        for pid in pids:
            pipe.hmget(self.session(pid), LOAD_FIELDS)
        # A key of another type answers an error in its place, not for the load.
        rows = pipe.execute(raise_on_error=False)
        loaded = []
        for pid, row in zip(pids, rows, strict=True):
            if isinstance(row, ResponseError):
                loaded.append(Stored(pid, "bad"))
                continue
            data, activity, expiry = row
            state = "gone" if all(value is None for value in row) else "ok"
            loaded.append(Stored(pid, state, expiry=expiry, activity=activity, data=data))
        return loaded

    def exists(self, pids: Sequence[str]) -> bool:
        """Whether anything is stored under any of *pids*."""
        return bool(self.client(write=False).exists(*(self.session(pid) for pid in pids)))

    def save(self, save: Save, *, create: bool) -> int:
        """Write *save*: 1 when saved, 0 when *create* found the key taken, -1 when
        an update found no session to update."""
        return int(self.run("save", *save.arguments(create=create)))

    def create_many(self, saves: Iterable[Save]) -> list[int]:
        """Create the sessions *saves* in one pipelined round trip (bulk loading).

        Return each one's result, as :meth:`save` does.
        """
        pipe = self.client().pipeline(transaction=False)
        for save in saves:
            self.run("save", *save.arguments(create=True), client=pipe)
        return [int(result) for result in pipe.execute()]

    def delete(self, *pids: str) -> int:
        """Delete the sessions stored under *pids* and their index entries; return how many."""
        return int(self.run("delete", *pids))

    def touch(self, pid: str, now_ms: int) -> int:
        """Write only the last activity of the session *pid*; 0 when there is none."""
        return int(self.run("touch", pid, now_ms))

    def describe(self, pid: str) -> Stored | None:
        """Return the session stored under *pid*, None when nothing is: one round trip."""
        pipe = self.client(write=False).pipeline(transaction=False)
        name = self.session(pid)
        pipe.hmget(name, METADATA_FIELDS)
        pipe.hexists(name, "d")
        row, has_data = pipe.execute(raise_on_error=False)
        if isinstance(row, ResponseError):
            return Stored(pid, "bad")
        if not has_data and all(value is None for value in row):
            return None
        return Stored(pid, "ok" if has_data else "bad", *row)

    def data(self, pid: str) -> bytes | None:
        """Return the stored data of the session *pid*; ValueError for a key of another type."""
        try:
            value: bytes | None = self.client(write=False).hget(self.session(pid), "d")
        except ResponseError as exc:
            raise ValueError(str(exc)) from exc
        return value

    def user_sessions(self, user_id: str) -> list[Stored]:
        """Return every stored session of *user_id*, expired ones included: one script call.

        Index entries whose session is gone are pruned on the way.
        """
        return users_sessions(self.run("user", user_id, user_digest(user_id), "list", ""))

    def revoke_user(self, user_id: str, keep: str | None = None) -> int:
        """Delete the sessions of *user_id* but *keep*: one script call; return how many."""
        return int(self.run("user", user_id, user_digest(user_id), "revoke", keep or ""))

    def delete_idle(self, before_ms: int, pids: Sequence[str]) -> int:
        """Delete those of the sessions *pids* still last active before *before_ms*
        (one active meanwhile is kept), ``DELETE_SLICE`` per script call; return how many."""
        return sum(
            int(self.run("delete_idle", before_ms, *pids[i : i + DELETE_SLICE]))
            for i in range(0, len(pids), DELETE_SLICE)
        )

    def export(self, scan_count: int) -> Iterator[list[Stored]]:
        """Yield the stored sessions with their keys and data, as SCAN finds them.

        *scan_count* keys per SCAN command and per pipelined read. A key of
        another type comes as ``"bad"``; a session gone meanwhile not at all.
        """
        client = self.client(write=False)
        prefix = self.session("")
        names = client.scan_iter(match=self.session_pattern(), count=scan_count)
        while batch := list(islice(names, scan_count)):
            pipe = client.pipeline(transaction=False)
            for name in batch:
                pipe.hmget(name, EXPORT_FIELDS)
            found = []
            for name, reply in zip(batch, pipe.execute(raise_on_error=False), strict=True):
                pid = name.decode()[len(prefix) :]
                if isinstance(reply, ResponseError):
                    found.append(Stored(pid, "bad"))
                elif any(value is not None for value in reply):
                    key, data, expiry, ip, user_agent, created, activity = reply
                    found.append(
                        Stored(pid, "ok", None, expiry, ip, user_agent, created, activity,
                               session_key=key, data=data)
                    )  # fmt: skip
            yield found


class Indexes:
    """The expiry index and the user index of a keyspace, as a whole."""

    def __init__(self, keyspace: Keyspace) -> None:
        self.keyspace = keyspace

    def prune(self, now: datetime, batch_size: int) -> Iterator[int]:
        """Remove index entries of expired sessions in batches, yielding each batch's count.

        A batch is several script calls of at most ``PRUNE_SLICE`` entries
        each, sent ``PRUNE_PIPELINE`` to a round trip: every command stays
        short, and the round trips do not add up. Once something was pruned,
        the user index is swept (see :meth:`sweep_users`) as part of the last
        batch.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1.")
        now_ms = to_ms(now)
        client = self.keyspace.client()
        pruned_any = False
        while True:
            removed = 0
            exhausted = False
            while removed < batch_size and not exhausted:
                steps: list[int] = []
                left = batch_size - removed
                while left > 0 and len(steps) < PRUNE_PIPELINE:
                    steps.append(min(PRUNE_SLICE, left))
                    left -= steps[-1]
                pipe = client.pipeline(transaction=False)
                for step in steps:
                    self.keyspace.run("prune", now_ms, step, client=pipe)
                pruned = [int(n) for n in pipe.execute()]
                removed += sum(pruned)
                # Redis runs the calls in order: one that fell short found the end.
                exhausted = any(n < step for n, step in zip(pruned, steps, strict=True))
            if exhausted:
                if removed or pruned_any:
                    self.sweep_users()
                if removed:
                    yield removed
                return
            pruned_any = True
            yield removed

    def sweep_users(self) -> int:
        """Drop the user index entries of sessions that are gone; return how many.

        Pruning leaves them (see the PRUNE script). One short script per chunk
        of the user index, pipelined, reading the chunk ids from the
        directory ``SWEEP_PAGE`` at a time in the order of their scores (each
        chunk's lowest). A chunk that sweeping leaves small merges into the
        next one, which takes its score: a chain of merges can carry the
        lowest score of a page on to the first chunk after it. So each page
        starts at the lowest score of the one before, leaving out the chunks
        swept there. A chunk merged away meanwhile is simply found empty.
        """
        client = self.keyspace.client()
        directory = self.keyspace.directory(USER_INDEX)
        dropped = 0
        lowest: float | str = "-inf"
        swept: set[bytes] = set()
        while True:
            limit = SWEEP_PAGE + len(swept)
            page = client.zrangebyscore(
                directory, lowest, "+inf", start=0, num=limit, withscores=True
            )
            fresh = [(chunk_id, score) for chunk_id, score in page if chunk_id not in swept]
            for start in range(0, len(fresh), SWEEP_PIPELINE):
                pipe = client.pipeline(transaction=False)
                for chunk_id, _ in fresh[start : start + SWEEP_PIPELINE]:
                    self.keyspace.run("sweep", chunk_id, client=pipe)
                dropped += sum(int(n) for n in pipe.execute())
            if len(page) < limit or not fresh:
                return dropped
            lowest = fresh[0][1]
            swept = {chunk_id for chunk_id, _ in fresh}

    def totals(self, now_ms: int, *, authenticated: bool = False) -> tuple[int, int, int, int]:
        """Return the expiry index's entries, the authenticated ones, and of each
        those expired at *now_ms*, in short script calls over slices of the chunks.

        Without *authenticated*, a chunk costs one ZCARD; with it, its members
        are read (the authenticated ones carry the user's score).
        """
        expired = expired_auth = first = 0
        limit = COUNT_CHUNKS_AUTHENTICATED if authenticated else COUNT_CHUNKS
        flag = "1" if authenticated else "0"
        while True:
            reply = self.keyspace.run("count", now_ms, first, limit, flag)
            total, auth, read, some, some_auth = (int(value) for value in reply)
            expired += some
            expired_auth += some_auth
            first += read
            if read < limit:
                return total, auth, expired, expired_auth

    def estimate(self, now_ms: int, samples: int) -> tuple[int, int, int]:
        """Return the expiry index's entries, its chunks holding expired entries, and
        an estimate of the expired entries from *samples* of those chunks."""
        total, chunks, expired = (int(v) for v in self.keyspace.run("estimate", now_ms, samples))
        return total, chunks, expired

    def page(
        self,
        now_ms: int,
        *,
        expired: bool | None,
        offset: int,
        limit: int,
        descending: bool,
        directory_slice: int,
    ) -> list[Stored]:
        """Return a page of the expiry index: every entry (*expired* None), the
        expired ones or the others. One script call, which skips whole chunks
        before *offset* by their size, reading the directory *directory_slice*
        chunk ids at a time."""
        lo, hi = _bounds(now_ms, expired)
        flag = "1" if descending else "0"
        return listed(self.keyspace.run("page", lo, hi, offset, limit, flag, directory_slice))

    def expiry_chunks(self) -> list[str]:
        """Return the ids of the expiry index's chunks, in order of their scores."""
        client = self.keyspace.client()
        return [str(text(i)) for i in client.zrange(self.keyspace.directory(EXPIRY_INDEX), 0, -1)]

    def chunk_entries(
        self, chunk_id: str, now_ms: int, *, expired: bool | None, descending: bool
    ) -> list[Stored]:
        """Return the entries of one chunk of the expiry index, as :meth:`page` does."""
        lo, hi = _bounds(now_ms, expired)
        return listed(self.keyspace.run("chunk", chunk_id, lo, hi, "1" if descending else "0"))

    def lowest_expiry(self) -> int | None:
        """Return the lowest score (ms) of the expiry index, None when it is empty."""
        client = self.keyspace.client(write=False)
        head = client.zrange(self.keyspace.directory(EXPIRY_INDEX), 0, 0)
        if not head:
            return None
        chunk = self.keyspace.chunk(EXPIRY_INDEX, str(text(head[0])))
        first = client.zrange(chunk, 0, 0, withscores=True)
        return int(first[0][1]) if first else None

    def idle_in_chunk(self, chunk_id: str, before_ms: int) -> tuple[list[str], list[str]]:
        """Return the public ids of one expiry index chunk's sessions last active
        before *before_ms*, and those of its sessions whose activity is no time."""
        idle, unreadable = [], []
        for found in self.keyspace.run("idle", chunk_id, before_ms):
            entry = str(text(found))
            if entry.startswith("!"):
                unreadable.append(entry[1:])
            else:
                idle.append(entry)
        return idle, unreadable

    def user_index_sessions(self, chunks_per_round_trip: int) -> Iterator[list[Stored]]:
        """Yield the sessions of the user index, chunk by chunk, with their user id and
        expiry as stored (``"bad"`` for a key of another type).

        Each list holds the sessions of *chunks_per_round_trip* chunks, read in
        two pipelined round trips; the sessions of one user sit in one chunk.
        """
        keyspace = self.keyspace
        client = keyspace.client(write=False)
        start = 0
        while True:
            last = start + chunks_per_round_trip - 1
            chunk_ids = client.zrange(keyspace.directory(USER_INDEX), start, last)
            if not chunk_ids:
                return
            start += len(chunk_ids)
            pipe = client.pipeline(transaction=False)
            for chunk_id in chunk_ids:
                pipe.zrange(keyspace.chunk(USER_INDEX, str(text(chunk_id))), 0, -1)
            pids = [str(text(pid)) for members in pipe.execute() for pid in members]
            pipe = client.pipeline(transaction=False)
            for pid in pids:
                pipe.hmget(keyspace.session(pid), ("u", "e"))
            replies = pipe.execute(raise_on_error=False)
            yield [
                Stored(pid, "bad")
                if isinstance(reply, ResponseError)
                else Stored(pid, "ok", user_id=reply[0], expiry=reply[1])
                for pid, reply in zip(pids, replies, strict=True)
            ]


def _bounds(now_ms: int, expired: bool | None) -> tuple[str, str]:
    """Return the expiry index's score bounds: every entry, the expired ones or the others."""
    if expired is None:
        return "-inf", "+inf"
    return ("-inf", str(now_ms)) if expired else (f"({now_ms}", "+inf")
