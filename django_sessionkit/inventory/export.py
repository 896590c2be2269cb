"""Read the raw sessions of an engine, for ``migratesessions``.

Unlike the rest of the inventory this module hands out session keys: copying
a session to another engine needs its key. Nothing here logs or formats a
key, and :class:`ExportedSession` keeps the key and the data out of its repr.

Every reader streams with bounded memory: a database table is read by keyset
pagination over its primary key (one short query per batch, no cursor held
open while the caller writes the batch elsewhere), a django-redis cache by
``SCAN`` with a large ``COUNT`` and pipelined ``GET``/``PTTL``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.base import VALID_KEY_CHARS, SessionBase
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.db import models, router
from django.utils import timezone

from django_sessionkit.backends.base import CopiedMetadata, warn_unreadable
from django_sessionkit.inventory import OUR_REDIS_ENGINE, extends, store_class_of
from django_sessionkit.inventory.base import InventoryUnavailable
from django_sessionkit.users import user_pk

logger = logging.getLogger(__name__)

#: Keys SCAN looks at per round trip: large, so that a keyspace of millions
#: takes thousands of round trips rather than millions.
SCAN_COUNT = 10_000
KEY_CHARS = frozenset(VALID_KEY_CHARS)

STOCK_DB = "django.contrib.sessions.backends.db"
STOCK_CACHE = "django.contrib.sessions.backends.cache"
STOCK_FILE = "django.contrib.sessions.backends.file"
SIGNED_COOKIES = "django.contrib.sessions.backends.signed_cookies"


@dataclass(frozen=True)
class ExportedSession:
    """One unexpired session as its engine stores it, with the metadata it recorded."""

    session_key: str = field(repr=False)
    data: dict[str, Any] = field(repr=False)
    expire_date: datetime
    #: IP, user agent, creation and last activity, from engines that record them.
    metadata: CopiedMetadata | None = None

    @property
    def user_id(self) -> str | None:
        """Return the id of the logged-in user, as ``_auth_user_id`` records it."""
        value = self.data.get(SESSION_KEY)
        return None if value is None else str(value)


def store_class(engine: str) -> type[SessionBase]:
    """Return the ``SessionStore`` class of *engine*; InventoryUnavailable if there is none."""
    try:
        return store_class_of(engine)
    except ImproperlyConfigured as error:
        # e.g. our redis engine without django-redis installed
        raise InventoryUnavailable(
            f"The session engine {engine!r} cannot be used: {error}"
        ) from None


def session_model(engine: str) -> type[models.Model] | None:
    """Return the model a database-backed *engine* stores sessions in, None for others."""
    store = store_class(engine)
    if not extends(store, STOCK_DB):
        return None
    model: type[models.Model] = store.get_model_class()  # type: ignore[attr-defined]
    return model


class Export:
    """The unexpired sessions of an engine, in lists of at most *batch_size* when iterated.

    Stored sessions that cannot be read (a corrupt Redis hash) are skipped and
    counted in :attr:`unreadable`.
    """

    def __init__(self, engine: str, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1.")
        self.engine = engine
        self.batch_size = batch_size
        self.unreadable = 0
        self._sessions = self._reader()

    def __iter__(self) -> Iterator[list[ExportedSession]]:
        return _batched(self._sessions, self.batch_size)

    def _reader(self) -> Iterator[ExportedSession]:
        """Return the stream of the engine's sessions; check that it can be read first."""
        engine = self.engine
        store = store_class(engine)
        if extends(store, SIGNED_COOKIES):
            raise InventoryUnavailable(
                f"The session engine {engine!r} stores each session in the browser's cookie; "
                f"the server keeps no copy of them, so there is nothing to read."
            )
        if extends(store, STOCK_DB):
            return _model_sessions(store, self.batch_size)
        if extends(store, STOCK_FILE):
            return _file_sessions(engine)
        if extends(store, OUR_REDIS_ENGINE):
            from django_sessionkit.backends.redis import Keyspace

            _redis_cache(engine)
            return _our_redis_stream(self, Keyspace(settings.SESSION_CACHE_ALIAS), store)
        if extends(store, STOCK_CACHE):
            return _cache_sessions(_redis_cache(engine), store)
        raise InventoryUnavailable(
            f"django_sessionkit does not know how to read the sessions of the engine {engine!r}."
        )


def iter_sessions(engine: str, *, batch_size: int) -> Export:
    """Return the unexpired sessions of *engine*, iterated in lists of at most *batch_size*.

    Raise :class:`InventoryUnavailable` (before yielding anything) when the
    engine's sessions cannot be listed: signed cookies, a cache other than
    django-redis, an engine this module does not know.
    """
    return Export(engine, batch_size)


