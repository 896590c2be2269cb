"""Django's ``clearsessions``, batched, interruptible and observable, for every engine.

With ``django_sessionkit`` listed above ``django.contrib.sessions`` in
``INSTALLED_APPS`` (system check ``sessionkit.W001``) this command replaces
Django's. Without options it does what Django's does, delete the expired
sessions of ``SESSION_ENGINE``, but through the inventory's
``clear_expired()``: at most ``--batch-size`` sessions per short transaction,
never an unexpired session, and SIGINT / SIGTERM stop it between two batches.
The options add a dry run, totals (``--stats``), revoking one user's sessions,
deleting idle sessions, a time limit, JSON output and a health check. Output
carries counts only, never a session key.
"""

from __future__ import annotations

import json
import logging
import math
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from importlib import import_module
from types import FrameType
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.base import SessionBase
from django.contrib.sessions.management.commands.clearsessions import (
    Command as DjangoClearSessions,
)
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.management.base import CommandError, CommandParser, OutputWrapper
from django.db import DatabaseError
from django.utils import timezone

from django_sessionkit.inventory import SessionInventory, extends, get_inventory
from django_sessionkit.inventory.base import BatchSizer, InventoryUnavailable, Stats

logger = logging.getLogger(__name__)

SIGNED_COOKIES = "django.contrib.sessions.backends.signed_cookies"
DEFAULT_BATCH_SIZE = 10_000
#: Seconds a batch (one transaction) should take: batches are sized to it.
BATCH_SECONDS = 0.05
#: Seconds a run lasts before a progress bar appears (on a terminal).
PROGRESS_AFTER = 2.0
#: A sleep between batches is cut in slices this long, so that a signal ends it.
SLEEP_SLICE = 0.1
DURATION_UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
DURATION = re.compile(r"(?:\d+[wdhms])+")
DURATION_PART = re.compile(r"(\d+)([wdhms])")
#: What a session key looks like; scrubbed from error messages just in case.
KEY_LIKE = re.compile(r"\b[a-z0-9]{32,}\b")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def parse_duration(text: str) -> timedelta:
    """Return the duration of *text*: a number and a unit (w, d, h, m, s), possibly repeated.

    ``30d``, ``12h``, ``45m``, ``90s``, ``2w``, ``1d12h``. Raise ValueError otherwise.
    """
    value = text.strip().lower()
    if not DURATION.fullmatch(value):
        raise ValueError(
            f"{text!r} is not a duration; use a number and a unit, e.g. 30d, 12h, 45m, 90s, 2w."
        )
    seconds = sum(
        int(number) * DURATION_UNITS[unit] for number, unit in DURATION_PART.findall(value)
    )
    if seconds <= 0:
        raise ValueError(f"The duration {text!r} must be longer than zero.")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"The duration {text!r} is too long.") from None


def scrub(text: str) -> str:
    """Return *text* without anything that looks like a session key."""
    return KEY_LIKE.sub("<redacted>", text)


def _storage_errors() -> tuple[type[BaseException], ...]:
    """Errors a storage raises when it fails mid-run; reported as a CommandError."""
    errors: tuple[type[BaseException], ...] = (DatabaseError, OSError)
    try:
        from django_redis.exceptions import ConnectionInterrupted
        from redis.exceptions import RedisError
    except ImportError:
        return errors
    return (*errors, ConnectionInterrupted, RedisError)


@dataclass
class Run:
    """What a clearing run did so far."""

    expired: int = 0
    inactive: int = 0
    batches: int = 0
    #: "done", "time limit", or the name of the signal that stopped the run.
    stopped: str = "done"
    signal_number: int | None = None


