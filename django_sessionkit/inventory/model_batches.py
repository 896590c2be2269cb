"""How the database inventories delete many sessions: short batches, one strategy per database.

Every batch is one statement, its own short transaction, that checks its
condition again, so that a session renewed meanwhile is kept:

* by key (SQLite, MySQL and the others): a batch of keys is read, then
  deleted with one raw ``DELETE``;
* on PostgreSQL, one statement that picks the batch's rows through the
  index and deletes them by ``ctid``, or, when much of a large table is to
  go, ranges of the table's pages (TID range scans);
* for a custom session model that other rows point to, the ORM, so that
  ``on_delete`` applies.

Also here: the pause after a batch on SQLite, and PostgreSQL's row estimates.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from django.db import connections, router, transaction
from django.db.models import Field, Model, Q, QuerySet

from django_sessionkit.inventory.base import BatchSizer

logger = logging.getLogger(__name__)

#: Bounds of the pause after a batch on SQLite (seconds): half the batch's time.
SQLITE_PAUSE = (0.025, 0.1)


@dataclass(frozen=True)
class PageRanges:
    """When PostgreSQL deletes a range of table pages at a time, rather than through the index.

    It does when at least *share* of the table's rows is to go, on a table of
    at least *min_pages* pages. A range is sized to hold *fill* of a batch's
    size, so that few ranges hold more than the batch may delete (those are
    rolled back).
    """

    share: float = 0.1
    min_pages: int = 1000
    fill: float = 0.8


PAGE_RANGES = PageRanges()


def delete_batches(
    model: type[Model],
    field: str,
    before: datetime,
    sizer: BatchSizer,
    *,
    evict: Callable[[list[str]], None] | None = None,
    page_ranges: PageRanges = PAGE_RANGES,
) -> Iterator[int]:
    """Delete the rows of *model* whose *field* is before *before*, lowest first, in batches.

    Yield the count of each batch, sized by *sizer*. *evict*, when given, is
    called with the keys of each batch after it has committed (cached_db);
    without it, no keys cross the wire on PostgreSQL.
    """
    return _Batches(model, evict, page_ranges).delete(field, before, sizer)


def sqlite_pause(using: str, seconds: float) -> float:
    """Return how long to pause after a batch that took *seconds* on the database *using*.

    On SQLite, half the batch's time, from 25 to 100 ms; elsewhere none.
    SQLite's lock is not fair: a connection that wants to write and finds
    the database locked sleeps and tries again, 1, 2, 5, 10, 15, 20 and
    25 ms later at first, 50 ms and then 100 ms apart once it has waited
    longer than about 100 and 230 ms. Batches run back to back leave it
    gaps of a fraction of a millisecond, which it almost never hits: a
    writer could wait as long as the whole cleanup. A pause of half the
    batch's time is at least the spacing of the retries of a writer that
    started waiting during that batch, so it gets the lock in the pause.
    """
    if connections[using].vendor != "sqlite":
        return 0.0
    shortest, longest = SQLITE_PAUSE
    return min(longest, max(shortest, seconds / 2))


def planned_rows(queryset: QuerySet[Any]) -> int:
    """Return PostgreSQL's planner estimate of the rows *queryset* selects."""
    plan = json.loads(queryset.explain(format="json"))
    return int(plan[0]["Plan"]["Plan Rows"])


def estimated_rows(model: type[Model]) -> int | None:
    """Return PostgreSQL's row estimate for *model*'s table, None where there is none."""
    connection = connections[router.db_for_read(model)]
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)",
            [connection.ops.quote_name(model._meta.db_table)],
        )
        row = cursor.fetchone()
    # reltuples is -1 (PostgreSQL 14+) or 0 until the table is first analyzed.
    if row is None or row[0] is None or row[0] <= 0:
        return None
    return int(row[0])


