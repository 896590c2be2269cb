"""Inventory of Django's stock ``file`` engine.

The engine keeps one file per session in ``SESSION_FILE_PATH``, named
``SESSION_COOKIE_NAME`` + key, and records neither user nor activity: every
lookup streams through the directory with ``os.scandir`` (never a full
listing in memory) and reads and decodes each session file it looks at. The
file's modification time, which every save moves, stands in for the last
activity (the activity filters and ``clear_inactive`` use it). Count, page
and stats cost one pass over the directory; this engine suits small sites.
"""

from __future__ import annotations

import heapq
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.file import SessionStore as FileStore
from django.utils import timezone

from django_sessionkit.backends.base import decoded_data, is_session_key
from django_sessionkit.inventory.base import (
    BatchSizer,
    Count,
    ExportedSession,
    Filters,
    Ordering,
    SessionInfo,
    SessionInventory,
    Stats,
    batched,
    busiest,
    decoded_info,
)
from django_sessionkit.public_id import public_id as public_id_of

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Entry:
    """A session file as read from the directory, with its data decoded."""

    session_key: str
    path: str
    modified: datetime
    expire_date: datetime
    data: dict[str, Any]

    @property
    def user_id(self) -> str | None:
        value = self.data.get(SESSION_KEY)
        return None if value is None else str(value)


