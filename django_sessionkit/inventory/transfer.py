"""Copy the sessions of one engine into another, and keep the copies up to date.

``migratesessions`` runs a :class:`Transfer` over the batches of
:meth:`~django_sessionkit.inventory.base.SessionInventory.export`. Each copy it makes is
recorded in :class:`~django_sessionkit.models.CopiedSession`: a digest of the
session's key (never the key), a digest of the source session when copied and
a digest of the data written. That is what lets a later run tell the copies it
made from sessions the destination's own traffic created, and bring its copies
up to date without undoing anything that happened at the destination:

* a source session with no copy, and no session of that key at the
  destination, is copied (``copied``); one the destination already holds was
  not made by this command and is left alone (``existing``);
* a copy whose source changed since is overwritten (``updated``), one whose
  source is gone before its expiry (a logout, a revocation) is deleted
  (``removed``), one whose source is as it was is left as it is
  (``unchanged``);
* but only while the copy still holds the data it was written with. A copy
  that the destination's traffic changed or ended is *released*
  (``diverged``): it belongs to the destination now and is never written or
  recreated again, so a logout on the new engine is never undone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.contrib.sessions.backends.base import CreateError, SessionBase, UpdateError
from django.core.exceptions import FieldDoesNotExist
from django.db import models, router, transaction
from django.db.models import QuerySet
from django.utils import timezone

from django_sessionkit.backends.base import SessionKitStore
from django_sessionkit.inventory import extends, get_inventory, store_class_of
from django_sessionkit.inventory.base import ExportedSession, InventoryUnavailable
from django_sessionkit.users import user_pk

STOCK_DB = "django.contrib.sessions.backends.db"
STOCK_CACHE = "django.contrib.sessions.backends.cache"
SIGNED_COOKIES = "django.contrib.sessions.backends.signed_cookies"
#: Caches that live inside one process: sessions copied there would be gone
#: when the copying process exits, and no web process would ever see them.
PROCESS_LOCAL_CACHES = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
)
#: What can happen to a session, in the order reported.
OUTCOMES = (
    "copied",
    "updated",
    "removed",
    "unchanged",
    "existing",
    "diverged",
    "expired",
    "orphaned",
    "invalid",
    "unreadable",
)
#: A session with less time left than this is not worth copying: a cache
#: would store it with a zero TTL, i.e. not at all.
MIN_REMAINING = timedelta(seconds=1)
KEY_SALT = b"django_sessionkit.migratesessions:"


def key_digest(session_key: str) -> str:
    """Return the digest that names a copied session in the ledger."""
    return hashlib.sha256(KEY_SALT + session_key.encode()).hexdigest()


def data_digest(data: dict[str, Any]) -> str:
    """Return a digest of session *data* that survives a round trip through a serializer."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def source_digest(session: ExportedSession) -> str:
    """Return a digest of a source session: its data and its expiry, to the second."""
    expiry = session.expire_date.replace(microsecond=0).isoformat()
    return hashlib.sha256(f"{data_digest(session.data)}:{expiry}".encode()).hexdigest()


def copy_store_class(base: type[SessionBase]) -> type[SessionBase]:
    """Return a subclass of *base* that saves a session with the expiry it had at the source.

    ``set_expiry()`` would put ``_session_expiry`` into the session data and
    so turn a session that slides with each request into one that ends at a
    fixed date. Instead the expiry is the default of the two methods every
    engine asks on save; the data stays exactly as it was.
    """

    class CopyStore(base):  # type: ignore[valid-type, misc]
        copied_expire_date: datetime

        def get_expiry_date(self, **kwargs: Any) -> datetime:
            kwargs.setdefault("expiry", self.copied_expire_date)
            value: datetime = super().get_expiry_date(**kwargs)
            return value

        async def aget_expiry_date(self, **kwargs: Any) -> datetime:
            kwargs.setdefault("expiry", self.copied_expire_date)
            value: datetime = await super().aget_expiry_date(**kwargs)
            return value

        def get_expiry_age(self, **kwargs: Any) -> int:
            kwargs.setdefault("expiry", self.copied_expire_date)
            value: int = super().get_expiry_age(**kwargs)
            return value

        async def aget_expiry_age(self, **kwargs: Any) -> int:
            kwargs.setdefault("expiry", self.copied_expire_date)
            value: int = await super().aget_expiry_age(**kwargs)
            return value

    # SessionBase salts the encoded data with the class's qualified name: the
    # copy must sign exactly as the engine's own class, or it could not load it.
    CopyStore.__module__ = base.__module__
    CopyStore.__name__ = base.__name__
    CopyStore.__qualname__ = base.__qualname__
    return CopyStore