def _batched(
    sessions: Iterable[ExportedSession], batch_size: int
) -> Iterator[list[ExportedSession]]:
    batch: list[ExportedSession] = []
    for session in sessions:
        batch.append(session)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _decoder(store: type[SessionBase]) -> Any:
    instance = store()

    def decode(session_data: str) -> dict[str, Any]:
        try:
            decoded = instance.decode(session_data)
        except Exception:
            # Django's decode() returns {} for tampered data; a custom
            # serializer may raise instead. The key stays out of the log.
            logger.warning("Undecodable session data; copying the session as empty")
            return {}
        return decoded if isinstance(decoded, dict) else {}

    return decode


# -- database engines ---------------------------------------------------------


def _model_sessions(store: type[SessionBase], page_size: int) -> Iterator[ExportedSession]:
    """Yield the unexpired rows of the store's table in primary key order.

    Keyset pagination: each page is one query that starts after the last key
    seen, through the primary key index, so memory is bounded by a page and no
    cursor stays open while the caller writes elsewhere (possibly on the same
    connection, possibly inside a transaction).
    """
    from django_sessionkit.inventory.model import has_metadata

    model = store.get_model_class()  # type: ignore[attr-defined]
    decode = _decoder(store)
    now = timezone.now()
    metadata = ("ip", "user_agent", "created_at", "last_activity") if has_metadata(model) else ()
    rows = (
        model._default_manager.using(router.db_for_read(model))
        .filter(expire_date__gt=now)
        .order_by("pk")
        .values_list("session_key", "session_data", "expire_date", *metadata)
    )
    last_key: str | None = None
    while True:
        page = rows if last_key is None else rows.filter(pk__gt=last_key)
        chunk = list(page[:page_size])
        for session_key, session_data, expire_date, *recorded in chunk:
            yield ExportedSession(
                session_key,
                decode(session_data),
                expire_date,
                CopiedMetadata(*recorded) if recorded else None,
            )
        if len(chunk) < page_size:
            return
        last_key = chunk[-1][0]


# -- stock file engine ----------------------------------------------------------


def _file_sessions(engine: str) -> Iterator[ExportedSession]:
    from django_sessionkit.inventory.file import FileInventory

    now = timezone.now()
    for entry in FileInventory(engine)._entries():
        if entry.expire_date > now:
            yield ExportedSession(entry.session_key, entry.data, entry.expire_date)


# -- caches on django-redis -------------------------------------------------------


def _redis_cache(engine: str) -> Any:
    """Return the django-redis cache *engine* keeps its sessions in."""
    from django_sessionkit.inventory.redis import django_redis_cache

    return django_redis_cache(settings.SESSION_CACHE_ALIAS, engine)


def _scan(redis: Any, pattern: str) -> Iterator[list[bytes]]:
    """Yield the keys matching *pattern*, one SCAN reply at a time."""
    cursor = 0
    while True:
        cursor, keys = redis.scan(cursor=cursor, match=pattern, count=SCAN_COUNT)
        if keys:
            yield keys
        if cursor == 0:
            return


def _cache_sessions(cache: Any, store: type[SessionBase]) -> Iterator[ExportedSession]:
    """Yield the sessions of the stock cache engine on django-redis.

    SCAN matches every key that starts with the engine's prefix, which also
    matches the stock cached_db engine's keys (its prefix extends the cache
    engine's); those fail the key check below, as they fail it in the engine.
    SCAN may return a key twice while Redis rehashes: the copy then finds the
    session already at the destination and skips it.
    """
    client = cache.client
    redis = client.get_client(write=False)
    prefix: str = store.cache_key_prefix  # type: ignore[attr-defined]
    pattern = client.make_pattern(prefix + "*")
    decoder = store()
    for raw_keys in _scan(redis, pattern):
        pipe = redis.pipeline(transaction=False)
        for raw_key in raw_keys:
            pipe.get(raw_key)
            pipe.pttl(raw_key)
        replies = pipe.execute()
        now = timezone.now()
        for index, raw_key in enumerate(raw_keys):
            value, pttl = replies[2 * index], replies[2 * index + 1]
            text = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
            session_key = client.reverse_key(text)[len(prefix) :]
            if value is None or pttl == -2 or not _valid_key(session_key):
                continue  # gone meanwhile, or not a session of this engine
            data = client.decode(value)
            if not isinstance(data, dict):
                continue
            if pttl == -1:
                # No TTL (set by hand): the session's own expiry policy applies.
                decoder._session_cache = data  # type: ignore[attr-defined]
                expire_date = decoder.get_expiry_date(modification=now)
            else:
                expire_date = now + timedelta(milliseconds=pttl)
            yield ExportedSession(session_key, data, expire_date)


