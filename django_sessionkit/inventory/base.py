"""The inventory interface: one read/revoke API over every session engine.

The admin, the management commands and the views use only this interface;
they never branch on the engine themselves. A listed session is a
:class:`SessionInfo`, which carries the session's public id but never its key.
"""

from __future__ import annotations

import abc
import logging
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, get_args

from django.contrib.auth import SESSION_KEY
from django.db import DatabaseError
from django.utils import timezone

from django_sessionkit.backends.base import (
    CopiedMetadata,
    SessionStorageUnavailable,
    warn_unreadable,
)
from django_sessionkit.public_id import public_id

logger = logging.getLogger(__name__)

Status = Literal["all", "active", "expired"]
Ordering = Literal["-last_activity", "last_activity", "-expire_date", "expire_date"]
STATUSES: tuple[Status, ...] = get_args(Status)
ORDERINGS: tuple[Ordering, ...] = get_args(Ordering)


@dataclass(frozen=True)
class Filters:
    """Which sessions a count or a page is about, checked once.

    *users* keeps the sessions of any of these user ids (an empty collection
    matches nothing; None, any user). *active_after* and *active_before* keep
    sessions last active at or after, and before, a moment. Filters combine.
    """

    status: Status = "all"
    users: frozenset[str] | None = None
    ip: str | None = None
    authenticated: bool | None = None
    active_after: datetime | None = None
    active_before: datetime | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"Unknown status {self.status!r}; use one of {', '.join(STATUSES)}.")
        if self.users is not None:
            object.__setattr__(self, "users", frozenset(str(user) for user in self.users))

    @property
    def by_activity(self) -> bool:
        return self.active_after is not None or self.active_before is not None

    @property
    def unfiltered(self) -> bool:
        """Whether every session matches."""
        return self == Filters()

    def matches(self, info: SessionInfo, now: datetime) -> bool:
        """Whether *info* passes the filters, judged on what it carries."""
        expired = info.expire_date is not None and info.expire_date <= now
        if (self.status == "active" and expired) or (self.status == "expired" and not expired):
            return False
        if self.users is not None and info.user_id not in self.users:
            return False
        if self.ip is not None and info.ip != self.ip:
            return False
        if self.authenticated is not None and info.is_authenticated != self.authenticated:
            return False
        activity = info.last_activity
        if self.active_after is not None and (activity is None or activity < self.active_after):
            return False
        return self.active_before is None or (
            activity is not None and activity < self.active_before
        )


class InventoryUnavailable(Exception):
    """The engine keeps no list of sessions that could be read; the message says why.

    *nothing_to_clear* is True when the engine keeps no sessions on the server
    at all (signed cookies), so that there is nothing to clear either.
    """

    def __init__(self, message: str, *, nothing_to_clear: bool = False) -> None:
        super().__init__(message)
        self.nothing_to_clear = nothing_to_clear


def storage_errors() -> tuple[type[BaseException], ...]:
    """Return what a session storage raises when it fails in the middle of an operation.

    The database's errors, the filesystem's, the engines' own "unavailable",
    and Redis's (through django-redis or redis-py) when they are installed.
    """
    errors: tuple[type[BaseException], ...] = (DatabaseError, OSError, SessionStorageUnavailable)
    try:
        from django_redis.exceptions import ConnectionInterrupted
        from redis.exceptions import RedisError
    except ImportError:
        return errors
    return (*errors, ConnectionInterrupted, RedisError)