class FileInventory(SessionInventory):
    """Read and revoke the sessions of the stock file engine (or a subclass)."""

    records_metadata = False
    records_activity = True

    def __init__(self, engine: str) -> None:
        self.engine = engine
        self.store_class: type[FileStore] = import_module(engine).SessionStore

    # -- reading the directory ------------------------------------------------

    def _key(self, name: str, prefix: str) -> str | None:
        """Return the session key a file name stands for, None for other files.

        The engine's temporary files (``<prefix><key>_out_<random>``) and
        anything else in the directory fail the key check, as they do in the
        engine, which refuses keys outside ``VALID_KEY_CHARS``.
        """
        if not name.startswith(prefix):
            return None
        key = name[len(prefix) :]
        return key if is_session_key(key) else None

    def _expiry(self, data: dict[str, Any], modified: datetime, store: FileStore) -> datetime:
        """Return when the session expires, by the rules of the file engine.

        A ``_session_expiry`` date is the expiry; otherwise (absent, or 0 for
        "at browser close") the session lasts ``SESSION_COOKIE_AGE`` after the
        file's last write, as ``SessionStore._expiry_date()`` computes. An
        integer ``_session_expiry`` means that many seconds of inactivity, so
        it counts from the last write. (Django's own file engine never expires
        those on the server; they are removed here once the browser's cookie
        has expired.)
        """
        expiry = data.get("_session_expiry")
        if isinstance(expiry, str):
            try:
                parsed = datetime.fromisoformat(expiry)
            except ValueError:
                parsed = None
            if parsed is not None:
                if settings.USE_TZ and timezone.is_naive(parsed):
                    parsed = timezone.make_aware(parsed)
                elif not settings.USE_TZ and timezone.is_aware(parsed):
                    parsed = timezone.make_naive(parsed)
                return parsed
        if isinstance(expiry, (int, float)) and not isinstance(expiry, bool) and expiry:
            return modified + timedelta(seconds=expiry)
        return modified + timedelta(seconds=store.get_session_cookie_age())

    def _read(self, store: FileStore, path: str) -> dict[str, Any] | None:
        """Return the decoded data of *path*, None when the file is gone."""
        try:
            with open(path, encoding="ascii") as session_file:
                file_data = session_file.read()
        except (OSError, ValueError):
            return None
        if not file_data:
            # The engine's placeholder before its first write.
            return {}
        return decoded_data(store.decode, file_data, store.storage_path)

    def _entries(self) -> Iterator[_Entry]:
        """Yield every session file of the directory, one at a time."""
        store = self.store_class()
        tz = dt_timezone.utc if settings.USE_TZ else None
        with os.scandir(store.storage_path) as directory:
            for dir_entry in directory:
                key = self._key(dir_entry.name, store.file_prefix)
                if key is None:
                    continue
                entry = self._entry(store, dir_entry.path, key, tz)
                if entry is not None:
                    yield entry

    def _entry(self, store: FileStore, path: str, key: str, tz: Any) -> _Entry | None:
        try:
            mtime = os.stat(path).st_mtime
        except OSError:
            return None
        data = self._read(store, path)
        if data is None:
            return None
        modified = datetime.fromtimestamp(mtime, tz=tz)
        return _Entry(key, path, modified, self._expiry(data, modified, store), data)

    def _find(self, public_id: str) -> _Entry | None:
        """Return the file whose key has *public_id*, reading only that one."""
        store = self.store_class()
        tz = dt_timezone.utc if settings.USE_TZ else None
        with os.scandir(store.storage_path) as directory:
            for dir_entry in directory:
                key = self._key(dir_entry.name, store.file_prefix)
                if key is not None and public_id_of(key) == public_id:
                    return self._entry(store, dir_entry.path, key, tz)
        return None

    def _matching(self, filters: Filters) -> Iterator[_Entry]:
        """Yield the entries that pass *filters*; the file's mtime is its last activity."""
        now = timezone.now()
        return (entry for entry in self._entries() if filters.matches(self._info(entry), now))

    def _info(self, entry: _Entry) -> SessionInfo:
        return decoded_info(entry.session_key, entry.data, entry.expire_date, entry.modified)

    # -- SessionInventory -----------------------------------------------------

    def _count(self, filters: Filters, *, estimate: bool) -> Count:
        """Count session files; always exact (one pass over the directory)."""
        return Count(sum(1 for _ in self._matching(filters)))

    def _page(
        self, filters: Filters, *, offset: int, limit: int, ordering: Ordering
    ) -> list[SessionInfo]:
        """Return one page; memory grows with *offset* + *limit*, not with the directory."""
        attribute = ordering.lstrip("-").replace("last_activity", "modified")
        pick = heapq.nlargest if ordering.startswith("-") else heapq.nsmallest
        # The key breaks ties, so that pages neither skip nor repeat a session.
        best = pick(
            offset + limit,
            self._matching(filters),
            key=lambda e: (getattr(e, attribute), e.session_key),
        )
        return [self._info(entry) for entry in best[offset:]]

    def get(self, public_id: str) -> SessionInfo | None:
        """Return the session with *public_id*, expired or not (one pass over the names)."""
        entry = self._find(public_id)
        return None if entry is None else self._info(entry)

    def _user_entries(self, user_id: str) -> list[_Entry]:
        return list(self._matching(Filters("active", frozenset((user_id,)))))

    def for_user(self, user_id: str) -> list[SessionInfo]:
        """Return the unexpired sessions of *user_id*, last written first."""
        entries = sorted(self._user_entries(user_id), key=lambda e: e.modified, reverse=True)
        return [self._info(entry) for entry in entries]

    def _unlink(self, entry: _Entry) -> bool:
        try:
            os.unlink(entry.path)
        except FileNotFoundError:
            return False
        return True

    def revoke(self, public_id: str) -> bool:
        """Delete the file of the session with *public_id*; return whether it existed."""
        entry = self._find(public_id)
        return entry is not None and self._unlink(entry)

    def revoke_user(self, user_id: str, *, keep: str | None = None) -> int:
        """Delete the unexpired sessions of *user_id* except *keep*; return how many."""
        return sum(
            1
            for entry in self._user_entries(user_id)
            if (keep is None or public_id_of(entry.session_key) != keep) and self._unlink(entry)
        )

    def stats(self) -> Stats:
        """Return the totals, in one pass over the directory."""
        now = timezone.now()
        sessions = expired = 0
        oldest_expired: datetime | None = None
        per_user: Counter[str] = Counter()
        for entry in self._entries():
            sessions += 1
            if entry.expire_date <= now:
                expired += 1
                if oldest_expired is None or entry.expire_date < oldest_expired:
                    oldest_expired = entry.expire_date
            elif entry.user_id is not None:
                per_user[entry.user_id] += 1
        return Stats(
            sessions=sessions,
            active=sessions - expired,
            expired=expired,
            oldest_expired=oldest_expired,
            busiest_user=busiest(per_user),
        )

    def export(self, *, batch_size: int = 1000) -> Iterator[list[ExportedSession]]:
        """Yield the unexpired session files, in lists of at most *batch_size*."""
        now = timezone.now()
        sessions = (
            ExportedSession(entry.session_key, entry.data, entry.expire_date)
            for entry in self._entries()
            if entry.expire_date > now
        )
        return batched(sessions, batch_size)

    def clear_expired(self, *, batch_size: int | BatchSizer = 1000) -> Iterator[int]:
        """Delete expired session files, yielding the count after every *batch_size*.

        Each file's expiry is checked again just before it is deleted, so a
        session saved meanwhile (which moves its file's modification time) is
        kept.
        """
        batch_size = BatchSizer.of(batch_size).limit  # no transaction to keep short
        now = timezone.now()
        return self._delete_batches(lambda entry: entry.expire_date < now, batch_size)

    def clear_inactive(
        self, *, before: datetime, batch_size: int | BatchSizer = 1000
    ) -> Iterator[int]:
        """Delete session files last written before *before*, expired or not, in batches."""
        batch_size = BatchSizer.of(batch_size).limit  # no transaction to keep short
        return self._delete_batches(lambda entry: entry.modified < before, batch_size)

    def _delete_batches(self, doomed: Callable[[_Entry], bool], batch_size: int) -> Iterator[int]:
        """Delete the files *doomed* picks, streaming through the directory.

        Each file is read again just before it is deleted and deleted only if
        still doomed: a save meanwhile moves its expiry and modification time.
        """
        store = self.store_class()
        tz = dt_timezone.utc if settings.USE_TZ else None
        deleted = 0
        for entry in self._entries():
            if not doomed(entry):
                continue
            fresh = self._entry(store, entry.path, entry.session_key, tz)
            if fresh is None or not doomed(fresh) or not self._unlink(fresh):
                continue
            deleted += 1
            if deleted == batch_size:
                yield deleted
                deleted = 0
        if deleted:
            yield deleted
