"""Cached database sessions that record user, IP, user agent and activity.

``SESSION_ENGINE = "django_sessionkit.backends.cached_db"``. Django's cached_db
logic is kept as it is: the database is written first, then the cache (named
by ``SESSION_CACHE_ALIAS``); a failure to write the cache is logged, not
raised. The metadata is written as by ``django_sessionkit.backends.db``.

On a cache hit Django never reads the row, so the cache entry carries the
session's ``last_activity`` (and IP and user agent) beside its data. Entries
written by Django's own cached_db engine (the bare session dict) are still
read, so once ``migratesessions`` has copied the rows, switching engines logs
nobody out.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.contrib.sessions.backends.cached_db import SessionStore as CachedDBStore
from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache

from django_sessionkit.backends.base import RequestMetadata
from django_sessionkit.backends.db import ModelMetadataMixin

logger = logging.getLogger(__name__)

FORMAT_KEY = "__sessionkit__"
FORMAT = 1


class ActivityCache:
    """The session cache, as seen by one store: entries carry ``last_activity``.

    Django's cached_db store reads and writes the bare session dict; this
    wrapper stores ``{FORMAT_KEY: FORMAT, "data": ..., "last_activity": ...,
    "metadata": (ip, user_agent)}`` instead and hands the store back the dict,
    so Django's code runs unchanged. What it writes beside the data is what the
    store knows is stored (it learns that on every database read and write);
    what it reads tells the store the same on a cache hit.
    """

    def __init__(self, cache: BaseCache, store: SessionStore) -> None:
        self.cache = cache
        self.store = store

    def __repr__(self) -> str:
        return repr(self.cache)

    def _pack(self, data: dict[str, Any]) -> dict[str, Any]:
        metadata = self.store._stored_metadata
        return {
            FORMAT_KEY: FORMAT,
            "data": data,
            "last_activity": self.store.loaded_activity,
            "metadata": None if metadata is None else (metadata.ip, metadata.user_agent),
        }

    def _unpack(self, value: Any) -> Any:
        if not (isinstance(value, dict) and value.get(FORMAT_KEY) == FORMAT):
            return value  # a bare dict from Django's cached_db, or a miss
        self.store.loaded_activity = value["last_activity"]
        if value["metadata"] is not None:
            ip, user_agent = value["metadata"]
            self.store._stored_metadata = RequestMetadata(ip=ip, user_agent=user_agent)
        return value["data"]

    def get(self, key: str, default: Any = None) -> Any:
        return self._unpack(self.cache.get(key, default))

    async def aget(self, key: str, default: Any = None) -> Any:
        return self._unpack(await self.cache.aget(key, default))

    def set(self, key: str, value: dict[str, Any], timeout: Any = DEFAULT_TIMEOUT) -> None:
        self.cache.set(key, self._pack(value), timeout)

    async def aset(self, key: str, value: dict[str, Any], timeout: Any = DEFAULT_TIMEOUT) -> None:
        await self.cache.aset(key, self._pack(value), timeout)

    def delete(self, key: str) -> bool:
        return self.cache.delete(key)

    async def adelete(self, key: str) -> bool:
        return await self.cache.adelete(key)

    def __contains__(self, key: str) -> bool:
        return key in self.cache


class SessionStore(ModelMetadataMixin, CachedDBStore):
    """Django's cached_db session store, plus user, IP, user agent and activity."""

    _cache: Any  # Django's cache, wrapped in an ActivityCache

    def __init__(self, session_key: str | None = None) -> None:
        super().__init__(session_key)
        self._cache = ActivityCache(self._cache, self)

    def touch_activity(self, now: datetime) -> None:
        super().touch_activity(now)
        if self.session_key is None:
            return
        # Evict rather than rewrite the entry: this request's copy of the data
        # may be older than what a concurrent request saved, or the session
        # may have been flushed meanwhile, and rewriting would bring that back.
        # The next read refills the entry from the row, activity included.
        try:
            self._cache.delete(self.cache_key)
        except Exception:
            logger.exception("Error evicting a session from cache (%s)", self._cache)

    async def atouch_activity(self, now: datetime) -> None:
        await super().atouch_activity(now)
        if self.session_key is None:
            return
        try:
            await self._cache.adelete(await self.acache_key())
        except Exception:
            logger.exception("Error evicting a session from cache (%s)", self._cache)