class BatchSizer:
    """Sizes the batches of a deletion so that each takes about *target* seconds.

    A batch asks for :attr:`size` rows, at most *limit*. After a batch that
    took longer than *target* the next one shrinks in proportion; after a
    faster one it grows, at most doubling, back up to *limit*. Sizing starts
    small (``min(limit, start)``) so that the first transaction is short
    too. With *target* None every batch asks for *limit* rows.

    What bounds a transaction's time is the storage's, not the row count's:
    the same thousand rows take 5 ms on PostgreSQL and hundreds of
    milliseconds on SQLite, where each commit rewrites every index page the
    batch touched.
    """

    def __init__(
        self,
        limit: int,
        target: float | None = None,
        *,
        start: int = 100,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if limit < 1:
            raise ValueError("batch_size must be at least 1.")
        self.limit = limit
        self.target = target
        self.clock = clock
        self.size = limit if target is None else min(limit, start)
        #: The size the latest batch asked for: fewer rows found means none are left.
        self.asked = 0
        #: How long the latest batch took, in seconds.
        self.elapsed = 0.0

    @classmethod
    def of(cls, batch_size: int | BatchSizer) -> BatchSizer:
        """Return *batch_size* itself, or a fixed sizer for a plain number."""
        return batch_size if isinstance(batch_size, BatchSizer) else cls(batch_size)

    @contextmanager
    def batch(self) -> Iterator[int]:
        """Time one batch around the block, which gets the number of rows to ask for."""
        self.asked = self.size
        started = self.clock()
        yield self.size
        self.elapsed = elapsed = max(self.clock() - started, 1e-6)
        if self.target is None:
            return
        wanted = int(self.size * self.target / elapsed)
        self.size = max(1, min(self.limit, 2 * self.size, wanted))


@dataclass(frozen=True)
class Count:
    """How many sessions there are; *exact* is False for an estimate."""

    value: int
    exact: bool = True


@dataclass(frozen=True)
class Stats:
    """Totals of an engine's sessions, as ``clearsessions --stats`` reports them."""

    sessions: int
    active: int
    expired: int
    oldest_expired: datetime | None
    #: (user id, number of unexpired sessions) of the user holding the most, if any.
    busiest_user: tuple[str, int] | None


def busiest(per_user: Mapping[str, int]) -> tuple[str, int] | None:
    """Return (user id, sessions) of the user holding the most, as ``Stats.busiest_user`` says.

    Among users holding as many, the smallest id, numbers compared as numbers
    (2 before 10), as a database orders an integer primary key.
    """
    return min(per_user.items(), key=lambda item: (-item[1], *id_order(item[0])), default=None)


def id_order(user_id: str) -> tuple[int, int, str]:
    """Return a sort key for a user id: whole numbers by value, before any other text."""
    number = user_id.lstrip("-")
    if number.isdigit():
        return (0, -int(number) if user_id.startswith("-") else int(number), "")
    return (1, 0, user_id)


@dataclass(frozen=True)
class SessionInfo:
    """What a listed session looks like outside its engine."""

    public_id: str
    user_id: str | None
    ip: str | None
    user_agent: str
    created_at: datetime | None
    last_activity: datetime | None
    expire_date: datetime | None
    _load: Callable[[], dict[str, Any]] = field(repr=False, compare=False)
    _decoded: list[dict[str, Any]] = field(default_factory=list, repr=False, compare=False)

    @property
    def is_expired(self) -> bool:
        return self.expire_date is not None and self.expire_date <= timezone.now()

    @property
    def is_authenticated(self) -> bool:
        return self.user_id is not None

    def get_decoded(self) -> dict[str, Any]:
        """Return the session data, decoded on first use (``{}`` when undecodable)."""
        if not self._decoded:
            self._decoded.append(self._load())
        return self._decoded[0]


@dataclass(frozen=True)
class ExportedSession:
    """One unexpired session as its engine stores it, key included, for copying it.

    The key and the data stay out of its repr, so that neither reaches a log.
    """

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


def batched(sessions: Iterable[ExportedSession], size: int) -> Iterator[list[ExportedSession]]:
    """Yield *sessions* in lists of at most *size*."""
    if size < 1:
        raise ValueError("batch_size must be at least 1.")
    batch: list[ExportedSession] = []
    for session in sessions:
        batch.append(session)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def decoded_info(
    session_key: str,
    data: dict[str, Any],
    expire_date: datetime | None,
    last_activity: datetime | None = None,
) -> SessionInfo:
    """Return a session as an engine that records nothing beside its data shows it.

    The user comes from the data (``_auth_user_id``); there is no IP address,
    user agent or creation time.
    """
    user_id = data.get(SESSION_KEY)
    return SessionInfo(
        public_id=public_id(session_key),
        user_id=None if user_id is None else str(user_id),
        ip=None,
        user_agent="",
        created_at=None,
        last_activity=last_activity,
        expire_date=expire_date,
        _load=lambda: data,
    )


class SessionInventory(abc.ABC):
    """Read and revoke the sessions of one engine."""

    #: The SESSION_ENGINE this inventory reads.
    engine: str

    #: Whether the engine records user agent, IP and activity itself.
    records_metadata: bool = False

    #: Whether the engine knows when each session was last active: the
    #: *active_after* / *active_before* filters and :meth:`clear_inactive`
    #: need it. Elsewhere those filters match nothing.
    records_activity: bool = False

    #: What deletes expired sessions when the storage does it itself (e.g.
    #: ``"Redis"`` for keys with a TTL), so that :meth:`clear_expired` has
    #: nothing to do; empty when expired sessions wait for ``clear_expired``.
    expires_itself: str = ""

    #: Stored sessions this inventory found unreadable (a corrupt field, a
    #: key of the wrong type) and left out of what it listed or counted
    #: since it was made; the commands report it. See :meth:`skip_unreadable`.
    unreadable: int = 0

    def skip_unreadable(self, entry: str, reason: str) -> None:
        """Count the unreadable stored session *entry* (a public id), logging it once.

        An entry met again (a dry run counts, then lists) is counted once.
        """
        seen: set[str] = self.__dict__.setdefault("_unreadable_entries", set())
        if entry in seen:
            return
        seen.add(entry)
        self.unreadable = len(seen)
        message = "Skipping the unreadable session %s of %s: %s"
        warn_unreadable(logger, entry, message, entry, self.engine, reason)

    def count(
        self,
        *,
        status: Status = "all",
        users: Collection[str] | None = None,
        ip: str | None = None,
        authenticated: bool | None = None,
        active_after: datetime | None = None,
        active_before: datetime | None = None,
        estimate: bool = False,
    ) -> Count:
        """Count sessions (filters as in :class:`Filters`); with *estimate*, an
        engine may answer from statistics.

        On an engine that records no IP address (:attr:`records_metadata`) or
        no activity (:attr:`records_activity`), those filters match nothing.
        """
        filters = Filters(
            status, None if users is None else frozenset(users), ip, authenticated,
            active_after, active_before,
        )  # fmt: skip
        if not self._can_match(filters):
            return Count(0)
        return self._count(filters, estimate=estimate)

    def page(
        self,
        *,
        offset: int = 0,
        limit: int = 100,
        status: Status = "all",
        users: Collection[str] | None = None,
        ip: str | None = None,
        authenticated: bool | None = None,
        active_after: datetime | None = None,
        active_before: datetime | None = None,
        ordering: Ordering = "-last_activity",
    ) -> list[SessionInfo]:
        """Return one page of sessions, ordered and filtered (filters as in :meth:`count`).

        Raise ValueError for an unknown ordering or a negative *offset* or *limit*.
        """
        filters = Filters(
            status, None if users is None else frozenset(users), ip, authenticated,
            active_after, active_before,
        )  # fmt: skip
        if ordering not in ORDERINGS:
            raise ValueError(f"Unknown ordering {ordering!r}; use one of {', '.join(ORDERINGS)}.")
        if offset < 0 or limit < 0:
            raise ValueError("offset and limit must not be negative.")
        if limit == 0 or not self._can_match(filters):
            return []
        return self._page(filters, offset=offset, limit=limit, ordering=ordering)

    def _can_match(self, filters: Filters) -> bool:
        """Whether any session could pass *filters*, given what the engine records."""
        if filters.users == frozenset():
            return False
        if filters.ip is not None and not self.records_metadata:
            return False
        return not (filters.by_activity and not self.records_activity)

    @abc.abstractmethod
    def _count(self, filters: Filters, *, estimate: bool) -> Count:
        """Count the sessions that pass *filters*; only called when some could."""

    def totals(self, *, estimate: bool = False) -> tuple[Count, Count]:
        """Return the count of every session and of the expired ones, as :meth:`count`
        would with *estimate*; engines that can tell both at once override this.
        """
        return self.count(estimate=estimate), self.count(status="expired", estimate=estimate)

    @abc.abstractmethod
    def _page(
        self, filters: Filters, *, offset: int, limit: int, ordering: Ordering
    ) -> list[SessionInfo]:
        """Return one page of the sessions that pass *filters*; *limit* is at least 1."""

    @abc.abstractmethod
    def get(self, public_id: str) -> SessionInfo | None:
        """Return the session with *public_id*, or None."""

    @abc.abstractmethod
    def for_user(self, user_id: str) -> list[SessionInfo]:
        """Return the unexpired sessions of *user_id*, newest activity first."""

    @abc.abstractmethod
    def revoke(self, public_id: str) -> bool:
        """Delete the session with *public_id*; return whether it existed."""

    @abc.abstractmethod
    def revoke_user(self, user_id: str, *, keep: str | None = None) -> int:
        """Delete every session of *user_id* except the one whose public id is *keep*."""

    @abc.abstractmethod
    def clear_expired(self, *, batch_size: int | BatchSizer = 1000) -> Iterator[int]:
        """Delete expired sessions in batches, yielding the count after each batch.

        *batch_size* is the most rows a batch deletes, or a :class:`BatchSizer`
        that sizes each batch by how long the previous one took (engines
        without transactions to keep short use its limit). The caller may stop
        between batches (a signal, a time limit) and run it again later to
        carry on.
        """

    @abc.abstractmethod
    def stats(self) -> Stats:
        """Return the totals of this engine's sessions; this may read every session.

        Among users holding as many unexpired sessions, ``busiest_user`` names
        the one with the smallest id.
        """

    @abc.abstractmethod
    def export(self, *, batch_size: int = 1000) -> Iterator[list[ExportedSession]]:
        """Yield the unexpired sessions, keys and data included, in lists of at most *batch_size*.

        For ``migratesessions`` only: unlike the rest of the inventory this hands
        out session keys. Memory stays bounded by a batch; a stored session that
        cannot be read is skipped and counted (:meth:`skip_unreadable`).
        """

    def user_deleted(self, user_id: str) -> None:  # noqa: B027  (a hook: most need nothing)
        """Hear that the user *user_id* is about to be deleted; by default, do nothing.

        Called before the deletion, in its transaction. An engine that keeps
        copies of sessions beside the rows that the deletion cascades to (the
        cache of cached_db) drops them here.
        """

    def pause_after(self, seconds: float) -> float:
        """Return how long to pause after a batch that took *seconds*, by default.

        Zero, except where others waiting for the storage would not get it
        between batches run back to back (SQLite, see ModelInventory).
        """
        return 0.0

    def clear_inactive(
        self, *, before: datetime, batch_size: int | BatchSizer = 1000
    ) -> Iterator[int]:
        """Delete sessions last active before *before*, in batches, yielding each count.

        Expired or not, a session idle since before *before* goes. Only
        engines that record activity can tell; the others raise
        :class:`InventoryUnavailable` when called, before deleting anything
        (implementations check their arguments when called, not on the
        first batch, so that a caller can validate before it starts).
        """
        raise InventoryUnavailable(
            f"The session engine {self.engine!r} does not record when a session was last "
            f"active, so idle sessions cannot be told apart."
        )
