"""Inventory of Django's ``cache`` session engine on django-redis.

That engine keeps no index: every operation SCANs the cache's session keys
with a large COUNT and pipelines the GETs and PTTLs, O(keys in the Redis
database). Redis expires those sessions itself, so there is nothing to clear;
activity is not recorded, so the activity filters match nothing.
"""

from __future__ import annotations

import fnmatch
import heapq
import logging
import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from importlib import import_module
from operator import itemgetter
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase
from django.core.cache import caches
from django.utils import timezone

from django_sessionkit.backends.base import decoded_data, is_session_key
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
    batched,
    decoded_info,
)
from django_sessionkit.public_id import public_id as public_id_of

logger = logging.getLogger(__name__)

STOCK_CACHE_ENGINE = "django.contrib.sessions.backends.cache"
PUBLIC_ID = re.compile(r"[0-9a-f]{32}")
#: Keys SCAN looks at per round trip: large, so that millions of keys take
#: thousands of round trips rather than millions.
SCAN_COUNT = 10_000
#: Random keys sampled to estimate how many of a database's keys are sessions.
ESTIMATE_SAMPLE = 200


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


def _scan(redis: Any, pattern: str) -> Iterator[list[bytes]]:
    """Yield the keys matching *pattern*, one SCAN reply at a time."""
    cursor = 0
    while True:
        cursor, keys = redis.scan(cursor=cursor, match=pattern, count=SCAN_COUNT)
        if keys:
            yield keys
        if cursor == 0:
            return


def sort_key(ordering: Ordering) -> Callable[[SessionInfo], float]:
    """Sort by the ordering's field; a session without that field sorts first."""
    field = ordering.lstrip("-")

    def key(info: SessionInfo) -> float:
        moment = getattr(info, field)
        return float("-inf") if moment is None else float(moment.timestamp())

    return key


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
        return round(int(size) * hits / len(keys))

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
        sessions.sort(key=sort_key("-expire_date"), reverse=True)
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
