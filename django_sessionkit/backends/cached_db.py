"""Cached database sessions that record user, IP, user agent and activity.

``SESSION_ENGINE = "django_sessionkit.backends.cached_db"``. Django's cached_db
logic is kept: the database is written first, then the cache (named by
``SESSION_CACHE_ALIAS``); a failure to write the cache is logged, not raised.
The metadata is written as by ``django_sessionkit.backends.db``.

On a cache hit Django never reads the row, so the cache entry carries the
session's ``last_activity`` (and IP and user agent) beside its data. Entries
written by Django's own cached_db engine (the bare session dict) are still
read, so once ``migratesessions`` has copied the rows, switching engines logs
nobody out. An entry that cannot be read is discarded and the row read instead.

A revocation is final. Deleting a session (logout, ``flush()``, ``cycle_key()``
and the inventory's revocations) deletes the row (D), then writes a
*tombstone*: a second key beside the entry, the *marker* (Tm), says that the
session was revoked, and the entry is replaced by a revoked mark (Tt); both in
one ``set_many()``, marker first (a cache whose ``set_many()`` is not atomic
writes them in that order), for ``tombstone_timeout()`` seconds. A read that
finds the tombstone reads the row. Why a request in flight cannot undo it:

* A read that missed the cache reads the row (R), then fills the entry with
  ``add()`` (F), which never replaces an entry. R found the row, so R < D < Tt.
  F < Tt: the tombstone replaces the fill. F > Tt: ``add()`` finds the
  tombstone and writes nothing.
* A save writes the row (W: an UPDATE, or the INSERT of a new login that a
  revoke-all reaches at once), sets the entry (S), then reads the marker (M)
  and, if it is there, sets the tombstone again. W found the row, so W < D.
  S < Tt: the tombstone replaces the entry. S > Tt: then M > Tm, so M finds
  the marker and puts the tombstone back.
* Recording activity updates the row, then deletes the entry (which may delete
  a tombstone, and lets a read fill the entry again) and reads the marker
  afterwards, as a save does: the tombstone is back after both. An update
  that finds no row means the session is gone: it writes the tombstone.

A session whose row is written again under a revoked key (a copy) is read
from the database, never the cache, until its tombstone expires. The cost is
one cache GET per write (save, activity), none per read. The guarantee holds
while the cache keeps each key for its timeout and a read sees every earlier
write: not through replicas that lag, nor across an eviction under memory
pressure or a ``clear()``. The timeout is far longer than any request takes
from its database read or write to its cache write.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from django.conf import settings
from django.contrib.sessions.backends.cached_db import SessionStore as CachedDBStore
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.db import router

from django_sessionkit.backends.base import (
    RequestMetadata,
    from_ms,
    in_settings_form,
    to_ms,
    warn_unreadable,
)
from django_sessionkit.backends.db import ModelMetadataMixin
from django_sessionkit.conf import activity_interval
from django_sessionkit.public_id import public_id

if TYPE_CHECKING:
    from django.contrib.sessions.base_session import AbstractBaseSession

logger = logging.getLogger(__name__)

FORMAT_KEY = "__sessionkit__"
FORMAT = 1
#: What the entry of a revoked session holds. A dict, so that Django's own
#: cached_db engine would read it as an empty session rather than fail.
TOMBSTONE = {FORMAT_KEY: "revoked"}
#: The marker of a revoked session is its cache key plus this suffix.
MARKER_SUFFIX = ".revoked"
#: The shortest lifetime of a tombstone, in seconds (see tombstone_timeout()).
TOMBSTONE_MIN_TIMEOUT = 300
ENTRY_FIELDS = frozenset((FORMAT_KEY, "data", "last_activity", "metadata"))


def tombstone_timeout() -> int:
    """Return how long a tombstone and its marker stay in the cache, in seconds."""
    return max(activity_interval(), TOMBSTONE_MIN_TIMEOUT)


class CacheEntry(NamedTuple):
    """A session as its cache entry holds it."""

    data: dict[str, Any]
    last_activity: datetime | None
    metadata: RequestMetadata | None


class ActivityCache:
    """The session cache in this engine's entry format; the one place that knows it.

    A live entry is ``{FORMAT_KEY: FORMAT, "data": ..., "last_activity": ...,
    "metadata": (ip, user_agent)}``, the activity in Unix milliseconds (entries
    cached before hold a datetime, of either ``USE_TZ`` form); a revoked one
    is ``TOMBSTONE``, with its marker beside it.
    """

    def __init__(self, cache: BaseCache) -> None:
        self.cache = cache

    def __repr__(self) -> str:
        return repr(self.cache)

    def holds(self, key: str) -> bool:
        """Whether *key* holds a session (a tombstone is none)."""
        value = self.cache.get(key)
        return value is not None and value != TOMBSTONE

    async def aholds(self, key: str) -> bool:
        value = await self.cache.aget(key)
        return value is not None and value != TOMBSTONE

    # -- the entry format -----------------------------------------------------

    @staticmethod
    def _pack(entry: CacheEntry) -> dict[str, Any]:
        activity, metadata = entry.last_activity, entry.metadata
        return {
            FORMAT_KEY: FORMAT,
            "data": entry.data,
            "last_activity": None if activity is None else to_ms(activity),
            "metadata": None if metadata is None else (metadata.ip, metadata.user_agent),
        }

    @staticmethod
    def _unpack(value: Any) -> CacheEntry | None:
        """Return the session in cache entry *value*; None for a miss or a tombstone.

        Raise ValueError (or OverflowError, for a time out of range), saying
        why, for an entry that cannot be read.
        """
        if value is None or value == TOMBSTONE:
            return None
        if not isinstance(value, dict):
            raise ValueError(f"the entry is a {type(value).__name__}, not a dict")
        if FORMAT_KEY not in value:
            return CacheEntry(value, None, None)  # a bare dict from Django's cached_db
        if value[FORMAT_KEY] != FORMAT or value.keys() != ENTRY_FIELDS:
            raise ValueError("the entry is not in this engine's format")
        data, activity, metadata = value["data"], value["last_activity"], value["metadata"]
        if not isinstance(data, dict):
            raise ValueError(f"its data is a {type(data).__name__}, not a dict")
        return CacheEntry(
            data, ActivityCache._activity(activity), ActivityCache._metadata(metadata)
        )

    @staticmethod
    def _activity(value: Any) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, datetime):
            return in_settings_form(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return from_ms(value)
        raise ValueError(f"its last activity is not a time: {type(value).__name__}")

    @staticmethod
    def _metadata(value: Any) -> RequestMetadata | None:
        if value is None:
            return None
        if isinstance(value, (tuple, list)) and len(value) == 2:
            ip, user_agent = value
            if (ip is None or isinstance(ip, str)) and isinstance(user_agent, str):
                return RequestMetadata(ip=ip, user_agent=user_agent)
        raise ValueError("its metadata is not an (IP, user agent) pair")

    def _readable(self, session_key: str, value: Any) -> tuple[CacheEntry | None, bool]:
        """Return the session in *value*, and whether the entry must be discarded."""
        try:
            return self._unpack(value), False
        except (ValueError, OverflowError) as error:
            entry = public_id(session_key)
            message = "Discarding the unreadable cache entry of session %s: %s"
            warn_unreadable(logger, entry, message, entry, error)
            return None, True

    # -- reads and writes -----------------------------------------------------

    def read(self, key: str, session_key: str) -> CacheEntry | None:
        """Return the session cached at *key*; None to read the row instead.

        None for a miss, a tombstone, or an entry that cannot be read, which
        is deleted (so that the fill after the database read can replace it).
        """
        entry, discard = self._readable(session_key, self.cache.get(key))
        if discard:
            self.cache.delete(key)
        return entry

    async def aread(self, key: str, session_key: str) -> CacheEntry | None:
        entry, discard = self._readable(session_key, await self.cache.aget(key))
        if discard:
            await self.cache.adelete(key)
        return entry

    def fill(self, key: str, entry: CacheEntry, timeout: int) -> None:
        """Cache *entry* read from the database, unless *key* holds anything (a tombstone)."""
        self.cache.add(key, self._pack(entry), timeout)

    async def afill(self, key: str, entry: CacheEntry, timeout: int) -> None:
        await self.cache.aadd(key, self._pack(entry), timeout)

    def write(self, key: str, entry: CacheEntry, timeout: int) -> None:
        """Cache *entry* just written to the database, keeping a tombstone written meanwhile."""
        self.cache.set(key, self._pack(entry), timeout)
        self._keep_revoked(key)

    async def awrite(self, key: str, entry: CacheEntry, timeout: int) -> None:
        await self.cache.aset(key, self._pack(entry), timeout)
        await self._akeep_revoked(key)

    def evict(self, key: str) -> None:
        """Delete the entry at *key*, keeping a tombstone written meanwhile."""
        self.cache.delete(key)
        self._keep_revoked(key)

    def _keep_revoked(self, key: str) -> None:
        if self.cache.get(key + MARKER_SUFFIX) is not None:
            self.cache.set(key, TOMBSTONE, tombstone_timeout())

    async def _akeep_revoked(self, key: str) -> None:
        if await self.cache.aget(key + MARKER_SUFFIX) is not None:
            await self.cache.aset(key, TOMBSTONE, tombstone_timeout())

    @staticmethod
    def _tombstones(keys: Iterable[str]) -> dict[str, Any]:
        keys = list(keys)
        # Markers first: see the module's docstring.
        return {key + MARKER_SUFFIX: True for key in keys} | dict.fromkeys(keys, TOMBSTONE)

    def revoke(self, keys: Iterable[str]) -> None:
        """Write the tombstones and markers of the revoked sessions cached at *keys*."""
        tombstones = self._tombstones(keys)
        if tombstones:
            self.cache.set_many(tombstones, tombstone_timeout())

    async def arevoke(self, keys: Iterable[str]) -> None:
        tombstones = self._tombstones(keys)
        if tombstones:
            await self.cache.aset_many(tombstones, tombstone_timeout())


class RevocableCachedDBStore(CachedDBStore):
    """Django's cached_db store, with the cache logic of this module in place of Django's.

    It sits below ``ModelMetadataMixin`` in :class:`SessionStore`'s bases, so
    that the mixin wraps the database write of ``save()``; it replaces
    Django's ``load()``, ``exists()``, ``save()`` and ``delete()`` (and their
    async twins), calling Django's db engine for the database.
    """

    _cache: Any  # Django's cache, wrapped in an ActivityCache
    # SessionKitStore's and ModelMetadataMixin's, which come first in SessionStore.
    loaded_activity: datetime | None = None
    _stored_metadata: RequestMetadata | None = None

    if TYPE_CHECKING:  # Django's, which its type stubs leave out

        def _get_session_from_db(self) -> AbstractBaseSession | None: ...
        async def _aget_session_from_db(self) -> AbstractBaseSession | None: ...
        async def _aget_session(self, no_load: bool = False) -> dict[str, Any]: ...
        @property
        def _session(self) -> dict[str, Any]: ...

    def __init__(self, session_key: str | None = None) -> None:
        super().__init__(session_key)
        self._cache = ActivityCache(self._cache)

    @classmethod
    def revoke_cached(cls, session_keys: Collection[str]) -> None:
        """Write the tombstones of *session_keys*, whose rows are deleted or about to be.

        A request in flight can then neither fill their entries again nor
        leave them live with a save (see the module's docstring).
        """
        cache = ActivityCache(caches[settings.SESSION_CACHE_ALIAS])
        cache.revoke(cls.cache_key_prefix + key for key in session_keys)

    def _entry(self, data: dict[str, Any]) -> CacheEntry:
        return CacheEntry(data, self.loaded_activity, self._stored_metadata)

    def _loaded(self, entry: CacheEntry) -> dict[str, Any]:
        self.loaded_activity = entry.last_activity
        if entry.metadata is not None:
            self._stored_metadata = entry.metadata
        return entry.data

    def load(self) -> dict[str, Any]:
        key = self.cache_key
        try:
            entry = self._cache.read(key, cast("str", self.session_key))  # made by cache_key
        except Exception:
            # Some backends (e.g. memcache) raise an exception on invalid cache
            # keys, and a cache may be down: read the row, as Django does.
            entry = None
        if entry is not None:
            return self._loaded(entry)
        row = self._get_session_from_db()
        if row is None:
            return {}
        data: dict[str, Any] = self.decode(row.session_data)
        try:
            self._cache.fill(key, self._entry(data), self.get_expiry_age(expiry=row.expire_date))
        except Exception:
            logger.exception("Error saving to cache (%s)", self._cache)
        return data

    async def aload(self) -> dict[str, Any]:
        key = await self.acache_key()
        try:
            entry = await self._cache.aread(key, cast("str", self.session_key))
        except Exception:
            entry = None
        if entry is not None:
            return self._loaded(entry)
        row = await self._aget_session_from_db()
        if row is None:
            return {}
        data: dict[str, Any] = self.decode(row.session_data)
        try:
            timeout = await self.aget_expiry_age(expiry=row.expire_date)
            await self._cache.afill(key, self._entry(data), timeout)
        except Exception:
            logger.exception("Error saving to cache (%s)", self._cache)
        return data

    def exists(self, session_key: str) -> bool:
        if session_key and self._cache.holds(self.cache_key_prefix + session_key):
            return True
        return bool(super(CachedDBStore, self).exists(session_key))

    async def aexists(self, session_key: str) -> bool:
        if session_key and await self._cache.aholds(self.cache_key_prefix + session_key):
            return True
        return bool(await super(CachedDBStore, self).aexists(session_key))

    def save(self, must_create: bool = False) -> None:
        if self.session_key is None:
            # Django's save() would create() and return here, and the cache
            # would then be written twice.
            self.create()
            return
        super(CachedDBStore, self).save(must_create)
        try:
            self._cache.write(self.cache_key, self._entry(self._session), self.get_expiry_age())
        except Exception:
            logger.exception("Error saving to cache (%s)", self._cache)

    async def asave(self, must_create: bool = False) -> None:
        if self.session_key is None:
            await self.acreate()
            return
        await super(CachedDBStore, self).asave(must_create)
        try:
            data = await self._aget_session()
            timeout = await self.aget_expiry_age()
            await self._cache.awrite(await self.acache_key(), self._entry(data), timeout)
        except Exception:
            logger.exception("Error saving to cache (%s)", self._cache)

    def delete(self, session_key: str | None = None) -> None:
        super(CachedDBStore, self).delete(session_key)
        if session_key is None:
            session_key = self.session_key
        if session_key is not None:
            self._cache.revoke([self.cache_key_prefix + session_key])

    async def adelete(self, session_key: str | None = None) -> None:
        await super(CachedDBStore, self).adelete(session_key)
        if session_key is None:
            session_key = self.session_key
        if session_key is not None:
            await self._cache.arevoke([self.cache_key_prefix + session_key])


class SessionStore(ModelMetadataMixin, RevocableCachedDBStore):
    """Django's cached_db session store, plus user, IP, user agent and activity."""

    def touch_activity(self, now: datetime) -> None:
        if self.session_key is None:
            return
        model = self.get_model_class()
        rows = model.objects.using(router.db_for_write(model)).filter(session_key=self.session_key)
        touched = rows.update(last_activity=now)
        self.loaded_activity = now
        # Evict rather than rewrite the entry: this request's copy of the data
        # may be older than what a concurrent request saved. The next read
        # refills the entry from the row, activity included. No row: the
        # session is gone, and its entry must not serve it any longer.
        try:
            if touched:
                self._cache.evict(self.cache_key)
            else:
                self._cache.revoke([self.cache_key])
        except Exception:
            logger.exception("Error evicting a session from cache (%s)", self._cache)