class ProgressBar:
    """A one-line progress bar on a terminal, shown once a run has lasted PROGRESS_AFTER.

    The total is counted only then, so a short run costs no extra query.
    """

    WIDTH = 30

    def __init__(self, stream: OutputWrapper, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self.shown = False
        self.started = time.monotonic()
        self.label = ""
        self.total: int | None = None
        self.count_remaining: Callable[[], int] = lambda: 0

    def phase(self, label: str, count_remaining: Callable[[], int]) -> None:
        """Start counting a new kind of session (expired, then inactive)."""
        self.finish()
        self.label, self.count_remaining, self.total = label, count_remaining, None

    def update(self, done: int) -> None:
        if not self.enabled or time.monotonic() - self.started < PROGRESS_AFTER:
            return
        if self.total is None:
            self.total = done + self.count_remaining()
        self.total = max(self.total, done)
        share = done / self.total if self.total else 1.0
        filled = round(self.WIDTH * share)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        self.stream.write(
            f"\r{self.label}: [{bar}] {share:4.0%} {done:,}/{self.total:,}", ending=""
        )
        self.stream.flush()
        self.shown = True

    def finish(self) -> None:
        if self.shown:
            self.stream.write("")
            self.shown = False


class Command(DjangoClearSessions):
    help = (
        "Delete expired sessions in batches (each in its own short transaction), for any "
        "session engine; SIGINT or SIGTERM stop it between batches. Options add a dry run, "
        "totals, revoking a user's sessions, deleting idle sessions and a health check."
    )

    stop_signal: int | None = None

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--engine",
            metavar="DOTTED.PATH",
            help="Session engine to clean (default: SESSION_ENGINE).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Count what would be deleted; delete nothing.",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            metavar="N",
            help=f"Most sessions deleted per batch and transaction (default "
            f"{DEFAULT_BATCH_SIZE:,}).",
        )
        parser.add_argument(
            "--batch-time",
            type=float,
            metavar="SECONDS",
            help=f"How long a batch should take, about (default {BATCH_SECONDS}): batches "
            f"shrink or grow toward it, up to --batch-size. 0 makes every batch "
            f"--batch-size sessions.",
        )
        parser.add_argument(
            "--sleep",
            type=float,
            metavar="SECONDS",
            help="Pause between batches, to spare a busy database.",
        )
        parser.add_argument(
            "--max-runtime",
            type=float,
            metavar="SECONDS",
            help="Stop after the batch in progress once this long has passed (exit status 0).",
        )
        parser.add_argument(
            "--inactive-for",
            metavar="DURATION",
            help="Also delete sessions idle that long, e.g. 30d, 12h, 45m, 90s, 2w "
            "(engines that record activity only).",
        )
        parser.add_argument(
            "--stats",
            action="store_true",
            help="Print totals (sessions, active, expired, oldest expired, busiest user); "
            "delete nothing.",
        )
        parser.add_argument(
            "--user",
            metavar="USERNAME_OR_ID",
            help="Revoke every unexpired session of this user (a username, else a user id).",
        )
        parser.add_argument(
            "--fail-if-expired-over",
            type=int,
            metavar="N",
            help="Exit with an error when more than N expired sessions are waiting "
            "(counted before deleting); for monitoring.",
        )
        parser.add_argument(
            "--format", choices=("text", "json"), default="text", help="Output format."
        )

    # -- entry point ------------------------------------------------------------

    def handle(self, *args: Any, **options: Any) -> None:
        self.verbosity: int = options["verbosity"]
        self.as_json = options["format"] == "json"
        self._validate(options)
        engine: str = options["engine"] or settings.SESSION_ENGINE
        store_class = self._store_class(engine)
        if extends(store_class, SIGNED_COOKIES):
            self._signed_cookies(engine, options)
            return
        try:
            inventory: SessionInventory | None = get_inventory(engine)
            reason = ""
        except (InventoryUnavailable, ImproperlyConfigured) as error:
            inventory, reason = None, str(error)
        if options["stats"]:
            self._stats(engine, self._need(inventory, reason, "--stats"), options)
        elif options["user"] is not None:
            user = self._resolve_user(options["user"])
            self._revoke_user(engine, self._need(inventory, reason, "--user"), user, options)
        elif inventory is None:
            self._fallback(engine, store_class, reason, options)
        else:
            self._clear(engine, inventory, options)

    # -- checking the arguments, before anything is deleted ------------------------

    def _validate(self, options: dict[str, Any]) -> None:
        batch_size = options["batch_size"]
        if batch_size is not None and batch_size < 1:
            raise CommandError(f"--batch-size must be a positive number, not {batch_size}.")
        batch_time = options["batch_time"]
        if batch_time is not None and not 0 <= batch_time < math.inf:
            raise CommandError(f"--batch-time must be zero or more seconds, not {batch_time}.")
        sleep = options["sleep"]
        if sleep is not None and not sleep >= 0:
            raise CommandError(f"--sleep must be zero or more seconds, not {sleep}.")
        max_runtime = options["max_runtime"]
        if max_runtime is not None and not max_runtime > 0:
            raise CommandError(f"--max-runtime must be more than zero seconds, not {max_runtime}.")
        limit = options["fail_if_expired_over"]
        if limit is not None and limit < 0:
            raise CommandError(f"--fail-if-expired-over must be zero or more, not {limit}.")
        if options["inactive_for"] is not None:
            try:
                options["inactive_delta"] = parse_duration(options["inactive_for"])
            except ValueError as error:
                raise CommandError(f"--inactive-for: {error}") from None
        # Options that apply only to deleting expired (and idle) sessions in batches.
        batching = {
            "--batch-size": batch_size,
            "--batch-time": batch_time,
            "--sleep": sleep,
            "--max-runtime": max_runtime,
            "--inactive-for": options["inactive_for"],
        }
        given = ", ".join(name for name, value in batching.items() if value is not None)
        stats, user = options["stats"], options["user"] is not None
        if stats and user:
            raise CommandError("--stats and --user cannot be combined: --stats deletes nothing.")
        if (stats or user) and given:
            mode = "--stats" if stats else "--user"
            raise CommandError(
                f"{mode} cannot be combined with {given}, which apply to clearing "
                f"expired sessions in batches."
            )
        if user and limit is not None:
            raise CommandError(
                "--user cannot be combined with --fail-if-expired-over: --user revokes one "
                "user's sessions and counts no expired sessions."
            )

    def _store_class(self, engine: str) -> type[SessionBase]:
        try:
            module = import_module(engine)
        except ImportError as error:
            raise CommandError(f"Unknown session engine {engine!r}: {error}.") from None
        except ImproperlyConfigured as error:
            raise CommandError(f"The session engine {engine!r} cannot be used: {error}") from None
        store_class = getattr(module, "SessionStore", None)
        if not (isinstance(store_class, type) and issubclass(store_class, SessionBase)):
            raise CommandError(f"{engine!r} is not a session engine: it has no SessionStore.")
        return store_class

    @staticmethod
    def _need(inventory: SessionInventory | None, reason: str, option: str) -> SessionInventory:
        if inventory is None:
            raise CommandError(f"{option} cannot be used with this engine: {reason}")
        return inventory

    def _resolve_user(self, value: str) -> Any:
        """Return the user whose username is *value*, else whose primary key is *value*."""
        user_model = get_user_model()
        manager = user_model._default_manager
        try:
            return manager.get_by_natural_key(value)
        except user_model.DoesNotExist:
            pass
        pk_field = user_model._meta.pk
        try:
            pk = None if pk_field is None else pk_field.to_python(value)
        except (ValidationError, ValueError, TypeError):
            pk = None
        user = None if pk is None else manager.filter(pk=pk).first()
        if user is None:
            raise CommandError(f"No user has the username or id {value!r}; nothing was revoked.")
        return user

    # -- output ------------------------------------------------------------------

    def _say(self, message: str, level: int = 1) -> None:
        if not self.as_json and self.verbosity >= level:
            self.stdout.write(message)

    def _json(self, report: dict[str, Any]) -> None:
        if self.as_json:
            self.stdout.write(json.dumps(report))

    def _check_waiting(self, waiting: int | None, limit: int | None) -> None:
        if limit is not None and waiting is not None and waiting > limit:
            raise CommandError(
                f"{waiting} expired sessions were waiting to be cleared, more than "
                f"--fail-if-expired-over {limit}: is clearsessions running regularly?"
            )

    # -- engines without an inventory ------------------------------------------------

    def _signed_cookies(self, engine: str, options: dict[str, Any]) -> None:
        if options["stats"] or options["user"] is not None or options["inactive_for"]:
            option = (
                "--stats" if options["stats"] else "--user" if options["user"] else "--inactive-for"
            )
            raise CommandError(
                f"{option} cannot be used with {engine!r}: each session lives in the "
                f"browser's cookie and the server keeps no list of them."
            )
        note = (
            f"The session engine {engine!r} keeps each session in the browser's cookie, "
            f"which expires on its own: there is nothing to clear on the server."
        )
        self._say(note)
        self._json(
            {"engine": engine, "action": "clear", "dry_run": options["dry_run"], "expired": 0,
             "inactive": None, "note": note}
        )  # fmt: skip

    def _fallback(
        self,
        engine: str,
        store_class: type[SessionBase],
        reason: str,
        options: dict[str, Any],
    ) -> None:
        """Without an inventory, run the engine's own ``clear_expired()``, as Django does."""
        for option in ("inactive_for", "fail_if_expired_over"):
            if options[option] is not None:
                name = "--" + option.replace("_", "-")
                raise CommandError(f"{name} cannot be used with this engine: {reason}")
        if options["dry_run"]:
            raise CommandError(f"--dry-run cannot count the expired sessions: {reason}")
        try:
            store_class.clear_expired()
        except NotImplementedError:
            raise CommandError(
                f"Session engine {engine!r} doesn't support clearing expired sessions."
            ) from None
        note = f"{reason} Ran the engine's own clear_expired() instead, as Django's command does."
        self._say(note)
        self._json(
            {"engine": engine, "action": "clear", "dry_run": False, "expired": None,
             "inactive": None, "note": note}
        )  # fmt: skip

    # -- --stats ---------------------------------------------------------------------

    def _stats(self, engine: str, inventory: SessionInventory, options: dict[str, Any]) -> None:
        try:
            stats: Stats = inventory.stats()
        except NotImplementedError:
            raise CommandError(f"The inventory of {engine!r} cannot compute totals.") from None
        except _storage_errors() as error:
            raise CommandError(scrub(f"Could not read the totals: {error}")) from None
        oldest = stats.oldest_expired
        busiest = stats.busiest_user
        self._json(
            {
                "engine": engine,
                "action": "stats",
                "sessions": stats.sessions,
                "active": stats.active,
                "expired": stats.expired,
                "oldest_expired": None if oldest is None else oldest.isoformat(),
                "busiest_user": None
                if busiest is None
                else {"user_id": busiest[0], "sessions": busiest[1]},
                "exact": stats.exact,
            }
        )
        approximately = "" if stats.exact else " (estimated)"
        self._say(f"Sessions of {engine!r}{approximately}:")
        self._say(f"  sessions: {stats.sessions}")
        self._say(f"  active: {stats.active}")
        since = "" if oldest is None else f" (the oldest expired at {oldest.isoformat()})"
        self._say(f"  expired, waiting to be cleared: {stats.expired}{since}")
        if inventory.expires_itself:
            self._say(f"  ({inventory.expires_itself} deletes expired sessions itself.)")
        most = "none" if busiest is None else f"{busiest[1]} (user id {busiest[0]})"
        self._say(f"  most unexpired sessions held by one user: {most}")
        self._check_waiting(stats.expired, options["fail_if_expired_over"])

    # -- --user ------------------------------------------------------------------------

    def _revoke_user(
        self, engine: str, inventory: SessionInventory, user: Any, options: dict[str, Any]
    ) -> None:
        user_id = str(user.pk)
        who = f"user {user.get_username()!r} (id {user_id})"
        dry_run: bool = options["dry_run"]
        try:
            if dry_run:
                revoked = inventory.count(user_id=user_id, status="active").value
            else:
                revoked = inventory.revoke_user(user_id)
        except _storage_errors() as error:
            raise CommandError(scrub(f"Could not revoke the sessions of {who}: {error}")) from None
        self._json(
            {"engine": engine, "action": "revoke-user", "dry_run": dry_run, "user_id": user_id,
             "revoked": revoked}
        )  # fmt: skip
        verb = "Would revoke" if dry_run else "Revoked"
        self._say(f"{verb} {revoked} sessions of {who}.")

    # -- clearing --------------------------------------------------------------------------

    def _clear(self, engine: str, inventory: SessionInventory, options: dict[str, Any]) -> None:
        dry_run: bool = options["dry_run"]
        batch_size: int = options["batch_size"] or DEFAULT_BATCH_SIZE
        batch_time: float | None = options["batch_time"]
        if batch_time is None:
            batch_time = BATCH_SECONDS
        sizer = BatchSizer(batch_size, target=batch_time or None)
        limit: int | None = options["fail_if_expired_over"]
        delta: timedelta | None = options.get("inactive_delta")
        cutoff = None if delta is None else timezone.now() - delta
        report: dict[str, Any] = {
            "engine": engine,
            "action": "clear",
            "dry_run": dry_run,
            "batch_size": batch_size,
            "batch_time": batch_time,
        }
        inactive_batches: Iterator[int] | None = None
        if cutoff is not None:
            try:
                # Implementations refuse when called, before deleting anything.
                inactive_batches = inventory.clear_inactive(before=cutoff, batch_size=sizer)
            except InventoryUnavailable as error:
                raise CommandError(
                    f"--inactive-for cannot be used with this engine: {error}"
                ) from None
            report["inactive_before"] = cutoff.isoformat()

        if inventory.expires_itself and cutoff is None:
            note = (
                f"{inventory.expires_itself} deletes the expired sessions of {engine!r} "
                f"itself: there is nothing to clear."
            )
            self._say(note)
            self._json({**report, "expired": 0, "inactive": None, "note": note})
            return

        try:
            if dry_run:
                self._dry_run(inventory, cutoff, report, inactive_batches)
                waiting = report["expired"]
            else:
                waiting = None
                if limit is not None:
                    waiting = report["expired_waiting"] = inventory.count(status="expired").value
                self._delete(inventory, cutoff, sizer, options, report, inactive_batches)
        except _storage_errors() as error:
            raise CommandError(
                scrub(
                    f"Clearing stopped by an error: {type(error).__name__}: {error}. What was "
                    f"deleted before stays deleted; run the command again to carry on."
                )
            ) from None
        self._check_waiting(waiting, limit)

    def _dry_run(
        self,
        inventory: SessionInventory,
        cutoff: Any,
        report: dict[str, Any],
        inactive_batches: Iterator[int] | None,
    ) -> None:
        if inactive_batches is not None:
            close = getattr(inactive_batches, "close", None)
            if close is not None:
                close()
        expired = inventory.count(status="expired").value
        inactive = (
            None if cutoff is None else inventory.count(status="active", active_before=cutoff).value
        )
        self._json({**report, "expired": expired, "inactive": inactive})
        self._say(f"Would delete {expired} expired sessions.")
        if inactive is not None:
            self._say(
                f"Would delete {inactive} unexpired sessions idle since before "
                f"{cutoff.isoformat()}."
            )
        self._say("Dry run: nothing was deleted.")
        report["expired"] = expired

    def _delete(
        self,
        inventory: SessionInventory,
        cutoff: Any,
        sizer: BatchSizer,
        options: dict[str, Any],
        report: dict[str, Any],
        inactive_batches: Iterator[int] | None,
    ) -> None:
        sleep: float | None = options["sleep"]
        max_runtime: float | None = options["max_runtime"]
        started = time.monotonic()
        deadline = None if max_runtime is None else started + max_runtime
        run = Run()

        def pause(seconds: float) -> float:
            """--sleep when given, else the engine's own (on SQLite, room for writers)."""
            return inventory.pause_after(seconds) if sleep is None else sleep

        progress = ProgressBar(
            self.stderr, self.stderr.isatty() and not self.as_json and self.verbosity >= 1
        )
        phases: list[tuple[str, Callable[[], Iterator[int]], Callable[[], int]]] = [
            (
                "expired",
                lambda: inventory.clear_expired(batch_size=sizer),
                lambda: inventory.count(status="expired").value,
            )
        ]
        if inactive_batches is not None:
            phases.append(
                (
                    "inactive",
                    lambda: inactive_batches,
                    lambda: inventory.count(active_before=cutoff).value,
                )
            )
        try:
            with self._stop_on_signals():
                for kind, batches_of, count_remaining in phases:
                    progress.phase(f"Deleting {kind} sessions", count_remaining)
                    if not self._run_phase(
                        kind, batches_of(), run, progress, sizer, deadline, pause
                    ):
                        break
        except _storage_errors():
            progress.finish()
            self._report(run, report, time.monotonic() - started, cutoff)
            raise
        progress.finish()
        self._report(run, report, time.monotonic() - started, cutoff)
        if run.signal_number is not None:
            raise CommandError(
                f"Interrupted by {run.stopped} after {run.batches} batches; "
                f"run the command again to carry on.",
                returncode=128 + run.signal_number,
            )

    def _run_phase(
        self,
        kind: str,
        batches: Iterator[int],
        run: Run,
        progress: ProgressBar,
        sizer: BatchSizer,
        deadline: float | None,
        pause: Callable[[float], float],
    ) -> bool:
        """Run the batches of one phase; return whether the run goes on to the next.

        After each batch, *pause* (given the batch's time) says how long to wait.
        """
        done = 0
        try:
            for deleted in batches:
                run.batches += 1
                done += deleted
                setattr(run, kind, getattr(run, kind) + deleted)
                self._say(f"Batch {run.batches}: deleted {deleted} {kind} sessions.", level=2)
                progress.update(done)
                if self._stopped(run, deadline):
                    return False
                # A batch shorter than it asked for is the last one: no pause after it.
                seconds = pause(sizer.elapsed)
                if seconds and deleted >= sizer.asked:
                    self._pause(seconds, deadline)
                    if self._stopped(run, deadline):
                        return False
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()
        return True

    def _stopped(self, run: Run, deadline: float | None) -> bool:
        if self.stop_signal is not None:
            run.signal_number = self.stop_signal
            run.stopped = signal.Signals(self.stop_signal).name
            return True
        if deadline is not None and time.monotonic() >= deadline:
            run.stopped = "time limit"
            return True
        return False

    def _pause(self, seconds: float, deadline: float | None) -> None:
        end = time.monotonic() + seconds
        if deadline is not None:
            end = min(end, deadline)
        while self.stop_signal is None and (left := end - time.monotonic()) > 0:
            time.sleep(min(SLEEP_SLICE, left))

    @contextmanager
    def _stop_on_signals(self) -> Iterator[None]:
        """Turn SIGINT and SIGTERM into a request to stop after the batch in progress.

        A second signal raises KeyboardInterrupt at once, without a summary
        (a batch is one statement: what it deleted stays deleted). Handlers
        can only be set in the main thread; elsewhere (a command called from
        a thread) signals keep their usual effect.
        """
        self.stop_signal = None
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def request_stop(signum: int, frame: FrameType | None) -> None:
            if self.stop_signal is not None:
                raise KeyboardInterrupt
            self.stop_signal = signum

        previous = {signum: signal.signal(signum, request_stop) for signum in STOP_SIGNALS}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _report(self, run: Run, report: dict[str, Any], seconds: float, cutoff: Any) -> None:
        self._json(
            {
                **report,
                "expired": run.expired,
                "inactive": None if cutoff is None else run.inactive,
                "batches": run.batches,
                "seconds": round(seconds, 3),
                "stopped": run.stopped,
            }
        )
        deleted = f"{run.expired} expired"
        if cutoff is not None:
            deleted += f" and {run.inactive} inactive (idle since before {cutoff.isoformat()})"
        summary = f"Deleted {deleted} sessions in {run.batches} batches ({seconds:.1f} s)."
        if run.stopped == "time limit":
            summary += " Stopped at the time limit; run the command again to carry on."
        elif run.stopped != "done":
            summary += f" Stopped by {run.stopped}."
        self._say(summary)
