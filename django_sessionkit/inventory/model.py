"""Inventory of the database engines on a model that records sessionkit's metadata.

With sessionkit's model (or any session model with the same metadata fields)
every lookup is one indexed query and listing never decodes session data.
A model without them (Django's ``django_session``, a custom
``AbstractBaseSession``) is read by ``stock_model.StockModelInventory``; both
delete in batches through ``model_batches``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from functools import partial
from importlib import import_module
from typing import Any, cast

from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase
from django.contrib.sessions.backends.cached_db import SessionStore as CachedDBStore
from django.core.cache import caches
from django.core.exceptions import ValidationError
from django.core.validators import validate_ipv46_address
from django.db import connections, router
from django.db.models import Count as CountOf
from django.db.models import Model, Q, QuerySet
from django.utils import timezone
from django.utils.functional import cached_property

from django_sessionkit.backends.base import CopiedMetadata, decoded_data
from django_sessionkit.backends.cached_db import RevocableCachedDBStore
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
from django_sessionkit.inventory.model_batches import (
    PAGE_RANGES,
    PageRanges,
    delete_batches,
    estimated_rows,
    planned_rows,
    sqlite_pause,
)
from django_sessionkit.users import user_pk

logger = logging.getLogger(__name__)

METADATA_FIELDS = ("public_id", "user", "ip", "user_agent", "created_at", "last_activity")
#: The columns a copy of a session carries to another engine (CopiedMetadata's fields).
METADATA_COPIED = ("ip", "user_agent", "created_at", "last_activity")
#: The columns a listed session is made of, named as SessionInfo's fields; never
#: the key, never the data.
INFO_FIELDS = (
    "public_id",
    "user_id",
    "ip",
    "user_agent",
    "created_at",
    "last_activity",
    "expire_date",
)


def has_metadata(model: type[Model]) -> bool:
    """Whether *model* records the metadata of sessionkit's ``Session``."""
    names = {f.name for f in model._meta.get_fields()}
    return all(name in names for name in METADATA_FIELDS)


def status_q(status: Status, now: datetime) -> Q:
    """Return the condition on ``expire_date`` that *status* stands for."""
    if status == "active":
        return Q(expire_date__gt=now)
    if status == "expired":
        return Q(expire_date__lte=now)
    if status == "all":
        return Q()
    raise ValueError(f"Unknown status {status!r}; use 'all', 'active' or 'expired'.")


def valid_ip(ip: str) -> bool:
    """Whether *ip* is an IPv4 or IPv6 address."""
    try:
        validate_ipv46_address(ip)
    except ValidationError:
        return False
    return True


class CachedCopies:
    """The copies of sessions that a cached_db engine keeps in its cache beside the rows.

    Whatever deletes rows evicts their copies, or the cache would go on
    serving the deleted sessions.
    """

    def __init__(self, store_class: type[SessionBase]) -> None:
        self.store_class = store_class
        # Ours evicts a revoked session with a tombstone that requests in flight respect.
        self.tombstones = issubclass(store_class, RevocableCachedDBStore)

    def evict(self, session_keys: Iterable[str], *, strict: bool = True) -> None:
        """Drop the cached copies of *session_keys* so that cached_db cannot serve them.

        When *strict* (revoked sessions) sessionkit's cached_db gets tombstones,
        which a request in flight cannot undo, and a failure raises. Otherwise
        (expired sessions, which the cache drops at their own expiry anyway)
        the entries are deleted and a failure is logged.
        """
        keys = list(session_keys)
        if not keys:
            return
        try:
            self.drop(keys, revoked=strict)
        except Exception:
            if not strict:
                logger.warning(
                    "Could not evict %d expired session(s) from the cache %r; they expire "
                    "there on their own",
                    len(keys),
                    settings.SESSION_CACHE_ALIAS,
                    exc_info=True,
                )
                return
            # The rows are gone but cached_db would still serve these sessions from
            # the cache until they expire there: the caller must hear of it.
            logger.exception(
                "Revoked %d session(s) in the database but could not evict them from the cache %r",
                len(keys),
                settings.SESSION_CACHE_ALIAS,
            )
            raise

    def drop(self, session_keys: list[str], *, revoked: bool) -> None:
        """Tombstone (*revoked*, on sessionkit's cached_db) or delete these cache entries."""
        if revoked and self.tombstones:
            cast("type[RevocableCachedDBStore]", self.store_class).revoke_cached(session_keys)
            return
        prefix = self.store_class.cache_key_prefix  # type: ignore[attr-defined]
        caches[settings.SESSION_CACHE_ALIAS].delete_many([prefix + key for key in session_keys])

    def user_deleted(self, session_keys: list[str]) -> None:
        """Tombstone the copies of a deleted user's sessions, *session_keys*.

        Served from the cache after their rows are gone, these sessions would
        fail every save. A cache that cannot be written is logged and does not
        stop the deletion: the sessions can log nobody in, their user is gone.
        """
        if not session_keys:
            return
        try:
            self.drop(session_keys, revoked=True)
        except Exception:
            logger.exception(
                "Could not evict the %d cached session(s) of a deleted user from the cache %r",
                len(session_keys),
                settings.SESSION_CACHE_ALIAS,
            )