def session_model(engine: str) -> type[models.Model] | None:
    """Return the model a database-backed *engine* stores sessions in, None for others."""
    store = store_class_of(engine)
    if not extends(store, STOCK_DB):
        return None
    model: type[models.Model] = store.get_model_class()  # type: ignore[attr-defined]
    return model


def check_engines(source: str, destination: str) -> None:
    """Raise InventoryUnavailable, saying why, unless *source* can be copied into *destination*."""
    if source == destination:
        raise InventoryUnavailable(
            f"--from and --to name the same engine {source!r}: there is nothing to copy."
        )
    base = store_class_of(destination)
    store_class_of(source)
    if extends(base, SIGNED_COOKIES):
        raise InventoryUnavailable(
            f"--to {destination!r} keeps each session in the browser's cookie: the server "
            f"cannot write sessions there. Switching to it logs everybody out."
        )
    if extends(base, STOCK_CACHE):
        cache = getattr(base(), "_cache", None)
        backend = f"{type(cache).__module__}.{type(cache).__qualname__}"
        if backend in PROCESS_LOCAL_CACHES:
            raise InventoryUnavailable(
                f"--to {destination!r} keeps sessions in a {backend} cache, which lives inside "
                f"one process: sessions copied there by this command would be gone when it "
                f"exits. Set SESSION_CACHE_ALIAS to a shared cache."
            )
    source_model, destination_model = session_model(source), session_model(destination)
    if source_model is not None and source_model is destination_model:
        table = source_model._meta.db_table
        raise InventoryUnavailable(
            f"{source!r} and {destination!r} keep sessions in the same table {table!r}: "
            f"switching between them needs no copy."
        )
    if store_class_of(source) is base:
        raise InventoryUnavailable(
            f"{source!r} and {destination!r} are the same engine: there is nothing to copy."
        )


def existing_keys(engine: str, session_keys: list[str]) -> set[str]:
    """Return which of *session_keys* *engine* already stores, expired or not.

    A database engine answers in one query; any other engine is asked key by
    key through its ``SessionStore.exists()``.
    """
    model = session_model(engine)
    if model is not None:
        manager = model._default_manager.using(router.db_for_write(model))
        return set(manager.filter(pk__in=session_keys).values_list("pk", flat=True))
    store = store_class_of(engine)()
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


def live_data(engine: str, session_keys: list[str]) -> dict[str, dict[str, Any]]:
    """Return the data of those of *session_keys* that *engine* holds unexpired.

    A database engine answers in one query; any other engine loads each key
    through its ``SessionStore``.
    """
    if not session_keys:
        return {}
    model = session_model(engine)
    store = store_class_of(engine)
    if model is not None:
        decoder = store()
        rows = (
            model._default_manager.using(router.db_for_write(model))
            .filter(pk__in=session_keys, expire_date__gt=timezone.now())
            .values_list("pk", "session_data")
        )
        return {key: decoder.decode(session_data) for key, session_data in rows}
    found = {}
    for key in session_keys:
        session = store(session_key=key)
        data = session.load()
        if session.session_key is not None:
            found[key] = data
    return found


