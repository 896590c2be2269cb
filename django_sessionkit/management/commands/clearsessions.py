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
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError, CommandParser, OutputWrapper
from django.db import DatabaseError
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from django_sessionkit.conf import conf
from django_sessionkit.inventory import SessionInventory, extends, get_inventory
from django_sessionkit.inventory.base import BatchSizer, InventoryUnavailable, Stats
from django_sessionkit.users import user_pk

logger = logging.getLogger(__name__)

SIGNED_COOKIES = "django.contrib.sessions.backends.signed_cookies"
DEFAULT_BATCH_SIZE = 10_000
#: The largest ``LIMIT`` the databases take (a signed 64-bit integer).
MAX_BATCH_SIZE = 2**63 - 1
#: Seconds a batch (one transaction) should take: batches are sized to it.
BATCH_SECONDS = 0.05
#: The longest --batch-time and --sleep: a batch is meant to be a short
#: transaction, and a pause of more than an hour is another schedule.
MAX_SECONDS = 3600
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
    quoted = {"value": repr(text)}
    if not DURATION.fullmatch(value):
        raise ValueError(
            _("%(value)s is not a duration; use a number and a unit, e.g. 30d, 12h, 45m, 90s, 2w.")
            % quoted
        )
    seconds = sum(
        int(number) * DURATION_UNITS[unit] for number, unit in DURATION_PART.findall(value)
    )
    if seconds <= 0:
        raise ValueError(_("The duration %(value)s must be longer than zero.") % quoted)
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(_("The duration %(value)s is too long.") % quoted) from None


def number(value: float, decimals: int | None = None) -> str:
    """Return *value* with thousands separators, as the active language writes numbers."""
    return number_format(value, decimal_pos=decimals, force_grouping=True)


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


