"""Where the redis engine's sessions live: every key name, hash field and script.

:class:`Keyspace` alone builds key names, reads hash fields and runs the
scripts of :mod:`.scripts` (the package's docstring describes the layout).
Its methods, and those of :class:`~.indexes.Indexes` for the two chunked
indexes as a whole (:attr:`Keyspace.indexes`), answer plain values: ints,
tuples and :class:`~.scripts.Stored` records.

The scripts run through redis-py's :class:`~redis.commands.core.Script`: an
EVALSHA, the script loaded when the server answers NOSCRIPT; in a pipeline,
loaded (after a ``SCRIPT EXISTS``) before the pipeline runs.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterable, Iterator, Sequence
from functools import cached_property
from itertools import islice
from typing import TYPE_CHECKING, Any

from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django_redis.client.default import glob_escape
from redis.commands.core import Script
from redis.exceptions import ResponseError

from django_sessionkit.backends.redis.codec import user_digest
from django_sessionkit.backends.redis.scripts import (
    SOURCES,
    Save,
    Stored,
    users_sessions,
)
from django_sessionkit.conf import conf

if TYPE_CHECKING:
    from django_sessionkit.backends.redis.indexes import Indexes

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
#: The hash fields that say whose a session is and until when.
OWNER_FIELDS = ("u", "e")
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
        self.base = str(self.cache.make_key(conf.SESSIONKIT_REDIS_PREFIX))
        self._scripts: dict[str, Script] | None = None

    @classmethod
    def of(cls, alias: str) -> Keyspace:
        """Return the keyspace of the cache *alias*, made once per cache object."""
        cache = caches[alias]
        prefix = conf.SESSIONKIT_REDIS_PREFIX
        known = _keyspaces.setdefault(cache, {})
        keyspace = known.get(prefix)
        if keyspace is None:
            keyspace = known[prefix] = cls(alias, cache)
        return keyspace

    @cached_property
    def indexes(self) -> Indexes:
        """The expiry and user indexes of this keyspace."""
        # Imported here: indexes.py builds on this module.
        from django_sessionkit.backends.redis.indexes import Indexes

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
        return str(glob_escape(self.session(""))) + "*"

    def index_pattern(self) -> str:
        """Return the SCAN pattern of every key of the indexes."""
        return str(glob_escape(self.base)) + f":[{EXPIRY_INDEX}{USER_INDEX}]:*"

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

    def owners(self, pids: Sequence[str]) -> list[Stored]:
        """Return the user id and expiry stored under each of *pids*: one round trip."""
        pipe = self.client(write=False).pipeline(transaction=False)
        for pid in pids:
            pipe.hmget(self.session(pid), OWNER_FIELDS)
        return [
            Stored(pid, "bad")
            if isinstance(reply, ResponseError)
            else Stored(pid, "ok", user_id=reply[0], expiry=reply[1])
            for pid, reply in zip(pids, pipe.execute(raise_on_error=False), strict=True)
        ]

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