class Transfer:
    """Copy batches of sessions from *source* into *destination*, keeping the ledger.

    With *dry_run* every outcome is counted and nothing is written, the
    ledger included.
    """

    def __init__(self, source: str, destination: str, *, dry_run: bool = False) -> None:
        from django_sessionkit.models import CopiedSession

        self.source = source
        self.destination = destination
        self.dry_run = dry_run
        self.base = store_class_of(destination)
        self.store = copy_store_class(self.base)
        self.model = session_model(destination)
        self.ledger_model = CopiedSession
        manager = CopiedSession._default_manager.db_manager(router.db_for_write(CopiedSession))
        self.ledger: QuerySet[CopiedSession] = manager.filter(
            source=source, destination=destination
        )
        now = timezone.now()
        # The copies a run may have to remove: none on a first run.
        self.tracking = self.ledger.filter(released=False, expire_date__gt=now).exists()
        if not dry_run:
            self.ledger.filter(expire_date__lte=now).delete()  # nothing left to follow

    # -- the source's sessions ------------------------------------------------------

    def copy(self, batch: list[ExportedSession]) -> Counter[str]:
        """Copy or update the sessions of one batch; a database destination in one transaction."""
        counts: Counter[str] = Counter()
        now = timezone.now()
        live = []
        for session in batch:
            if session.expire_date - now < MIN_REMAINING:
                counts["expired"] += 1
            elif self.store(session_key=session.session_key).session_key != session.session_key:
                counts["invalid"] += 1  # the destination refuses the key and would make a new one
            else:
                live.append(session)
        atomic = (
            transaction.atomic(using=router.db_for_write(self.model))
            if self.model is not None and not self.dry_run
            else contextlib.nullcontext()
        )
        with atomic:
            orphans = missing_users(self.destination, live)
            if orphans:
                kept = [session for session in live if session.user_id not in orphans]
                counts["orphaned"] += len(live) - len(kept)
                live = kept
            digests = {session.session_key: key_digest(session.session_key) for session in live}
            recorded = self.ledger.filter(key_digest__in=digests.values())
            rows = {row.key_digest: row for row in recorded}
            fresh = [s for s in live if digests[s.session_key] not in rows]
            copies = [(s, rows[digests[s.session_key]]) for s in live if s not in fresh]
            self._copy_fresh(fresh, digests, counts)
            self._update_copies(copies, counts)
        return counts

    def _copy_fresh(
        self, sessions: list[ExportedSession], digests: dict[str, str], counts: Counter[str]
    ) -> None:
        # A database answers for a whole batch in one query; elsewhere
        # save(must_create=True) finds out in the same round trip as the write.
        if self.dry_run or self.model is not None:
            existing = existing_keys(self.destination, [s.session_key for s in sessions])
            counts["existing"] += len(existing)
            sessions = [session for session in sessions if session.session_key not in existing]
        if self.dry_run:
            counts["copied"] += len(sessions)
            return
        for session in sessions:
            try:
                self._write(session, must_create=True)
            except CreateError:
                counts["existing"] += 1
                continue
            self.ledger_model._default_manager.db_manager(self.ledger.db).create(
                source=self.source,
                destination=self.destination,
                key_digest=digests[session.session_key],
                source_digest=source_digest(session),
                copy_digest=data_digest(session.data),
                expire_date=session.expire_date,
            )
            counts["copied"] += 1

    def _update_copies(
        self, copies: list[tuple[ExportedSession, Any]], counts: Counter[str]
    ) -> None:
        followed = [(session, row) for session, row in copies if not row.released]
        counts["diverged"] += len(copies) - len(followed)
        current = live_data(self.destination, [session.session_key for session, _ in followed])
        for session, row in followed:
            data = current.get(session.session_key)
            if data is None or data_digest(data) != row.copy_digest:
                self._release(row, counts)
            elif source_digest(session) == row.source_digest:
                counts["unchanged"] += 1
            elif self.dry_run:
                counts["updated"] += 1
            else:
                try:
                    self._write(session, must_create=False)
                except UpdateError:  # ended at the destination meanwhile
                    self._release(row, counts)
                    continue
                row.source_digest = source_digest(session)
                row.copy_digest = data_digest(session.data)
                row.expire_date = session.expire_date
                row.copied_at = timezone.now()
                row.save(update_fields=["source_digest", "copy_digest", "expire_date", "copied_at"])
                counts["updated"] += 1

    def _write(self, session: ExportedSession, *, must_create: bool) -> None:
        store = self.store(session_key=session.session_key)
        store.copied_expire_date = session.expire_date  # type: ignore[attr-defined]
        # The data as the source had it, without a load: the session is written whole.
        store._session_cache = dict(session.data)  # type: ignore[attr-defined]
        if isinstance(store, SessionKitStore) and session.metadata is not None:
            store.set_copied_metadata(session.metadata)
        store.save(must_create=must_create)

    def _release(self, row: Any, counts: Counter[str]) -> None:
        """Leave a copy to the destination for good: its traffic changed or ended it."""
        counts["diverged"] += 1
        if not self.dry_run:
            row.released = True
            row.save(update_fields=["released"])

    # -- copies whose source is gone ----------------------------------------------------

    def remove_gone(self, batch_size: int) -> Counter[str]:
        """Delete the copies whose source session ended before its expiry, after the batches.

        The destination's sessions are read in batches and matched against the
        ledger; a copy still as it was written whose source is gone is deleted.
        A source that reached its expiry ended by itself: a copy alive past it
        was kept alive by the destination's traffic, and is released instead.
        """
        counts: Counter[str] = Counter()
        if not self.tracking:
            return counts
        for batch in get_inventory(self.destination).export(batch_size=batch_size):
            counts.update(self._remove_gone(batch))
        return counts

    def _remove_gone(self, batch: Iterable[ExportedSession]) -> Counter[str]:
        counts: Counter[str] = Counter()
        digests = {session.session_key: key_digest(session.session_key) for session in batch}
        now = timezone.now()
        rows = {
            row.key_digest: row
            for row in self.ledger.filter(key_digest__in=digests.values(), released=False)
        }
        candidates = [session for session in batch if digests[session.session_key] in rows]
        alive = live_data(self.source, [session.session_key for session in candidates])
        for session in candidates:
            if session.session_key in alive:
                continue  # the batches dealt with it
            row = rows[digests[session.session_key]]
            if row.expire_date <= now or data_digest(session.data) != row.copy_digest:
                self._release(row, counts)
                continue
            counts["removed"] += 1
            if not self.dry_run:
                self.base().delete(session.session_key)
                row.delete()
        return counts