def _valid_key(session_key: str) -> bool:
    # The engines only ever store keys they generated from VALID_KEY_CHARS.
    return len(session_key) >= 8 and KEY_CHARS.issuperset(session_key)


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def _our_redis_stream(
    export: Export, keyspace: Any, store: type[SessionBase]
) -> Iterator[ExportedSession]:
    """Yield the sessions of our redis engine: one hash per session, found by SCAN.

    Each hash holds the session key (``k``), the serialized data (``d``), the
    expiry (``e``) and the metadata. SCAN rather than a walk of the expiry
    index: the index's chunks split and merge while the site runs, and a walk
    by rank could then skip sessions, whereas SCAN returns every session that
    lives throughout. A hash that is not a readable session is counted in the
    export's ``unreadable`` and skipped.
    """
    from redis.exceptions import ResponseError

    from django_sessionkit.backends.redis import from_ms, text

    redis = keyspace.client(write=False)
    reader: Any = store()  # the engine stores its own (unsigned) serialization
    prefix = keyspace.session("")
    pattern = _glob_escape(prefix) + "*"
    for names in _scan(redis, pattern):
        pipe = redis.pipeline(transaction=False)
        for name in names:
            pipe.hmget(name, ("k", "d", "e", "ip", "ua", "c", "a"))
        replies = pipe.execute(raise_on_error=False)
        now = timezone.now()
        for name, reply in zip(names, replies, strict=True):
            pid = name.decode()[len(prefix) :]
            if not isinstance(reply, ResponseError) and all(value is None for value in reply):
                continue  # gone meanwhile
            try:
                if isinstance(reply, ResponseError):
                    raise ValueError("not a hash")
                session_key, session_data, expiry, ip, user_agent, created, activity = reply
                expire_date = from_ms(expiry)
                if session_key is None or session_data is None or expire_date is None:
                    raise ValueError("no key, data or expiry")
                recorded = CopiedMetadata(
                    text(ip), text(user_agent) or "", from_ms(created), from_ms(activity)
                )
            except ValueError as exc:
                export.unreadable += 1
                warn_unreadable(logger, pid, "Not copying the unreadable session %s: %s", pid, exc)
                continue
            if expire_date <= now:
                continue  # expired by Django's clock, before Redis's TTL
            yield ExportedSession(
                session_key.decode(), reader.deserialize_data(session_data), expire_date, recorded
            )


# -- what the destination already holds ------------------------------------------


def existing_keys(engine: str, session_keys: list[str]) -> set[str]:
    """Return which of *session_keys* *engine* already stores, expired or not.

    A database engine answers in one query; any other engine is asked key by
    key through its ``SessionStore.exists()``.
    """
    model = session_model(engine)
    if model is not None:
        manager = model._default_manager.using(router.db_for_write(model))
        return set(manager.filter(pk__in=session_keys).values_list("pk", flat=True))
    store = store_class(engine)()
    return {key for key in session_keys if store.exists(key)}


def missing_users(engine: str, sessions: Iterable[ExportedSession]) -> set[str]:
    """Return the user ids named by *sessions* that *engine* cannot point to.

    A database engine whose model has a ``user`` foreign key (sessionkit's)
    cannot store a session of a user who no longer exists; Django's engines
    never delete sessions when a user is deleted, so stock tables often hold
    such sessions. Other engines hold any user id: the result is empty.
    """
    model = session_model(engine)
    if model is None:
        return set()
    try:
        user_field = model._meta.get_field("user")
    except FieldDoesNotExist:
        return set()
    if not isinstance(user_field, models.ForeignKey):
        return set()
    target = user_field.target_field
    wanted: dict[Any, str] = {}
    for session in sessions:
        user_id = session.user_id
        if user_id is None:
            continue
        pk = user_pk(user_id, target)
        if pk is not None:  # the engine stores no user for an id the model cannot hold
            wanted[pk] = user_id
    if not wanted:
        return set()
    remote = user_field.remote_field.model
    found = set(
        remote._base_manager.using(router.db_for_write(model))
        .filter(**{f"{target.attname}__in": list(wanted)})
        .values_list(target.attname, flat=True)
    )
    return {user_id for value, user_id in wanted.items() if value not in found}