def _plain(text: str) -> str:
    return text


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
        # Progress is not an error: stderr's own style would draw it as one.
        self.stream.write(
            f"\r{self.label}: [{bar}] {share:4.0%} {number(done)}/{number(self.total)}",
            style_func=_plain,
            ending="",
        )
        self.stream.flush()
        self.shown = True

    def finish(self) -> None:
        if self.shown:
            self.stream.write("", style_func=_plain)
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
            help=f"How long a batch should take, about (default {BATCH_SECONDS}, at most "
            f"{MAX_SECONDS:,}): batches shrink or grow toward it, up to --batch-size. 0 makes "
            f"every batch --batch-size sessions.",
        )
        parser.add_argument(
            "--sleep",
            type=float,
            metavar="SECONDS",
            help=f"Pause between batches, to spare a busy database (at most {MAX_SECONDS:,}).",
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
            "(engines that record activity only; longer than SESSIONKIT_ACTIVITY_INTERVAL).",
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
            help="Revoke every unexpired session of this user (a username, else a user id, "
            "also of a deleted user whose sessions remain).",
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
            self._revoke_user(engine, self._need(inventory, reason, "--user"), options)
        elif inventory is None:
            self._fallback(engine, store_class, reason, options)
        else:
            self._clear(engine, inventory, options)

    # -- checking the arguments, before anything is deleted ------------------------

    def _validate(self, options: dict[str, Any]) -> None:
        batch_size = options["batch_size"]
        if batch_size is not None and not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise CommandError(
                _("--batch-size must be a positive number, at most %(most)s, not %(value)s.")
                % {"most": number(MAX_BATCH_SIZE), "value": batch_size}
            )
        # Comparisons with nan are false, so nan fails these as inf does.
        for option in ("batch_time", "sleep"):
            seconds = options[option]
            if seconds is not None and not 0 <= seconds <= MAX_SECONDS:
                raise CommandError(
                    _("%(option)s must be from 0 to %(most)s seconds, not %(value)s.")
                    % {"option": self._flag(option), "most": number(MAX_SECONDS), "value": seconds}
                )
        max_runtime = options["max_runtime"]
        if max_runtime is not None and not 0 < max_runtime < math.inf:
            raise CommandError(
                _(
                    "--max-runtime must be a finite number of seconds, more than zero, not "
                    "%(value)s."
                )
                % {"value": max_runtime}
            )
        limit = options["fail_if_expired_over"]
        if limit is not None and limit < 0:
            raise CommandError(
                _("--fail-if-expired-over must be zero or more, not %(value)s.") % {"value": limit}
            )
        if options["inactive_for"] is not None:
            options["inactive_delta"] = self._inactive_delta(options["inactive_for"])
        # Options that apply only to deleting expired (and idle) sessions in batches.
        batching = ("batch_size", "batch_time", "sleep", "max_runtime", "inactive_for")
        given = ", ".join(self._flag(name) for name in batching if options[name] is not None)
        stats, user = options["stats"], options["user"] is not None
        if stats and user:
            raise CommandError(_("--stats and --user cannot be combined: --stats deletes nothing."))
        if (stats or user) and given:
            raise CommandError(
                _(
                    "%(mode)s cannot be combined with %(options)s, which apply to clearing "
                    "expired sessions in batches."
                )
                % {"mode": "--stats" if stats else "--user", "options": given}
            )
        if user and limit is not None:
            raise CommandError(
                _(
                    "--user cannot be combined with --fail-if-expired-over: --user revokes one "
                    "user's sessions and counts no expired sessions."
                )
            )

    @staticmethod
    def _flag(option: str) -> str:
        return "--" + option.replace("_", "-")

    @staticmethod
    def _inactive_delta(text: str) -> timedelta:
        """Return the idle time *text* names, or raise a CommandError saying why it cannot be."""
        try:
            delta = parse_duration(text)
        except ValueError as error:
            raise CommandError(_("--inactive-for: %(error)s") % {"error": error}) from None
        # No session was active before 1970 (Unix time); a cutoff further back
        # overflows dates (999999w) or, on some engines, timestamps.
        if delta.total_seconds() >= timezone.now().timestamp():
            raise CommandError(
                _(
                    "--inactive-for: the duration %(value)s is too long: it reaches back before "
                    "1970, and no session has been idle that long."
                )
                % {"value": repr(text)}
            )
        interval = conf.ACTIVITY_INTERVAL
        if delta <= timedelta(seconds=interval):
            raise CommandError(
                _(
                    "--inactive-for %(value)s is not longer than SESSIONKIT_ACTIVITY_INTERVAL "
                    "(%(interval)s s): activity is recorded at most once per interval, so it "
                    "would delete sessions in use right now."
                )
                % {"value": text, "interval": number(interval)}
            )
        return delta

    def _store_class(self, engine: str) -> type[SessionBase]:
        names = {"engine": repr(engine)}
        try:
            module = import_module(engine)
        except ImportError as error:
            raise CommandError(
                _("Unknown session engine %(engine)s: %(error)s.") % {**names, "error": error}
            ) from None
        except ImproperlyConfigured as error:
            raise CommandError(self._unusable(engine, error)) from None
        store_class = getattr(module, "SessionStore", None)
        if not (isinstance(store_class, type) and issubclass(store_class, SessionBase)):
            raise CommandError(
                _("%(engine)s is not a session engine: it has no SessionStore.") % names
            )
        return store_class

    @staticmethod
    def _unusable(engine: str, error: Exception) -> str:
        return _("The session engine %(engine)s cannot be used: %(error)s") % {
            "engine": repr(engine),
            "error": error,
        }

    @staticmethod
    def _need(inventory: SessionInventory | None, reason: str, option: str) -> SessionInventory:
        if inventory is None:
            raise CommandError(
                _("%(option)s cannot be used with this engine: %(reason)s")
                % {"option": option, "reason": reason}
            )
        return inventory

    # -- users ---------------------------------------------------------------------

    @staticmethod
    def _user(user_id: str) -> Any | None:
        """Return the user with the primary key *user_id* (as text), None if there is none."""
        pk = user_pk(user_id)
        return None if pk is None else get_user_model()._default_manager.filter(pk=pk).first()

    def _resolve_user(self, value: str, inventory: SessionInventory) -> tuple[str, Any | None]:
        """Return the user id *value* names and its user (None for a deleted user).

        *value* is a username, else the id of a user, else the id of a
        deleted user whose unexpired sessions *inventory* still holds (their
        data still names the user, on every engine but ours on a database).
        """
        user_model = get_user_model()
        if "\x00" not in value:  # PostgreSQL refuses NUL in a query; no username has one
            try:
                user = user_model._default_manager.get_by_natural_key(value)
            except user_model.DoesNotExist:
                pass
            else:
                return str(user.pk), user
        found = self._user(value)
        if found is not None:
            return str(found.pk), found
        pk = user_pk(value)
        if pk is not None and inventory.count(users=[str(pk)], status="active").value:
            return str(pk), None
        raise CommandError(
            _(
                "No user has the username or id %(value)s, and no unexpired session names "
                "such a user id; nothing was revoked."
            )
            % {"value": repr(value)}
        )

    # -- output ------------------------------------------------------------------

    def _say(self, message: str, level: int = 1) -> None:
        if not self.as_json and self.verbosity >= level:
            self.stdout.write(message)

    def _json(self, report: dict[str, Any]) -> None:
        if self.as_json:
            self.stdout.write(json.dumps(report))

    def _say_unreadable(self, unreadable: int) -> None:
        if unreadable:
            self._say(
                ngettext(
                    "Skipped %(count)s unreadable session; see the log.",
                    "Skipped %(count)s unreadable sessions; see the log.",
                    unreadable,
                )
                % {"count": number(unreadable)}
            )

    def _say_dry_run(self, *, revoked: bool = False) -> None:
        self._say(
            _("Dry run: nothing was revoked.") if revoked else _("Dry run: nothing was deleted.")
        )

    def _check_waiting(self, waiting: int | None, limit: int | None) -> None:
        if limit is not None and waiting is not None and waiting > limit:
            raise CommandError(
                ngettext(
                    "%(count)s expired session was waiting to be cleared, more than "
                    "--fail-if-expired-over %(limit)s: is clearsessions running regularly?",
                    "%(count)s expired sessions were waiting to be cleared, more than "
                    "--fail-if-expired-over %(limit)s: is clearsessions running regularly?",
                    waiting,
                )
                % {"count": number(waiting), "limit": number(limit)}
            )

    # -- engines without an inventory ------------------------------------------------

    def _signed_cookies(self, engine: str, options: dict[str, Any]) -> None:
        if options["stats"] or options["user"] is not None or options["inactive_for"]:
            option = (
                "--stats" if options["stats"] else "--user" if options["user"] else "--inactive-for"
            )
            raise CommandError(
                _(
                    "%(option)s cannot be used with %(engine)s: each session lives in the "
                    "browser's cookie and the server keeps no list of them."
                )
                % {"option": option, "engine": repr(engine)}
            )
        note = _(
            "The session engine %(engine)s keeps each session in the browser's cookie, "
            "which expires on its own: there is nothing to clear on the server."
        ) % {"engine": repr(engine)}
        self._say(note)
        if options["dry_run"]:
            self._say_dry_run()
        self._json(
            {"engine": engine, "action": "clear", "dry_run": options["dry_run"], "expired": 0,
             "inactive": None, "unreadable": 0, "note": note}
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
                raise CommandError(
                    _("%(option)s cannot be used with this engine: %(reason)s")
                    % {"option": self._flag(option), "reason": reason}
                )
        if options["dry_run"]:
            raise CommandError(
                _("--dry-run cannot count the expired sessions: %(reason)s") % {"reason": reason}
            )
        try:
            store_class.clear_expired()
        except NotImplementedError:
            raise CommandError(
                _("Session engine %(engine)s doesn't support clearing expired sessions.")
                % {"engine": repr(engine)}
            ) from None
        except ImproperlyConfigured as error:
            # e.g. an engine pointed at a cache it cannot work with.
            raise CommandError(self._unusable(engine, error)) from None
        except _storage_errors() as error:
            raise self._clearing_failed(error) from None
        note = _(
            "%(reason)s Ran the engine's own clear_expired() instead, as Django's command does."
        ) % {"reason": reason}
        self._say(note)
        self._json(
            {"engine": engine, "action": "clear", "dry_run": False, "expired": None,
             "inactive": None, "unreadable": 0, "note": note}
        )  # fmt: skip

    # -- --stats ---------------------------------------------------------------------

    def _stats(self, engine: str, inventory: SessionInventory, options: dict[str, Any]) -> None:
        try:
            stats: Stats = inventory.stats()
            busiest = stats.busiest_user
            holder = None if busiest is None else self._user(busiest[0])
        except NotImplementedError:
            raise CommandError(
                _("The inventory of %(engine)s cannot compute totals.") % {"engine": repr(engine)}
            ) from None
        except _storage_errors() as error:
            raise CommandError(
                scrub(_("Could not read the totals: %(error)s") % {"error": error})
            ) from None
        oldest = stats.oldest_expired
        username = None if holder is None else holder.get_username()
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
                else {"user_id": busiest[0], "username": username, "sessions": busiest[1]},
                "exact": stats.exact,
                "unreadable": inventory.unreadable,
            }
        )
        names = {"engine": repr(engine)}
        self._say(
            _("Sessions of %(engine)s:") % names
            if stats.exact
            else _("Sessions of %(engine)s (estimated):") % names
        )
        self._say(_("  sessions: %(count)s") % {"count": number(stats.sessions)})
        self._say(_("  active: %(count)s") % {"count": number(stats.active)})
        expired = {"count": number(stats.expired)}
        self._say(
            _("  expired, waiting to be cleared: %(count)s") % expired
            if oldest is None
            else _("  expired, waiting to be cleared: %(count)s (the oldest expired at %(moment)s)")
            % {**expired, "moment": oldest.isoformat()}
        )
        if inventory.expires_itself:
            self._say(
                _("  (%(storage)s deletes expired sessions itself.)")
                % {"storage": inventory.expires_itself}
            )
        if busiest is None:
            most = _("none")
        else:
            who = {"id": busiest[0], "username": repr(username)}
            most = _("%(count)s (%(who)s)") % {
                "count": number(busiest[1]),
                "who": _("deleted user, id %(id)s") % who
                if username is None
                else _("user %(username)s, id %(id)s") % who,
            }
        self._say(_("  most unexpired sessions held by one user: %(most)s") % {"most": most})
        self._say_unreadable(inventory.unreadable)
        self._check_waiting(stats.expired, options["fail_if_expired_over"])

    # -- --user ------------------------------------------------------------------------

    def _revoke_user(
        self, engine: str, inventory: SessionInventory, options: dict[str, Any]
    ) -> None:
        value: str = options["user"]
        dry_run: bool = options["dry_run"]
        try:
            user_id, user = self._resolve_user(value, inventory)
            if dry_run:
                revoked = inventory.count(users=[user_id], status="active").value
            else:
                revoked = inventory.revoke_user(user_id)
        except _storage_errors() as error:
            raise CommandError(
                scrub(
                    _("Could not revoke the sessions of %(value)s: %(error)s")
                    % {"value": repr(value), "error": error}
                )
            ) from None
        username = None if user is None else user.get_username()
        self._json(
            {"engine": engine, "action": "revoke-user", "dry_run": dry_run, "user_id": user_id,
             "username": username, "revoked": revoked, "unreadable": inventory.unreadable}
        )  # fmt: skip
        names = {"id": user_id, "username": repr(username)}
        who = (
            _("a deleted user (id %(id)s)") % names
            if user is None
            else _("user %(username)s (id %(id)s)") % names
        )
        counts = {"count": number(revoked), "who": who}
        if dry_run:
            message = ngettext(
                "Would revoke %(count)s session of %(who)s.",
                "Would revoke %(count)s sessions of %(who)s.",
                revoked,
            )
        else:
            message = ngettext(
                "Revoked %(count)s session of %(who)s.",
                "Revoked %(count)s sessions of %(who)s.",
                revoked,
            )
        self._say(message % counts)
        self._say_unreadable(inventory.unreadable)
        if dry_run:
            self._say_dry_run(revoked=True)

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
                    _("--inactive-for cannot be used with this engine: %(reason)s")
                    % {"reason": error}
                ) from None
            report["inactive_before"] = cutoff.isoformat()

        if inventory.expires_itself and cutoff is None:
            note = _(
                "%(storage)s deletes the expired sessions of %(engine)s itself: there is "
                "nothing to clear."
            ) % {"storage": inventory.expires_itself, "engine": repr(engine)}
            self._say(note)
            if dry_run:
                self._say_dry_run()
            self._json(
                {**report, "expired": 0, "inactive": None, "unreadable": inventory.unreadable,
                 "note": note}
            )  # fmt: skip
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
            raise self._clearing_failed(error) from None
        self._check_waiting(waiting, limit)

    @staticmethod
    def _clearing_failed(error: BaseException) -> CommandError:
        return CommandError(
            scrub(
                _(
                    "Clearing stopped by an error: %(type)s: %(error)s. What was deleted "
                    "before stays deleted; run the command again to carry on."
                )
                % {"type": type(error).__name__, "error": error}
            )
        )

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
        self._json(
            {**report, "expired": expired, "inactive": inactive,
             "unreadable": inventory.unreadable}
        )  # fmt: skip
        self._say(
            ngettext(
                "Would delete %(count)s expired session.",
                "Would delete %(count)s expired sessions.",
                expired,
            )
            % {"count": number(expired)}
        )
        if inactive is not None:
            self._say(
                ngettext(
                    "Would delete %(count)s unexpired session idle since before %(moment)s.",
                    "Would delete %(count)s unexpired sessions idle since before %(moment)s.",
                    inactive,
                )
                % {"count": number(inactive), "moment": cutoff.isoformat()}
            )
        self._say_unreadable(inventory.unreadable)
        self._say_dry_run()
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
        phases: list[tuple[str, str, Callable[[], Iterator[int]], Callable[[], int]]] = [
            (
                "expired",
                _("Deleting expired sessions"),
                lambda: inventory.clear_expired(batch_size=sizer),
                lambda: inventory.count(status="expired").value,
            )
        ]
        if inactive_batches is not None:
            phases.append(
                (
                    "inactive",
                    _("Deleting inactive sessions"),
                    lambda: inactive_batches,
                    lambda: inventory.count(active_before=cutoff).value,
                )
            )
        try:
            with self._stop_on_signals():
                for kind, label, batches_of, count_remaining in phases:
                    progress.phase(label, count_remaining)
                    if not self._run_phase(
                        kind, batches_of(), run, progress, sizer, deadline, pause
                    ):
                        break
        except _storage_errors():
            progress.finish()
            self._report(inventory, run, report, time.monotonic() - started, cutoff)
            raise
        progress.finish()
        self._report(inventory, run, report, time.monotonic() - started, cutoff)
        if run.signal_number is not None:
            # The one report of the signal: the summary above says what was done.
            raise CommandError(
                ngettext(
                    "Stopped by %(signal)s after %(count)s batch; run the command again to "
                    "carry on.",
                    "Stopped by %(signal)s after %(count)s batches; run the command again to "
                    "carry on.",
                    run.batches,
                )
                % {"signal": run.stopped, "count": number(run.batches)},
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
                self._say(self._batch_line(kind, run.batches, deleted), level=2)
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

    @staticmethod
    def _batch_line(kind: str, batch: int, deleted: int) -> str:
        if kind == "expired":
            message = ngettext(
                "Batch %(batch)s: deleted %(count)s expired session.",
                "Batch %(batch)s: deleted %(count)s expired sessions.",
                deleted,
            )
        else:
            message = ngettext(
                "Batch %(batch)s: deleted %(count)s inactive session.",
                "Batch %(batch)s: deleted %(count)s inactive sessions.",
                deleted,
            )
        return message % {"batch": number(batch), "count": number(deleted)}

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

    def _report(
        self,
        inventory: SessionInventory,
        run: Run,
        report: dict[str, Any],
        seconds: float,
        cutoff: Any,
    ) -> None:
        self._json(
            {
                **report,
                "expired": run.expired,
                "inactive": None if cutoff is None else run.inactive,
                "batches": run.batches,
                "seconds": round(seconds, 3),
                "stopped": run.stopped,
                "unreadable": inventory.unreadable,
            }
        )
        deleted = ngettext(
            "%(count)s expired session", "%(count)s expired sessions", run.expired
        ) % {"count": number(run.expired)}
        if cutoff is not None:
            inactive = ngettext(
                "%(count)s inactive session (idle since before %(moment)s)",
                "%(count)s inactive sessions (idle since before %(moment)s)",
                run.inactive,
            ) % {"count": number(run.inactive), "moment": cutoff.isoformat()}
            deleted = _("%(expired)s and %(inactive)s") % {"expired": deleted, "inactive": inactive}
        batches = ngettext("%(count)s batch", "%(count)s batches", run.batches) % {
            "count": number(run.batches)
        }
        summary = _("Deleted %(sessions)s in %(batches)s (%(seconds)s s).") % {
            "sessions": deleted,
            "batches": batches,
            "seconds": number(seconds, 1),
        }
        if run.stopped == "time limit":
            summary += " " + _("Stopped at the time limit; run the command again to carry on.")
        self._say(summary)
        self._say_unreadable(inventory.unreadable)
