"""Redis sessions on django-redis that record user, IP, user agent and activity.

``SESSION_ENGINE = "django_sessionkit.backends.redis"``, with
``SESSION_CACHE_ALIAS`` naming a django-redis cache. Each session is one Redis
hash that expires with the session (its TTL is the session's expiry age, as
with Django's cache engine)::

    <cache prefix>:<version>:<SESSIONKIT_REDIS_PREFIX>:s:<public id>
        d   the session data, serialized by SESSION_SERIALIZER (as the cache
            engine stores it: not signed, see SessionStore.serialize_data())
        k   the session key, for migratesessions
        u   user id (absent for anonymous sessions), h: its 32-bit digest
        ip, ua   client address and user agent, as the privacy settings allow
        c, a, e  created, last activity, expiry: Unix time in milliseconds

The hash is named by the session's public id, so the inventory finds a
session by its public id without a mapping. Two indexes make the inventory
cheap without ``KEYS``: ``:x`` orders every session by expiry (score ``e``,
member ``<public id>`` or ``<public id>:<h>``) and ``:u`` groups the sessions
of each user (score ``h``, member ``<public id>``).

Both indexes are *chunked sorted sets*: a directory sorted set maps chunk
ids to the lowest score of each chunk, and each chunk is a small sorted set
of at most ``CHUNK_MAX`` entries, which Redis stores as a compact listpack.
A plain sorted set costs about 130 bytes per entry (skiplist and hash table);
chunks cost about 55, so that for 100,000 sessions with the default metadata
the indexes add 6% (anonymous) to 9% (logged in) to the sessions' own memory.
Entries with equal scores are never split across chunks, so the sessions of
one user always sit in one chunk.

Every write goes through a Lua script: the data, the metadata and the index
entries change in one round trip and atomically. A read (``load()``) is one
``HMGET``. Index entries of expired sessions are pruned a few at a time by
every save, and in batches by :meth:`SessionStore.clear_expired`
(``clearsessions``).

When Redis cannot be reached, loading serves an empty, anonymous session and
logs an error; the store then refuses to save (:class:`SessionStorageUnavailable`,
which ``SessionKitMiddleware`` answers with a 503 page), so a session that
could not be read is never overwritten.

The package keeps the layout in one place: :mod:`.keyspace` alone builds key
names, reads hash fields and runs the Lua scripts, which live in ``lua/``
(``lib.lua`` is shared by all of them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.sessions.backends.base import (
    VALID_KEY_CHARS,
    CreateError,
    SessionBase,
    UpdateError,
)
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from django.utils.crypto import get_random_string
from django.utils.functional import cached_property

from django_sessionkit.backends.base import (
    SessionKitStore,
    SessionStorageUnavailable,
    decoded_data,
    from_ms,
    to_ms,
    warn_unreadable,
)

try:
    from django_redis.exceptions import ConnectionInterrupted
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImproperlyConfigured(
        "django_sessionkit.backends.redis needs django-redis: "
        "pip install 'django-sessionkit[redis]'."
    ) from exc

from django_sessionkit.backends.redis.codec import storage_ids
from django_sessionkit.backends.redis.keyspace import Keyspace
from django_sessionkit.backends.redis.scripts import Save

__all__ = ["Keyspace", "SessionStore", "storage_ids"]

logger = logging.getLogger(__name__)

#: What "Redis cannot be reached" looks like from redis-py and django-redis.
UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, ConnectionInterrupted)
CREATE_ATTEMPTS = 100


class SessionStore(SessionKitStore, SessionBase):
    """Django's cache session store on django-redis, plus user, IP, user agent and activity."""

    def __init__(self, session_key: str | None = None) -> None:
        self._cache_alias: str = settings.SESSION_CACHE_ALIAS
        #: Set when a load could not reach Redis: this store must not write.
        self._unreadable = False
        #: Public id the loaded session is stored under (another secret's, after a rotation).
        self._stored_pid: str | None = None
        super().__init__(session_key)

    # -- plumbing --

    @cached_property
    def keyspace(self) -> Keyspace:
        return Keyspace.of(self._cache_alias)

    def serialize_data(self, data: dict[str, Any]) -> bytes:
        """Return *data* as stored: serialized by ``SESSION_SERIALIZER``, like the cache engine.

        Not signed: as with Django's cache engine, whoever can write to Redis
        can write sessions; unlike it, a JSON serializer never unpickles.
        """
        return bytes(self.serializer().dumps(data))

    def deserialize_data(self, raw: bytes | str) -> dict[str, Any]:
        """Return the session data of a stored value, ``{}`` when it cannot be read."""
        serializer = self.serializer()
        stored = raw if isinstance(raw, bytes) else raw.encode()
        return decoded_data(serializer.loads, stored, f"Redis (cache {self._cache_alias!r})")

    def _unavailable(
        self, action: str, exc: Exception, *, outcome_unknown: bool = False
    ) -> SessionStorageUnavailable:
        # The message never names the key: it may end up in a log or on a page.
        name = f"Redis (cache {self._cache_alias!r})"
        if isinstance(exc, ImproperlyConfigured):
            message = f"{name} cannot be used to {action} a session: {exc}"
        elif outcome_unknown:
            message = (
                f"{name} did not answer an attempt to {action} a session "
                f"({type(exc).__name__}): it may have been applied all the same."
            )
        else:
            message = f"{name} could not be reached to {action} a session ({type(exc).__name__})."
        return SessionStorageUnavailable(message, outcome_unknown=outcome_unknown)

    def _write(self, action: str, write: Callable[[Keyspace], int]) -> int:
        """Run *write* on the keyspace; a failure says whether Redis may have applied it."""
        try:
            keyspace = self.keyspace
            keyspace.reach()
        except (*UNAVAILABLE, ImproperlyConfigured) as exc:
            raise self._unavailable(action, exc) from exc
        try:
            return write(keyspace)
        except UNAVAILABLE as exc:
            raise self._unavailable(action, exc, outcome_unknown=True) from exc

    # -- SessionBase --

    def load(self) -> dict[str, Any]:
        if self.session_key is None:
            return {}
        try:
            rows = self.keyspace.load(storage_ids(self.session_key))
        except (*UNAVAILABLE, ImproperlyConfigured) as exc:
            logger.error(
                "%s Serving an empty session and refusing to save it.",
                self._unavailable("load", exc),
            )
            # Keep the key: the cookie must survive the outage, and a save must fail.
            self._unreadable = True
            return {}
        now = to_ms(timezone.now())
        for row in rows:
            pid, data, activity, expiry = row.pid, row.data, row.activity, row.expiry
            if row.state == "bad":
                warn_unreadable(logger, pid, "Session %s in Redis is not a hash.", pid)
                continue
            if row.state == "gone":
                continue
            try:
                if data is None or expiry is None:
                    raise ValueError("no data" if data is None else "no expiry")
                from_ms(expiry)  # in range
                loaded_activity = from_ms(activity)
            except ValueError as exc:
                warn_unreadable(logger, pid, "Session %s in Redis is unreadable: %s", pid, exc)
                continue
            if int(expiry) <= now:
                break  # expired by Django's clock, which may run ahead of Redis's TTL
            self._stored_pid = pid
            self.loaded_activity = loaded_activity
            return self.deserialize_data(data)
        self._session_key = None
        return {}

    async def aload(self) -> dict[str, Any]:
        return await sync_to_async(self.load, thread_sensitive=False)()

    def exists(self, session_key: str | None) -> bool:
        if not session_key:
            return False
        try:
            return self.keyspace.exists(storage_ids(session_key))
        except (*UNAVAILABLE, ImproperlyConfigured) as exc:
            raise self._unavailable("look up", exc) from exc

    async def aexists(self, session_key: str | None) -> bool:
        return await sync_to_async(self.exists, thread_sensitive=False)(session_key)

    def create(self) -> None:
        if self._unreadable:
            raise SessionStorageUnavailable("The session could not be read; it is not replaced.")
        for _ in range(CREATE_ATTEMPTS):
            # No exists() round trip first: the save script refuses a taken key.
            self._session_key = get_random_string(32, VALID_KEY_CHARS)
            try:
                self.save(must_create=True)
            except CreateError:
                continue
            self.modified = True
            return
        raise RuntimeError("Unable to create a new session key.")

    async def acreate(self) -> None:
        await sync_to_async(self.create, thread_sensitive=False)()

    def save(self, must_create: bool = False) -> None:
        if self.session_key is None:
            return self.create()
        if self._unreadable:
            raise SessionStorageUnavailable("The session could not be read; it is not overwritten.")
        data = self._get_session(no_load=must_create)  # type: ignore[attr-defined]
        now = timezone.now()
        pid = storage_ids(self.session_key)[0]
        copied = self.copied_metadata
        metadata = self.request_metadata or copied
        save = Save(
            pid=pid,
            session_key=self.session_key,
            data=self.serialize_data(data),
            now=to_ms(now),
            ttl=self.get_expiry_age(modification=now),
            expiry=to_ms(self.get_expiry_date(modification=now)),
            user_id=self.user_id_from(data),
            metadata=None if metadata is None else (metadata.ip, metadata.user_agent),
            moved_from="" if must_create or self._stored_pid in (None, pid) else self._stored_pid,
            created=None if copied is None else _ms(copied.created_at),
            activity=None if copied is None else _ms(copied.last_activity),
        )
        result = self._write("save", lambda keyspace: keyspace.save(save, create=must_create))
        if result == 0:
            raise CreateError
        if result == -1:
            raise UpdateError
        self._stored_pid = pid
        copied = self.copied_metadata
        self.loaded_activity = (copied and copied.last_activity) or now

    async def asave(self, must_create: bool = False) -> None:
        await sync_to_async(self.save, thread_sensitive=False)(must_create)

    def delete(self, session_key: str | None = None) -> None:
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
        # A failure raises: never pretend a logout worked, the session would outlive it.
        ids = storage_ids(session_key)
        self._write("delete", lambda keyspace: keyspace.delete(*ids))
        if session_key == self.session_key:
            self._stored_pid = None

    async def adelete(self, session_key: str | None = None) -> None:
        await sync_to_async(self.delete, thread_sensitive=False)(session_key)

    @classmethod
    def clear_expired(cls) -> None:
        """Prune the index entries of expired sessions; Redis expires the sessions itself."""
        for _ in cls.clear_expired_batches():
            pass

    @classmethod
    async def aclear_expired(cls) -> None:
        await sync_to_async(cls.clear_expired, thread_sensitive=False)()

    @classmethod
    def clear_expired_batches(cls, batch_size: int = 1000) -> Iterator[int]:
        """Prune expired sessions' index entries, *batch_size* per round trip, yielding counts."""
        keyspace = Keyspace.of(settings.SESSION_CACHE_ALIAS)
        return keyspace.indexes.prune(timezone.now(), batch_size)

    # -- SessionKitStore --

    def touch_activity(self, now: datetime) -> None:
        """Write ``last_activity``, one round trip; a failure only loses this mark."""
        if self.session_key is None or self._stored_pid is None:
            return
        try:
            pid = self._stored_pid
            self._write("record the activity of", lambda keyspace: keyspace.touch(pid, to_ms(now)))
        except SessionStorageUnavailable as exc:
            logger.warning("%s", exc)
            return
        self.loaded_activity = now


def _ms(moment: datetime | None) -> int | None:
    return None if moment is None else to_ms(moment)