class ModelInventory(SessionInventory):
    """Read and revoke the sessions of a database-backed engine through their metadata.

    Clearing sends no delete signals (raw ``DELETE`` statements, see
    ``model_batches``), except on a custom session model that other models
    point to; ``revoke`` and ``revoke_user`` delete through the ORM, so
    receivers hear of revoked sessions. The tuning below is read from the
    instance: one inventory can be given its own.
    """

    records_metadata = True
    records_activity = True
    #: The columns a copy of a session carries to another engine.
    copied_fields: tuple[str, ...] = METADATA_COPIED
    #: Rows fetched, or keys deleted, per round trip when going through many.
    chunk_size = 2000
    #: Estimated counts below this many rows are made exact: "about 1" for none would mislead.
    exact_below = 50_000
    #: When PostgreSQL deletes a range of table pages at a time.
    page_ranges: PageRanges = PAGE_RANGES

    def __init__(self, engine: str) -> None:
        self.engine = engine
        self.store_class: type[SessionBase] = import_module(engine).SessionStore
        self.model: type[Model] = self.store_class.get_model_class()
        if self.records_metadata and not has_metadata(self.model):
            raise TypeError(
                f"{self.model._meta.label} does not record sessionkit's metadata; "
                f"its inventory is StockModelInventory."
            )
        # cached_db keeps a copy of each session in the cache: deleting must evict it.
        self.cached = issubclass(self.store_class, CachedDBStore)
        self.copies = CachedCopies(self.store_class) if self.cached else None

    # -- helpers ------------------------------------------------------------

    @property
    def _objects(self) -> QuerySet[Any]:
        return self.model._default_manager.using(router.db_for_read(self.model))

    @property
    def _write_db(self) -> str:
        return router.db_for_write(self.model)

    @cached_property
    def _decoder(self) -> SessionBase:
        return self.store_class()

    def _decode(self, session_data: str) -> dict[str, Any]:
        return decoded_data(self._decoder.decode, session_data, self.model._meta.db_table)

    def _user_pk(self, user_id: str) -> Any:
        """Return *user_id* as a value of the session model's user key, None if it cannot be one."""
        field = self.model._meta.get_field("user").target_field  # type: ignore[union-attr]
        return user_pk(user_id, field)

    def user_deleted(self, user_id: str) -> None:
        """Tombstone the cached copies of *user_id*'s sessions, whose rows the deletion cascades."""
        if self.copies is None:
            return
        queryset = self._filtered(Filters("active", frozenset((user_id,))))
        if queryset is not None:
            self.copies.user_deleted(list(queryset.values_list("session_key", flat=True)))

    def _delete_keys(self, session_keys: list[str]) -> int:
        """Delete the sessions *session_keys*, evict their cached copies, return the count."""
        if not session_keys:
            return 0
        deleted = 0
        for start in range(0, len(session_keys), self.chunk_size):
            chunk = session_keys[start : start + self.chunk_size]
            _, per_model = (
                self.model._default_manager.using(self._write_db).filter(pk__in=chunk).delete()
            )
            deleted += per_model.get(self.model._meta.label, 0)
            if self.copies is not None:
                self.copies.evict(chunk)
        return deleted

    # -- SessionInventory -----------------------------------------------------

    def _filtered(self, filters: Filters) -> QuerySet[Any] | None:
        """Return the metadata query for the filters, or None when nothing can match."""
        queryset = self._objects.filter(status_q(filters.status, timezone.now()))
        if filters.users is not None:
            # No session can point to a user the model cannot hold.
            pks = [pk for pk in map(self._user_pk, filters.users) if pk is not None]
            if not pks:
                return None
            queryset = queryset.filter(user_id__in=pks)
        if filters.authenticated is not None:
            queryset = queryset.filter(user__isnull=not filters.authenticated)
        if filters.ip is not None:
            # inet columns (PostgreSQL) reject malformed addresses with an error.
            if not valid_ip(filters.ip):
                return None
            queryset = queryset.filter(ip=filters.ip)
        if filters.active_after is not None:
            queryset = queryset.filter(last_activity__gte=filters.active_after)
        if filters.active_before is not None:
            queryset = queryset.filter(last_activity__lt=filters.active_before)
        return queryset

    def _count(self, filters: Filters, *, estimate: bool) -> Count:
        """Count sessions; *estimate* reads PostgreSQL's statistics when nothing is filtered."""
        if estimate and filters.unfiltered:
            estimated = self._estimate()
            if estimated is not None:
                return Count(estimated, exact=False)
        filtered = self._filtered(filters)
        return Count(0 if filtered is None else filtered.count())

    def totals(self, *, estimate: bool = False) -> tuple[Count, Count]:
        """Return every session's count and the expired ones'; with *estimate*,
        on PostgreSQL, both may come from statistics.

        The table's size comes from ``pg_class``; on a table of
        :attr:`exact_below` rows or more, the expired share from the planner's
        estimate for the condition (the column's histogram: a millisecond,
        where counting half a million rows takes a hundred).
        """
        if not estimate:
            return super().totals()
        everything = self.count(estimate=True)
        expired_q = self._objects.filter(status_q("expired", timezone.now()))
        if not everything.exact and everything.value >= self.exact_below:
            planned = planned_rows(expired_q)
            if planned >= self.exact_below:
                return everything, Count(min(planned, everything.value), exact=False)
        return everything, Count(expired_q.count())

    def _estimate(self) -> int | None:
        """Return PostgreSQL's row estimate for the table, None where there is none."""
        return estimated_rows(self.model)

    def _page(
        self, filters: Filters, *, offset: int, limit: int, ordering: Ordering
    ) -> list[SessionInfo]:
        """Return one page of sessions, reading the page's keys first when deep."""
        queryset = self._filtered(filters)
        if queryset is None:
            return []
        # The key breaks ties so that pages neither skip nor repeat a session,
        # in the same direction, so that one (column, key) index serves both.
        order = (ordering, "-pk" if ordering.startswith("-") else "pk")
        if offset:
            # A deep OFFSET over whole rows reads every skipped row; walking the
            # index for the page's keys first reads only the index.
            keys = queryset.order_by(*order).values_list("pk", flat=True)[offset : offset + limit]
            # One query where the database takes a sliced subquery (SQLite, PostgreSQL).
            if not connections[queryset.db].features.allow_sliced_subqueries_with_in:
                keys = list(keys)  # type: ignore[assignment]
            queryset = self._objects.filter(pk__in=keys)
        rows = queryset.order_by(*order).values_list(*INFO_FIELDS)[:limit]
        return [self._info(row) for row in rows]

    def _info(self, row: tuple[Any, ...]) -> SessionInfo:
        """Return a row of ``INFO_FIELDS`` as a SessionInfo whose data is read on first use."""
        fields = dict(zip(INFO_FIELDS, row, strict=True))
        user_id = fields.pop("user_id")
        return SessionInfo(
            **fields,
            user_id=None if user_id is None else str(user_id),
            _load=self._loader(fields["public_id"]),
        )

    def _loader(self, public_id: str) -> Callable[[], dict[str, Any]]:
        """Return a function that fetches and decodes the data of *public_id* when called."""

        def load() -> dict[str, Any]:
            rows = self._objects.filter(public_id=public_id).values_list("session_data", flat=True)
            session_data = rows.first()
            return {} if session_data is None else self._decode(session_data)

        return load

    def get(self, public_id: str) -> SessionInfo | None:
        """Return the session with *public_id*, expired or not."""
        row = self._objects.filter(public_id=public_id).values_list(*INFO_FIELDS).first()
        return None if row is None else self._info(row)

    def for_user(self, user_id: str) -> list[SessionInfo]:
        """Return the unexpired sessions of *user_id*, newest activity first."""
        queryset = self._filtered(Filters("active", frozenset((user_id,))))
        if queryset is None:
            return []
        rows = queryset.order_by("-last_activity", "pk").values_list(*INFO_FIELDS)
        return [self._info(row) for row in rows]

    def revoke(self, public_id: str) -> bool:
        """Delete the session with *public_id* (and its cached copy); return whether it existed."""
        matches = self._objects.filter(public_id=public_id).values_list("session_key", flat=True)
        return self._delete_keys(list(matches)) > 0

    def revoke_user(self, user_id: str, *, keep: str | None = None) -> int:
        """Delete the unexpired sessions of *user_id* except *keep*; return how many."""
        queryset = self._filtered(Filters("active", frozenset((user_id,))))
        if queryset is None:
            return 0
        if keep is not None:
            queryset = queryset.exclude(public_id=keep)
        return self._delete_keys(list(queryset.values_list("session_key", flat=True)))

    def stats(self) -> Stats:
        """Return the totals: a few queries on the ``expire_date`` index, one GROUP BY user."""
        now = timezone.now()
        sessions = self._objects.count()
        expired_rows = self._objects.filter(expire_date__lte=now)
        expired = expired_rows.count()
        oldest_expired = (
            expired_rows.order_by("expire_date").values_list("expire_date", flat=True).first()
        )
        return Stats(
            sessions=sessions,
            active=sessions - expired,
            expired=expired,
            oldest_expired=oldest_expired,
            busiest_user=self._busiest_user(self._objects.filter(expire_date__gt=now)),
        )

    def _busiest_user(self, live: QuerySet[Any]) -> tuple[str, int] | None:
        """Return the user with the most *live* sessions (the smallest id among equals), and how
        many."""
        top = (
            live.filter(user__isnull=False)
            .values("user")
            .annotate(sessions=CountOf("pk"))
            .order_by("-sessions", "user")
            .values_list("user", "sessions")
            .first()
        )
        return None if top is None else (str(top[0]), top[1])

    def export(self, *, batch_size: int = 1000) -> Iterator[list[ExportedSession]]:
        """Yield the unexpired rows in primary key order, in lists of *batch_size*.

        Keyset pagination: each batch is one query that starts after the last
        key seen, through the primary key index, so memory is bounded by a batch
        and no cursor stays open while the caller writes elsewhere (possibly on
        the same connection, possibly inside a transaction).
        """
        rows = (
            self._objects.filter(expire_date__gt=timezone.now())
            .order_by("pk")
            .values_list("session_key", "session_data", "expire_date", *self.copied_fields)
        )

        def sessions() -> Iterator[ExportedSession]:
            last_key: str | None = None
            while True:
                page = rows if last_key is None else rows.filter(pk__gt=last_key)
                chunk = list(page[:batch_size])
                for session_key, session_data, expire_date, *recorded in chunk:
                    copied = CopiedMetadata(*recorded) if recorded else None
                    data = self._decode(session_data)
                    yield ExportedSession(session_key, data, expire_date, copied)
                if len(chunk) < batch_size:
                    return
                last_key = chunk[-1][0]

        return batched(sessions(), batch_size)

    def clear_expired(self, *, batch_size: int | BatchSizer = 1000) -> Iterator[int]:
        """Delete sessions that expired before now, oldest first, a batch at a time.

        Each batch is one short transaction that checks the expiry again (see
        ``model_batches``). With cached_db the batch's cache entries are
        evicted after the commit; a cache that cannot be reached is only
        logged, since those entries expire with the sessions anyway.
        """
        sizer = BatchSizer.of(batch_size)
        return self._delete_batches("expire_date", timezone.now(), sizer, strict=False)

    def clear_inactive(
        self, *, before: datetime, batch_size: int | BatchSizer = 1000
    ) -> Iterator[int]:
        """Delete sessions last active before *before*, expired or not, a batch at a time.

        Batches as :meth:`clear_expired`, through the ``last_activity`` index;
        a session active again meanwhile is kept. With cached_db, failing to
        evict a batch's cache entries raises: they would keep the deleted,
        unexpired sessions alive.
        """
        sizer = BatchSizer.of(batch_size)
        return self._delete_batches("last_activity", before, sizer, strict=True)

    def pause_after(self, seconds: float) -> float:
        """On SQLite, half the batch's time, from 25 to 100 ms; elsewhere none."""
        return sqlite_pause(self._write_db, seconds)

    def _delete_batches(
        self, field: str, before: datetime, sizer: BatchSizer, *, strict: bool
    ) -> Iterator[int]:
        """Delete the rows whose *field* is before *before*; evict as *strict* says."""
        evict = None if self.copies is None else partial(self.copies.evict, strict=strict)
        return delete_batches(
            self.model, field, before, sizer, evict=evict, page_ranges=self.page_ranges
        )
