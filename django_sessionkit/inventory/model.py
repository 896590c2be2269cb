"""Inventory of the database engines: stock ``db``/``cached_db`` and ours.

With sessionkit's model (or any session model with the same metadata fields)
every lookup is one indexed query and listing never decodes session data.
On a model without metadata ("stock mode": Django's ``django_session`` or a
custom ``AbstractBaseSession``) the user is only known from the decoded
``_auth_user_id``, so per-user lookups stream through the table, decoding
each unexpired session, in chunks that keep memory bounded.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from importlib import import_module
from itertools import islice
from operator import itemgetter
from typing import Any, cast

from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.base import SessionBase
from django.contrib.sessions.backends.cached_db import SessionStore as CachedDBStore
from django.core.cache import caches
from django.core.exceptions import ValidationError
from django.core.validators import validate_ipv46_address
from django.db import connections, router, transaction
from django.db.models import Count as CountOf
from django.db.models import Field, Model, Q, QuerySet
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
    decoded_info,
)
from django_sessionkit.public_id import public_id as public_id_of
from django_sessionkit.users import user_pk

logger = logging.getLogger(__name__)

METADATA_FIELDS = ("public_id", "user", "ip", "user_agent", "created_at", "last_activity")
#: The columns a copy of a session carries to another engine (CopiedMetadata's fields).
METADATA_COPIED = ("ip", "user_agent", "created_at", "last_activity")
#: Rows fetched per round trip when streaming through the table.
CHUNK_SIZE = 2000
#: Estimated counts (``count(estimate=True)``) below this many rows are made
#: exact: counting them is cheap, and "about 1" for none would mislead.
EXACT_BELOW = 50_000
#: PostgreSQL deletes in ranges of pages rather than through the index when
#: at least this share of the table is to go, on a table this many pages large.
PAGE_RANGE_SHARE = 0.1
PAGE_RANGE_MIN_PAGES = 1000
#: The share of a batch's size a range of pages is sized to hold, so that
#: few ranges hold more than the batch may delete (those are rolled back).
PAGE_RANGE_FILL = 0.8
#: Bounds of the pause after a batch on SQLite (seconds): half the batch's time.
SQLITE_PAUSE = (0.025, 0.1)
#: The columns a listed session is made of; never the key, never the data.
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


class ModelInventory(SessionInventory):
    """Read and revoke the sessions of a database-backed engine.

    ``clear_expired`` deletes with one raw ``DELETE`` per batch of keys:
    ``pre_delete``/``post_delete`` receivers of the session model are not
    called for expired sessions. (Django's ``clearsessions`` runs
    ``QuerySet.delete()``, which loads every expired row into memory as soon
    as any such receiver is connected.) The exception is a custom session
    model that other models point to: its batches go through the ORM so that
    ``on_delete`` applies, and receivers are then called. ``revoke`` and
    ``revoke_user`` always delete through the ORM, so receivers hear of
    revoked sessions. ``clear_inactive`` deletes in the same batches.

    Without metadata no activity is known: the ``active_after`` /
    ``active_before`` filters match nothing and ``clear_inactive`` raises
    :class:`~django_sessionkit.inventory.base.InventoryUnavailable`.
    """

    def __init__(self, engine: str) -> None:
        self.engine = engine
        self.store_class: type[SessionBase] = import_module(engine).SessionStore
        self.model: type[Model] = self.store_class.get_model_class()
        self.records_metadata = self.records_activity = has_metadata(self.model)
        # cached_db keeps a copy of each session in the cache: revoking must evict it.
        self.cached = issubclass(self.store_class, CachedDBStore)
        # Ours evicts a revoked session with a tombstone that requests in flight respect.
        self.tombstones = issubclass(self.store_class, RevocableCachedDBStore)

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

    @staticmethod
    def _status_q(status: Status, now: datetime) -> Q:
        if status == "active":
            return Q(expire_date__gt=now)
        if status == "expired":
            return Q(expire_date__lte=now)
        if status == "all":
            return Q()
        raise ValueError(f"Unknown status {status!r}; use 'all', 'active' or 'expired'.")

    def _user_pk(self, user_id: str) -> Any:
        """Return *user_id* as a value of the session model's user key, None if it cannot be one."""
        field = self.model._meta.get_field("user").target_field  # type: ignore[union-attr]
        return user_pk(user_id, field)

    @staticmethod
    def _valid_ip(ip: str) -> bool:
        try:
            validate_ipv46_address(ip)
        except ValidationError:
            return False
        return True

    def _evict(self, session_keys: Iterable[str], *, strict: bool = True) -> None:
        """Drop the cached copies of *session_keys* so that cached_db cannot serve them.

        When *strict* (revoked sessions) sessionkit's cached_db gets tombstones,
        which a request in flight cannot undo, and a failure raises. Otherwise
        (expired sessions, which the cache drops at their own expiry anyway)
        the entries are deleted and a failure is logged.
        """
        if not self.cached:
            return
        keys = list(session_keys)
        if not keys:
            return
        try:
            self._drop_cached(keys, revoked=strict)
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

    def _drop_cached(self, session_keys: list[str], *, revoked: bool) -> None:
        """Tombstone (*revoked*, on sessionkit's cached_db) or delete these cache entries."""
        if revoked and self.tombstones:
            cast("type[RevocableCachedDBStore]", self.store_class).revoke_cached(session_keys)
            return
        prefix = self.store_class.cache_key_prefix  # type: ignore[attr-defined]
        caches[settings.SESSION_CACHE_ALIAS].delete_many([prefix + key for key in session_keys])

    def user_deleted(self, user_id: str) -> None:
        """Tombstone the cached copies of *user_id*'s sessions, whose rows the deletion cascades.

        Served from the cache after their rows are gone, these sessions would
        fail every save. A cache that cannot be written is logged and does not
        stop the deletion: the sessions can log nobody in, their user is gone.
        """
        if not (self.cached and self.records_metadata):
            return  # nothing cached, or rows that name no user and stay
        queryset = self._filtered(Filters("active", frozenset((user_id,))))
        keys = [] if queryset is None else list(queryset.values_list("session_key", flat=True))
        if not keys:
            return
        try:
            self._drop_cached(keys, revoked=True)
        except Exception:
            logger.exception(
                "Could not evict the %d cached session(s) of a deleted user from the cache %r",
                len(keys),
                settings.SESSION_CACHE_ALIAS,
            )

    def _delete_keys(self, session_keys: list[str]) -> int:
        """Delete the sessions *session_keys*, evict their cached copies, return the count."""
        if not session_keys:
            return 0
        deleted = 0
        for start in range(0, len(session_keys), CHUNK_SIZE):
            chunk = session_keys[start : start + CHUNK_SIZE]
            _, per_model = (
                self.model._default_manager.using(self._write_db).filter(pk__in=chunk).delete()
            )
            deleted += per_model.get(self.model._meta.label, 0)
            self._evict(chunk)
        return deleted

    # -- stock mode: the user is in the session data -------------------------

    @staticmethod
    def _rows(queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.values_list("session_key", "session_data", "expire_date")

    def _stream(self, rows: QuerySet[Any]) -> Iterator[tuple[str, dict[str, Any], datetime]]:
        """Decode *rows* of ``_rows()``, fetching CHUNK_SIZE rows per round trip."""
        for session_key, session_data, expire_date in rows.iterator(chunk_size=CHUNK_SIZE):
            yield session_key, self._decode(session_data), expire_date

    # -- SessionInventory -----------------------------------------------------

    def _filtered(self, filters: Filters) -> QuerySet[Any] | None:
        """Return the metadata query for the filters, or None when nothing can match."""
        queryset = self._objects.filter(self._status_q(filters.status, timezone.now()))
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
            if not self._valid_ip(filters.ip):
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
        if not self.records_metadata:
            queryset = self._objects.filter(self._status_q(filters.status, timezone.now()))
            if filters.users is None and filters.authenticated is None:
                return Count(queryset.count())
            now = timezone.now()
            stream = self._stream(self._rows(queryset))
            return Count(sum(1 for row in stream if filters.matches(decoded_info(*row), now)))
        filtered = self._filtered(filters)
        return Count(0 if filtered is None else filtered.count())

    def totals(self, *, estimate: bool = False) -> tuple[Count, Count]:
        """Return every session's count and the expired ones'; with *estimate*,
        on PostgreSQL, both may come from statistics.

        The table's size comes from ``pg_class``; the expired share, when
        the table holds ``EXACT_BELOW`` rows or more, from the planner's row
        estimate for the condition (it reads the column's histogram: a
        millisecond, where counting half a million rows takes a hundred).
        A small expired count is counted exactly: "about 1" for none would
        mislead.
        """
        if not estimate:
            return super().totals()
        everything = self.count(estimate=True)
        expired_q = self._objects.filter(self._status_q("expired", timezone.now()))
        if not everything.exact and everything.value >= EXACT_BELOW:
            planned = self._planned_rows(expired_q)
            if planned >= EXACT_BELOW:
                return everything, Count(min(planned, everything.value), exact=False)
        return everything, Count(expired_q.count())

    @staticmethod
    def _planned_rows(queryset: QuerySet[Any]) -> int:
        """Return PostgreSQL's planner estimate of the rows *queryset* selects."""
        plan = json.loads(queryset.explain(format="json"))
        return int(plan[0]["Plan"]["Plan Rows"])

    def _estimate(self) -> int | None:
        """Return PostgreSQL's row estimate for the table, None where there is none."""
        connection = connections[router.db_for_read(self.model)]
        if connection.vendor != "postgresql":
            return None
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)",
                [connection.ops.quote_name(self.model._meta.db_table)],
            )
            row = cursor.fetchone()
        # reltuples is -1 (PostgreSQL 14+) or 0 until the table is first analyzed.
        if row is None or row[0] is None or row[0] <= 0:
            return None
        return int(row[0])

    def _page(
        self, filters: Filters, *, offset: int, limit: int, ordering: Ordering
    ) -> list[SessionInfo]:
        """Return one page of sessions.

        Without metadata there is no ``last_activity``: ordering by it orders
        by ``expire_date``, which a save moves forward just as activity does.
        """
        if not self.records_metadata:
            return self._stock_page(filters, offset, limit, ordering)
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
        return [self._info(*row) for row in rows]

    def _stock_page(
        self, filters: Filters, offset: int, limit: int, ordering: Ordering
    ) -> list[SessionInfo]:
        order = ordering.replace("last_activity", "expire_date")
        now = timezone.now()
        rows = self._rows(
            self._objects.filter(self._status_q(filters.status, now)).order_by(order, "pk")
        )
        if filters.users is None and filters.authenticated is None:
            return [decoded_info(*row) for row in self._stream(rows[offset : offset + limit])]
        infos = (decoded_info(*row) for row in self._stream(rows))
        matching = (info for info in infos if filters.matches(info, now))
        return list(islice(matching, offset, offset + limit))

    def _info(
        self,
        public_id: str,
        user_id: Any,
        ip: str | None,
        user_agent: str,
        created_at: datetime | None,
        last_activity: datetime | None,
        expire_date: datetime,
    ) -> SessionInfo:
        return SessionInfo(
            public_id=public_id,
            user_id=None if user_id is None else str(user_id),
            ip=ip,
            user_agent=user_agent,
            created_at=created_at,
            last_activity=last_activity,
            expire_date=expire_date,
            _load=self._loader(public_id),
        )

    def _loader(self, public_id: str) -> Callable[[], dict[str, Any]]:
        """Return a function that fetches and decodes the data of *public_id* when called."""

        def load() -> dict[str, Any]:
            rows = self._objects.filter(public_id=public_id).values_list("session_data", flat=True)
            session_data = rows.first()
            return {} if session_data is None else self._decode(session_data)

        return load

    def get(self, public_id: str) -> SessionInfo | None:
        """Return the session with *public_id*, expired or not.

        Without metadata this computes the public id of every key in the
        table (no decoding, one keyed hash per row) until it finds a match.
        """
        if not self.records_metadata:
            for session_key in self._stock_keys(public_id):
                rows = self._objects.filter(pk=session_key).values_list(
                    "session_data", "expire_date"
                )
                for session_data, expire_date in rows:
                    return decoded_info(session_key, self._decode(session_data), expire_date)
            return None
        row = self._objects.filter(public_id=public_id).values_list(*INFO_FIELDS).first()
        return None if row is None else self._info(*row)

    def _stock_keys(self, public_id: str) -> Iterator[str]:
        """Yield the key whose public id is *public_id*, hashing every key in the table."""
        keys = self._objects.order_by().values_list("session_key", flat=True)
        for session_key in keys.iterator(chunk_size=CHUNK_SIZE):
            if public_id_of(session_key) == public_id:
                yield session_key
                return

    def _stock_user_rows(self, user_id: str) -> Iterator[tuple[str, dict[str, Any], datetime]]:
        now = timezone.now()
        live = self._objects.filter(expire_date__gt=now).order_by()
        of_user = Filters(users=frozenset((user_id,)))
        for row in self._stream(self._rows(live)):
            if of_user.matches(decoded_info(*row), now):
                yield row

    def for_user(self, user_id: str) -> list[SessionInfo]:
        """Return the unexpired sessions of *user_id*, newest activity first."""
        if not self.records_metadata:
            # Without activity, the latest expiry is the latest save.
            stock_rows = sorted(self._stock_user_rows(user_id), key=itemgetter(2), reverse=True)
            return [decoded_info(*row) for row in stock_rows]
        queryset = self._filtered(Filters("active", frozenset((user_id,))))
        if queryset is None:
            return []
        rows = queryset.order_by("-last_activity", "pk").values_list(*INFO_FIELDS)
        return [self._info(*row) for row in rows]

    def revoke(self, public_id: str) -> bool:
        """Delete the session with *public_id* (and its cached copy); return whether it existed."""
        if not self.records_metadata:
            matches = list(self._stock_keys(public_id))
        else:
            matches = list(
                self._objects.filter(public_id=public_id).values_list("session_key", flat=True)
            )
        return self._delete_keys(matches) > 0

    def revoke_user(self, user_id: str, *, keep: str | None = None) -> int:
        """Delete the unexpired sessions of *user_id* except *keep*; return how many."""
        if not self.records_metadata:
            keys = [
                key
                for key, _, _ in self._stock_user_rows(user_id)
                if keep is None or public_id_of(key) != keep
            ]
            return self._delete_keys(keys)
        queryset = self._filtered(Filters("active", frozenset((user_id,))))
        if queryset is None:
            return 0
        if keep is not None:
            queryset = queryset.exclude(public_id=keep)
        return self._delete_keys(list(queryset.values_list("session_key", flat=True)))

    def stats(self) -> Stats:
        """Return the totals: a few queries on the ``expire_date`` index, one GROUP BY user.

        Without metadata the busiest user is found by decoding every
        unexpired session, streamed in chunks; memory grows with the number
        of distinct users, not of sessions.
        """
        now = timezone.now()
        sessions = self._objects.count()
        expired_rows = self._objects.filter(expire_date__lte=now)
        expired = expired_rows.count()
        oldest_expired = (
            expired_rows.order_by("expire_date").values_list("expire_date", flat=True).first()
        )
        busiest: tuple[str, int] | None = None
        live = self._objects.filter(expire_date__gt=now)
        if self.records_metadata:
            top = (
                live.filter(user__isnull=False)
                .values("user")
                .annotate(sessions=CountOf("pk"))
                .order_by("-sessions", "user")
                .values_list("user", "sessions")
                .first()
            )
            if top is not None:
                busiest = (str(top[0]), top[1])
        else:
            per_user: Counter[str] = Counter()
            for _, data, _ in self._stream(self._rows(live.order_by())):
                stored = data.get(SESSION_KEY)
                if stored is not None:
                    per_user[str(stored)] += 1
            if per_user:
                # The most sessions; among equals, the smallest id, as with metadata.
                busiest = min(per_user.items(), key=lambda item: (-item[1], item[0]))
        return Stats(
            sessions=sessions,
            active=sessions - expired,
            expired=expired,
            oldest_expired=oldest_expired,
            busiest_user=busiest,
        )

    def export(self, *, batch_size: int = 1000) -> Iterator[list[ExportedSession]]:
        """Yield the unexpired rows in primary key order, in lists of *batch_size*.

        Keyset pagination: each batch is one query that starts after the last
        key seen, through the primary key index, so memory is bounded by a batch
        and no cursor stays open while the caller writes elsewhere (possibly on
        the same connection, possibly inside a transaction).
        """
        metadata = METADATA_COPIED if self.records_metadata else ()
        rows = (
            self._objects.filter(expire_date__gt=timezone.now())
            .order_by("pk")
            .values_list("session_key", "session_data", "expire_date", *metadata)
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
        """Delete sessions that expired before now, a batch at a time.

        Each batch selects the oldest expired rows through the ``expire_date``
        index and deletes them with one ``DELETE`` (its own short
        transaction), re-checking the expiry so that a session renewed
        meanwhile is kept. A :class:`BatchSizer` sizes each batch by how long
        the previous one took. Delete signals are not sent (see the class).
        With cached_db the batch's cache entries are evicted after the
        commit; a cache that cannot be reached is only logged, since those
        entries expire with the sessions anyway.
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
        if not self.records_activity:
            return super().clear_inactive(before=before, batch_size=batch_size)
        sizer = BatchSizer.of(batch_size)
        return self._delete_batches("last_activity", before, sizer, strict=True)

    def pause_after(self, seconds: float) -> float:
        """On SQLite, half the batch's time, from 25 to 100 ms; elsewhere none.

        SQLite's lock is not fair: a connection that wants to write and finds
        the database locked sleeps and tries again, 1, 2, 5, 10, 15, 20 and
        25 ms later at first, 50 ms and then 100 ms apart once it has waited
        longer than about 100 and 230 ms. Batches run back to back leave it
        gaps of a fraction of a millisecond, which it almost never hits: a
        writer could wait as long as the whole cleanup. A pause of half the
        batch's time is at least the spacing of the retries of a writer that
        started waiting during that batch, so it gets the lock in the pause.
        """
        if connections[self._write_db].vendor != "sqlite":
            return 0.0
        shortest, longest = SQLITE_PAUSE
        return min(longest, max(shortest, seconds / 2))

    def _delete_batches(
        self, field: str, before: datetime, sizer: BatchSizer, *, strict: bool
    ) -> Iterator[int]:
        """Delete the rows whose *field* is before *before*, lowest first, a batch at a time.

        Every batch is one ``DELETE`` statement, its own short transaction,
        that checks the condition again: a row renewed meanwhile is kept.
        Each batch starts where the previous one ended (*field* ``>=`` its
        last value): on PostgreSQL the index entries of rows deleted by
        earlier batches stay until VACUUM, and a scan from the start would
        step over all of them every time.
        """
        if self.model._meta.related_objects:
            return self._delete_batches_orm(field, before, sizer, strict=strict)
        if connections[self._write_db].vendor == "postgresql":
            return self._delete_batches_postgresql(field, before, sizer, strict=strict)
        return self._delete_batches_by_key(field, before, sizer, strict=strict)

    def _delete_batches_by_key(
        self, field: str, before: datetime, sizer: BatchSizer, *, strict: bool
    ) -> Iterator[int]:
        """Read a batch of keys, then delete them with one raw DELETE.

        No transaction spans the two: SQLite fails at once with "database is
        locked" when a transaction that has read starts writing while another
        connection writes. ``QuerySet.delete()`` would load every row to send
        signals whenever a receiver is connected.
        """
        using = self._write_db
        manager = self.model._default_manager.db_manager(using)
        condition = Q(**{f"{field}__lt": before})
        lower: Any = None
        while True:
            with sizer.batch() as size:
                rows = manager.filter(condition)
                if lower is not None:
                    rows = rows.filter(**{f"{field}__gte": lower})
                found = list(rows.order_by(field).values_list("pk", field)[:size])
                if not found:
                    return
                keys = [key for key, _ in found]
                deleted = manager.filter(condition, pk__in=keys)._raw_delete(using)
            # After the DELETE has committed: evicted earlier, a concurrent read
            # could refill the cache from the row before it is gone.
            self._evict(keys, strict=strict)
            yield deleted
            if len(found) < size:
                return
            lower = found[-1][1]

    def _delete_batches_postgresql(
        self, field: str, before: datetime, sizer: BatchSizer, *, strict: bool
    ) -> Iterator[int]:
        """Delete each batch with one statement that picks its rows by ``ctid``.

        When much of the table is to go, the batches walk the table's pages
        instead (see :meth:`_page_ranges`). Otherwise the rows are chosen
        through the index on *field* and deleted by their
        physical address, without a lookup per row in the primary key index.
        The statement answers one row: where the next batch starts, how many
        rows went and, for cached_db only, their keys to evict; nothing per
        row crosses the wire otherwise. A row updated after the statement's
        snapshot has a new ``ctid`` and is kept.
        """
        connection = connections[self._write_db]
        quote = connection.ops.quote_name
        meta = self.model._meta
        table = quote(meta.db_table)
        column = quote(str(cast("Field[Any, Any]", meta.get_field(field)).column))
        key = quote(str(meta.pk.column if meta.pk is not None else "pk"))
        keys = f"(SELECT array_agg({key}) FROM gone)" if self.cached else "NULL"  # noqa: S608

        def statement(lower: bool) -> str:
            start = f" AND {column} >= %s" if lower else ""
            return (
                f"WITH batch AS MATERIALIZED (SELECT ctid, {column} AS v FROM {table} "  # noqa: S608
                f"WHERE {column} < %s{start} ORDER BY {column} LIMIT %s), "
                f"gone AS (DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM batch)) "
                f"AND {column} < %s RETURNING {key}) "
                f"SELECT (SELECT max(v) FROM batch), (SELECT count(*) FROM gone), {keys}"
            )

        ranges = self._page_ranges(connection, table, field, before)
        if ranges is not None:
            # No index pass after the walk: the index still holds an entry for
            # every row the walk deleted (until VACUUM), and stepping over them
            # would cost as much as the walk itself.
            yield from self._delete_page_ranges(
                connection, table, column, key, before, sizer, ranges, strict=strict
            )
            return

        lower: Any = None
        while True:
            with sizer.batch() as size, self._batch_transaction(connection) as cursor:
                params: list[Any] = (
                    [before, size, before] if lower is None else [before, lower, size, before]
                )
                cursor.execute(statement(lower is not None), params)
                lower, deleted, evict = cursor.fetchone()
            # Stop when nothing is left to pick, not on a short or empty
            # delete: rows renewed meanwhile are picked but kept.
            if lower is None:
                return
            if deleted:
                self._evict(evict or [], strict=strict)
                yield deleted

    def _page_ranges(
        self, connection: Any, table: str, field: str, before: datetime
    ) -> tuple[int, float] | None:
        """Return (pages, doomed rows per page) when the batches should walk the table's pages.

        When a large share of a large table is to go (``PAGE_RANGE_SHARE``
        of its rows, by the planner's estimate, on at least
        ``PAGE_RANGE_MIN_PAGES`` pages), reading the rows in their physical
        order deletes each page's rows together, as one sequential
        ``DELETE`` would; through the index, each row is a visit to a page
        of its own. None otherwise, or before the table was ever analyzed.
        """
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT relpages, reltuples, pg_relation_size(oid) / current_setting("
                "'block_size')::int FROM pg_class WHERE oid = to_regclass(%s)",
                [table],
            )
            row = cursor.fetchone()
            if row is None:
                return None
            relpages, reltuples, pages = row
        if relpages < PAGE_RANGE_MIN_PAGES or reltuples <= 0:
            return None
        doomed = self._planned_rows(
            self.model._default_manager.using(self._write_db).filter(**{f"{field}__lt": before})
        )
        if doomed < PAGE_RANGE_SHARE * reltuples:
            return None
        return int(pages), min(doomed, reltuples) / relpages

    def _delete_page_ranges(
        self,
        connection: Any,
        table: str,
        column: str,
        key: str,
        before: datetime,
        sizer: BatchSizer,
        ranges: tuple[int, float],
        *,
        strict: bool,
    ) -> Iterator[int]:
        """Delete the rows before *before* a range of pages at a time, in physical order.

        A range is sized to hold somewhat fewer doomed rows than the sizer
        asks for (by the planner's estimate, spread evenly over the pages);
        each range is one ``DELETE`` over a TID range scan, its own
        transaction. A range that turns out to hold more is rolled back and
        halved, and a single page that holds more gives them up through a
        ``LIMIT``, so that no batch deletes more than asked. The walk ends
        at the table's size when it began: a row written during the walk
        with *field* already before *before* (a session saved with an expiry
        in the past) may be left for the next run.
        """
        pages, per_page = ranges
        returning = f" RETURNING {key}" if self.cached else ""
        in_range = f"ctid >= %s::tid AND ctid < %s::tid AND {column} < %s"
        statement = f"DELETE FROM {table} WHERE {in_range}{returning}"  # noqa: S608
        limited = (
            f"DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} "  # noqa: S608
            f"WHERE {in_range} LIMIT %s)) AND {column} < %s{returning}"
        )
        page = 0
        while page < pages:
            with sizer.batch() as size:
                step = max(1, int(PAGE_RANGE_FILL * size / per_page))
                while True:
                    bounds = [f"({page},0)", f"({page + step},0)", before]
                    with self._batch_transaction(connection, savepoint=True) as cursor:
                        cursor.execute(statement, bounds)
                        deleted, evict = self._deleted(cursor)
                        if deleted > size:
                            transaction.set_rollback(True, using=self._write_db)
                    if deleted <= size:
                        page += step
                        # Neighbouring pages look alike (rows are written in time
                        # order): the next range is sized by this one's density.
                        per_page = max(deleted / step, per_page / 2, 0.01)
                        break
                    per_page = deleted / step
                    if step > 1:
                        step = max(1, int(PAGE_RANGE_FILL * size / per_page))
                        continue
                    # One page holds more than a batch may delete: part of it now,
                    # the rest in the next batches.
                    with self._batch_transaction(connection) as cursor:
                        cursor.execute(limited, [*bounds, size, before])
                        deleted, evict = self._deleted(cursor)
                    break
            if deleted:
                self._evict(evict, strict=strict)
                yield deleted

    @contextmanager
    def _batch_transaction(self, connection: Any, *, savepoint: bool = False) -> Iterator[Any]:
        """Run a PostgreSQL batch in a transaction that commits without waiting for the disk.

        ``SET LOCAL synchronous_commit = off`` holds for this transaction only
        (nothing leaks to a pooled connection). The commit then does not wait
        for the WAL to be flushed, which a checkpoint writing out the table
        can hold up for a hundred milliseconds or more while the batch keeps
        its row locks. A crash can lose the batches of the last fraction of
        a second: their sessions are still expired, and the next run deletes
        them; the database stays consistent. Inside a caller's own
        transaction the setting is left alone (its commit is not ours to
        relax), and a batch is a savepoint only when asked, to be rolled back.
        """
        outermost = not connection.in_atomic_block
        with (
            transaction.atomic(using=self._write_db, savepoint=savepoint),
            connection.cursor() as cursor,
        ):
            if outermost:
                cursor.execute("SET LOCAL synchronous_commit = off")
            yield cursor

    def _deleted(self, cursor: Any) -> tuple[int, list[str]]:
        """Return how many rows a ``DELETE`` removed, and their keys to evict (cached_db)."""
        return cursor.rowcount, [row[0] for row in cursor.fetchall()] if self.cached else []

    def _delete_batches_orm(
        self, field: str, before: datetime, sizer: BatchSizer, *, strict: bool
    ) -> Iterator[int]:
        """For a custom model that other rows point to: let the ORM cascade.

        ``QuerySet.delete()`` runs ``on_delete`` and sends the delete signals,
        in its own transaction; a batch bounds what it loads.
        """
        manager = self.model._default_manager.db_manager(self._write_db)
        condition = Q(**{f"{field}__lt": before})
        while True:
            with sizer.batch() as size:
                keys = list(
                    manager.filter(condition).order_by(field).values_list("pk", flat=True)[:size]
                )
                if not keys:
                    return
                deleted = (
                    manager.filter(condition, pk__in=keys)
                    .delete()[1]
                    .get(self.model._meta.label, 0)
                )
            self._evict(keys, strict=strict)
            yield deleted
            if len(keys) < size:
                return
