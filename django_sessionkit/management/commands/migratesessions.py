"""Copy the sessions of one engine into another, so that switching engines logs nobody out.

``python manage.py migratesessions --from ENGINE --to ENGINE`` reads the
unexpired sessions of the source in batches (``inventory.export``) and writes
each one through the destination's own ``SessionStore`` with
``save(must_create=True)``: a session the destination already holds is left
alone, which makes the command safe to run again. Output carries counts only,
never a session key.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from django.contrib.sessions.backends.base import CreateError, SessionBase
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, router, transaction
from django.utils import timezone

from django_sessionkit.backends.base import SessionStorageUnavailable
from django_sessionkit.inventory import extends
from django_sessionkit.inventory.base import InventoryUnavailable
from django_sessionkit.inventory.export import (
    SIGNED_COOKIES,
    STOCK_CACHE,
    ExportedSession,
    existing_keys,
    iter_sessions,
    missing_users,
    session_model,
    store_class,
)
from django_sessionkit.public_id import public_id

logger = logging.getLogger(__name__)

#: What can happen to a session read from the source, in the order reported.
OUTCOMES = ("copied", "existing", "expired", "orphaned", "invalid")
#: A session with less time left than this is not worth copying: a cache
#: would store it with a zero TTL, i.e. not at all.
MIN_REMAINING = timedelta(seconds=1)
#: Caches that live inside one process: sessions copied there by this command
#: would be gone when it exits, and no web process would ever see them.
PROCESS_LOCAL_CACHES = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
)


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
            return super().get_expiry_date(**kwargs)

        async def aget_expiry_date(self, **kwargs: Any) -> datetime:
            kwargs.setdefault("expiry", self.copied_expire_date)
            return await super().aget_expiry_date(**kwargs)

        def get_expiry_age(self, **kwargs: Any) -> int:
            kwargs.setdefault("expiry", self.copied_expire_date)
            return super().get_expiry_age(**kwargs)

        async def aget_expiry_age(self, **kwargs: Any) -> int:
            kwargs.setdefault("expiry", self.copied_expire_date)
            return await super().aget_expiry_age(**kwargs)

    # SessionBase salts the encoded data with the class's qualified name: the
    # copy must sign exactly as the engine's own class, or it could not load it.
    CopyStore.__module__ = base.__module__
    CopyStore.__name__ = base.__name__
    CopyStore.__qualname__ = base.__qualname__
    return CopyStore


def scrub(text: str, sessions: list[ExportedSession]) -> str:
    """Return *text* with every key of *sessions* replaced by its public id."""
    for session in sessions:
        if session.session_key in text:
            text = text.replace(session.session_key, public_id(session.session_key))
    return text


class Command(BaseCommand):
    help = (
        "Copy the unexpired sessions of one session engine into another (key, data, "
        "expiry), so that switching SESSION_ENGINE logs nobody out. Sessions the "
        "destination already holds are left alone: running it again copies nothing new."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--from", dest="source", required=True, metavar="ENGINE", help="Engine to copy from."
        )
        parser.add_argument(
            "--to", dest="destination", required=True, metavar="ENGINE", help="Engine to copy to."
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=1000,
            help="Sessions read and written per batch (default 1000).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Count what would be copied; write nothing.",
        )
        parser.add_argument(
            "--format", choices=("text", "json"), default="text", help="Output format."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        source: str = options["source"]
        destination: str = options["destination"]
        batch_size: int = options["batch_size"]
        dry_run: bool = options["dry_run"]
        verbosity: int = options["verbosity"]
        as_json = options["format"] == "json"

        batches = self._validate(source, destination, batch_size)
        base = store_class(destination)
        store = copy_store_class(base)
        model = session_model(destination)

        totals: Counter[str] = Counter()
        details: list[dict[str, int]] = []
        batch: list[ExportedSession] = []
        failures: tuple[type[BaseException], ...] = (
            DatabaseError,
            SessionStorageUnavailable,
            OSError,
            *self._redis_errors(),
        )
        try:
            for number, batch in enumerate(batches, start=1):
                counts = self._copy_batch(store, destination, model, batch, dry_run)
                totals.update(counts)
                details.append({"read": len(batch), **{name: counts[name] for name in OUTCOMES}})
                if verbosity >= 2 and not as_json:
                    self.stdout.write(f"Batch {number}: {self._describe(len(batch), counts)}")
        except failures as error:
            # The failed batch is not in totals: with a database destination it
            # was rolled back; with another it may be partly written, which the
            # next run skips as "already there".
            reason = scrub(f"{type(error).__name__}: {error}", batch)
            raise CommandError(
                f"Copying sessions stopped after {len(details)} complete batches: {reason}. "
                f"{totals['copied']} sessions were copied before. Run the command "
                f"again to copy the rest; sessions already copied are skipped."
            ) from None

        read = sum(detail["read"] for detail in details)
        if as_json:
            report: dict[str, Any] = {
                "from": source,
                "to": destination,
                "dry_run": dry_run,
                "batch_size": batch_size,
                "batches": len(details),
                "read": read,
                **{name: totals[name] for name in OUTCOMES},
            }
            if verbosity >= 2:
                report["batch_counts"] = details
            self.stdout.write(json.dumps(report))
        elif verbosity >= 1:
            verb = "Would copy" if dry_run else "Copied"
            self.stdout.write(
                f"{verb} {totals['copied']} of {read} sessions from {source!r} to "
                f"{destination!r} in {len(details)} batches "
                f"({self._describe(read, totals, skipped_only=True)})."
                + (" Dry run: nothing was written." if dry_run else "")
            )

    # -- validation -------------------------------------------------------------

    def _validate(self, source: str, destination: str, batch_size: int) -> Any:
        """Check every argument before anything is written; return the source's batches."""
        if batch_size < 1:
            raise CommandError(f"--batch-size must be a positive number, not {batch_size}.")
        if source == destination:
            raise CommandError(
                f"--from and --to name the same engine {source!r}: there is nothing to copy."
            )
        for engine in (source, destination):
            try:
                store_class(engine)
            except InventoryUnavailable as error:
                raise CommandError(str(error)) from None
        self._check_destination(destination)
        self._check_separate_storage(source, destination)
        try:
            return iter_sessions(source, batch_size=batch_size)
        except InventoryUnavailable as error:
            raise CommandError(f"Cannot read the sessions of --from: {error}") from None

    def _check_destination(self, destination: str) -> None:
        base = store_class(destination)
        if extends(base, SIGNED_COOKIES):
            raise CommandError(
                f"--to {destination!r} keeps each session in the browser's cookie: the "
                f"server cannot write sessions there. Switching to it logs everybody out."
            )
        if extends(base, STOCK_CACHE):
            cache = getattr(base(), "_cache", None)
            backend = f"{type(cache).__module__}.{type(cache).__qualname__}"
            if backend in PROCESS_LOCAL_CACHES:
                raise CommandError(
                    f"--to {destination!r} keeps sessions in a {backend} cache, which lives "
                    f"inside one process: sessions copied there by this command would be gone "
                    f"when it exits. Set SESSION_CACHE_ALIAS to a shared cache."
                )

    def _check_separate_storage(self, source: str, destination: str) -> None:
        source_model, destination_model = session_model(source), session_model(destination)
        if source_model is not None and source_model is destination_model:
            table = source_model._meta.db_table
            raise CommandError(
                f"{source!r} and {destination!r} keep sessions in the same table {table!r}: "
                f"switching between them needs no copy."
            )
        if store_class(source) is store_class(destination):
            raise CommandError(
                f"{source!r} and {destination!r} are the same engine: there is nothing to copy."
            )

    @staticmethod
    def _redis_errors() -> tuple[type[BaseException], ...]:
        try:
            from django_redis.exceptions import ConnectionInterrupted
            from redis.exceptions import RedisError
        except ImportError:
            return ()
        return (ConnectionInterrupted, RedisError)

    # -- copying ----------------------------------------------------------------

    def _copy_batch(
        self,
        store: type[SessionBase],
        destination: str,
        model: Any,
        batch: list[ExportedSession],
        dry_run: bool,
    ) -> Counter[str]:
        """Copy one batch; a database destination gets it in one transaction."""
        counts: Counter[str] = Counter()
        now = timezone.now()
        live = []
        for session in batch:
            if session.expire_date - now < MIN_REMAINING:
                counts["expired"] += 1
            elif store(session_key=session.session_key).session_key != session.session_key:
                counts["invalid"] += 1  # the destination refuses the key and would make a new one
            else:
                live.append(session)
        atomic = (
            transaction.atomic(using=router.db_for_write(model))
            if model is not None and not dry_run
            else contextlib.nullcontext()
        )
        with atomic:
            orphans = missing_users(destination, live)
            if orphans:
                kept = [session for session in live if session.user_id not in orphans]
                counts["orphaned"] += len(live) - len(kept)
                live = kept
            # A database answers for a whole batch in one query; elsewhere
            # save(must_create=True) finds out in the same round trip as the write.
            if dry_run or model is not None:
                existing = existing_keys(destination, [s.session_key for s in live])
                counts["existing"] += len(existing)
                live = [session for session in live if session.session_key not in existing]
            if dry_run:
                counts["copied"] += len(live)
                return counts
            for session in live:
                counts[self._copy(store, session)] += 1
        return counts

    @staticmethod
    def _copy(store_class: type[SessionBase], session: ExportedSession) -> str:
        """Write *session* unless the destination has it; return the outcome."""
        store = store_class(session_key=session.session_key)
        store.copied_expire_date = session.expire_date  # type: ignore[attr-defined]
        # The data as the source had it, without a load: the session is new here.
        store._session_cache = dict(session.data)  # type: ignore[attr-defined]
        try:
            store.save(must_create=True)
        except CreateError:
            return "existing"
        return "copied"

    @staticmethod
    def _describe(read: int, counts: Counter[str], *, skipped_only: bool = False) -> str:
        parts = [
            f"{counts['existing']} already at the destination",
            f"{counts['expired']} expired",
            f"{counts['orphaned']} of users that no longer exist",
            f"{counts['invalid']} with a key the destination refuses",
        ]
        if skipped_only:
            return "skipped: " + ", ".join(parts)
        return f"{read} read, {counts['copied']} copied, " + ", ".join(parts)
