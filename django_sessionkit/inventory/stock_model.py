"""Inventory of the database engines on a model without sessionkit's metadata.

Django's own ``django_session``, or a custom ``AbstractBaseSession``: the user
is only known from the decoded ``_auth_user_id``, so per-user lookups stream
through the table, decoding each unexpired session, in chunks that keep
memory bounded. Counting by status and clearing work as with metadata.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from itertools import islice
from operator import itemgetter
from typing import Any

from django.contrib.auth import SESSION_KEY
from django.db.models import QuerySet
from django.utils import timezone

from django_sessionkit.inventory.base import (
    Count,
    Filters,
    Ordering,
    SessionInfo,
    SessionInventory,
    busiest,
    decoded_info,
)
from django_sessionkit.inventory.model import ModelInventory, status_q
from django_sessionkit.public_id import public_id as public_id_of

logger = logging.getLogger(__name__)

#: A decoded row: session key, data, expiry.
Row = tuple[str, dict[str, Any], datetime]


class StockModelInventory(ModelInventory):
    """Read and revoke the sessions of a database-backed engine by decoding their data.

    No IP address, user agent or activity is known: the ``ip``,
    ``active_after`` and ``active_before`` filters match nothing, the
    orderings by activity order by expiry, and ``clear_inactive`` raises
    :class:`~django_sessionkit.inventory.base.InventoryUnavailable`.
    """

    records_metadata = False
    records_activity = False
    copied_fields = ()

    @staticmethod
    def _rows(queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.values_list("session_key", "session_data", "expire_date")

    def _stream(self, rows: QuerySet[Any]) -> Iterator[Row]:
        """Decode *rows* of ``_rows()``, fetching ``chunk_size`` rows per round trip."""
        for session_key, session_data, expire_date in rows.iterator(chunk_size=self.chunk_size):
            yield session_key, self._decode(session_data), expire_date

    @staticmethod
    def _by_data(filters: Filters) -> bool:
        """Whether *filters* ask for what only the decoded data tells: the user."""
        return filters.users is not None or filters.authenticated is not None

    def _count(self, filters: Filters, *, estimate: bool) -> Count:
        """Count sessions; filtered by user, by decoding every session of that status."""
        if not self._by_data(filters):
            # By status alone the table answers, as it does with metadata.
            return super()._count(filters, estimate=estimate)
        now = timezone.now()
        stream = self._stream(self._rows(self._objects.filter(status_q(filters.status, now))))
        return Count(sum(1 for row in stream if filters.matches(decoded_info(*row), now)))

    def _page(
        self, filters: Filters, *, offset: int, limit: int, ordering: Ordering
    ) -> list[SessionInfo]:
        """Return one page of sessions; filtered by user, decoding until the page is full.

        There is no ``last_activity``: ordering by it orders by
        ``expire_date``, which a save moves forward just as activity does.
        """
        order = ordering.replace("last_activity", "expire_date")
        now = timezone.now()
        rows = self._rows(self._objects.filter(status_q(filters.status, now)).order_by(order, "pk"))
        if not self._by_data(filters):
            return [decoded_info(*row) for row in self._stream(rows[offset : offset + limit])]
        infos = (decoded_info(*row) for row in self._stream(rows))
        matching = (info for info in infos if filters.matches(info, now))
        return list(islice(matching, offset, offset + limit))

    def _keys_of(self, public_id: str) -> Iterator[str]:
        """Yield the key whose public id is *public_id*, hashing every key in the table."""
        keys = self._objects.order_by().values_list("session_key", flat=True)
        for session_key in keys.iterator(chunk_size=self.chunk_size):
            if public_id_of(session_key) == public_id:
                yield session_key
                return

    def _user_rows(self, user_id: str) -> Iterator[Row]:
        now = timezone.now()
        live = self._objects.filter(expire_date__gt=now).order_by()
        of_user = Filters(users=frozenset((user_id,)))
        for row in self._stream(self._rows(live)):
            if of_user.matches(decoded_info(*row), now):
                yield row

    def get(self, public_id: str) -> SessionInfo | None:
        """Return the session with *public_id*, expired or not.

        This computes the public id of every key in the table (no decoding,
        one keyed hash per row) until it finds a match.
        """
        for session_key in self._keys_of(public_id):
            rows = self._objects.filter(pk=session_key).values_list("session_data", "expire_date")
            for session_data, expire_date in rows:
                return decoded_info(session_key, self._decode(session_data), expire_date)
        return None

    def for_user(self, user_id: str) -> list[SessionInfo]:
        """Return the unexpired sessions of *user_id*, latest expiry (the latest save) first."""
        rows = sorted(self._user_rows(user_id), key=itemgetter(2), reverse=True)
        return [decoded_info(*row) for row in rows]

    def revoke(self, public_id: str) -> bool:
        """Delete the session with *public_id* (and its cached copy); return whether it existed."""
        return self._delete_keys(list(self._keys_of(public_id))) > 0

    def revoke_user(self, user_id: str, *, keep: str | None = None) -> int:
        """Delete the unexpired sessions of *user_id* except *keep*; return how many."""
        keys = [
            key
            for key, _, _ in self._user_rows(user_id)
            if keep is None or public_id_of(key) != keep
        ]
        return self._delete_keys(keys)

    def _busiest_user(self, live: QuerySet[Any]) -> tuple[str, int] | None:
        """Decode every *live* session, streamed in chunks, to find the user with the most.

        Memory grows with the number of distinct users, not of sessions.
        """
        per_user: Counter[str] = Counter()
        for _, data, _ in self._stream(self._rows(live.order_by())):
            stored = data.get(SESSION_KEY)
            if stored is not None:
                per_user[str(stored)] += 1
        # The most sessions; among equals, the smallest id, as with metadata.
        return busiest(per_user)

    def user_deleted(self, user_id: str) -> None:
        """Do nothing: no row names its user, so the deletion cascades to none of them."""

    # Without activity, idle sessions cannot be told apart: refuse, as the interface does.
    clear_inactive = SessionInventory.clear_inactive