class _Batches:
    """The strategies behind :func:`delete_batches`, on the model's database for writes."""

    def __init__(
        self,
        model: type[Model],
        evict: Callable[[list[str]], None] | None,
        page_ranges: PageRanges,
    ) -> None:
        self.model = model
        self.using = router.db_for_write(model)
        self.evict = evict
        # The keys of deleted rows are only wanted to evict their cached copies.
        self.cached = evict is not None
        self.page_ranges = page_ranges

    def _evicted(self, keys: list[str]) -> None:
        if self.evict is not None:
            self.evict(keys)

    def delete(self, field: str, before: datetime, sizer: BatchSizer) -> Iterator[int]:
        """Delete the rows whose *field* is before *before*, lowest first, a batch at a time.

        Every batch is one ``DELETE`` statement, its own short transaction,
        that checks the condition again: a row renewed meanwhile is kept.
        Each batch starts where the previous one ended (*field* ``>=`` its
        last value): on PostgreSQL the index entries of rows deleted by
        earlier batches stay until VACUUM, and a scan from the start would
        step over all of them every time.
        """
        if self.model._meta.related_objects:
            return self._through_orm(field, before, sizer)
        if connections[self.using].vendor == "postgresql":
            return self._by_ctid(field, before, sizer)
        return self._by_key(field, before, sizer)

    def _by_key(self, field: str, before: datetime, sizer: BatchSizer) -> Iterator[int]:
        """Read a batch of keys, then delete them with one raw DELETE.

        No transaction spans the two: SQLite fails at once with "database is
        locked" when a transaction that has read starts writing while another
        connection writes. ``QuerySet.delete()`` would load every row to send
        signals whenever a receiver is connected.
        """
        using = self.using
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
            self._evicted(keys)
            yield deleted
            if len(found) < size:
                return
            lower = found[-1][1]

    def _by_ctid(self, field: str, before: datetime, sizer: BatchSizer) -> Iterator[int]:
        """Delete each batch with one statement that picks its rows by ``ctid``.

        When much of the table is to go, the batches walk the table's pages
        instead (see :meth:`_pages_to_walk`). Otherwise the rows are chosen
        through the index on *field* and deleted by their
        physical address, without a lookup per row in the primary key index.
        The statement answers one row: where the next batch starts, how many
        rows went and, for cached_db only, their keys to evict; nothing per
        row crosses the wire otherwise. A row updated after the statement's
        snapshot has a new ``ctid`` and is kept.
        """
        connection = connections[self.using]
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

        ranges = self._pages_to_walk(connection, table, field, before)
        if ranges is not None:
            # No index pass after the walk: the index still holds an entry for
            # every row the walk deleted (until VACUUM), and stepping over them
            # would cost as much as the walk itself.
            yield from self._delete_page_ranges(
                connection, table, column, key, before, sizer, ranges
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
                self._evicted(evict or [])
                yield deleted

    def _pages_to_walk(
        self, connection: Any, table: str, field: str, before: datetime
    ) -> tuple[int, float] | None:
        """Return (pages, doomed rows per page) when the batches should walk the table's pages.

        When a large share of a large table is to go (:attr:`PageRanges.share`
        of its rows, by the planner's estimate, on at least
        :attr:`PageRanges.min_pages` pages), reading the rows in their physical
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
        if relpages < self.page_ranges.min_pages or reltuples <= 0:
            return None
        doomed = planned_rows(
            self.model._default_manager.using(self.using).filter(**{f"{field}__lt": before})
        )
        if doomed < self.page_ranges.share * reltuples:
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
                step = max(1, int(self.page_ranges.fill * size / per_page))
                while True:
                    bounds = [f"({page},0)", f"({page + step},0)", before]
                    with self._batch_transaction(connection, savepoint=True) as cursor:
                        cursor.execute(statement, bounds)
                        deleted, evict = self._deleted(cursor)
                        if deleted > size:
                            transaction.set_rollback(True, using=self.using)
                    if deleted <= size:
                        page += step
                        # Neighbouring pages look alike (rows are written in time
                        # order): the next range is sized by this one's density.
                        per_page = max(deleted / step, per_page / 2, 0.01)
                        break
                    per_page = deleted / step
                    if step > 1:
                        step = max(1, int(self.page_ranges.fill * size / per_page))
                        continue
                    # One page holds more than a batch may delete: part of it now,
                    # the rest in the next batches.
                    with self._batch_transaction(connection) as cursor:
                        cursor.execute(limited, [*bounds, size, before])
                        deleted, evict = self._deleted(cursor)
                    break
            if deleted:
                self._evicted(evict)
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
            transaction.atomic(using=self.using, savepoint=savepoint),
            connection.cursor() as cursor,
        ):
            if outermost:
                cursor.execute("SET LOCAL synchronous_commit = off")
            yield cursor

    def _deleted(self, cursor: Any) -> tuple[int, list[str]]:
        """Return how many rows a ``DELETE`` removed, and their keys to evict (cached_db)."""
        return cursor.rowcount, [row[0] for row in cursor.fetchall()] if self.cached else []

    def _through_orm(self, field: str, before: datetime, sizer: BatchSizer) -> Iterator[int]:
        """For a custom model that other rows point to: let the ORM cascade.

        ``QuerySet.delete()`` runs ``on_delete`` and sends the delete signals,
        in its own transaction; a batch bounds what it loads.
        """
        manager = self.model._default_manager.db_manager(self.using)
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
            self._evicted(keys)
            yield deleted
            if len(keys) < size:
                return
