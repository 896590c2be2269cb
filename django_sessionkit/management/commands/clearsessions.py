"""Django's ``clearsessions``, batched, interruptible and observable, for every engine.

With ``django_sessionkit`` listed above ``django.contrib.sessions`` in
``INSTALLED_APPS`` (system check ``sessionkit.W001``) this command replaces
Django's. Without options it does what Django's does, delete the expired
sessions of ``SESSION_ENGINE``, but through the inventory's
``clear_expired()``: at most ``--batch-size`` sessions per short transaction,
never an unexpired session, and SIGINT / SIGTERM stop it between two batches.
The options add a dry run, totals (``--stats``), revoking one user's sessions,
deleting idle sessions, a time limit, JSON output and a health check. The
batch loop is :func:`django_sessionkit.cleanup.clear_sessions`; this module
reads the arguments, checks them and writes the output, which carries counts
only, never a session key.
"""

from __future__ import annotations

import logging
import math
import re
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.management.commands.clearsessions import (
    Command as DjangoClearSessions,
)
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError, CommandParser
from django.utils import timezone
from django.utils.translation import gettext as _

from django_sessionkit import cleanup
from django_sessionkit.cleanup import BATCH_SECONDS, DEFAULT_BATCH_SIZE, MAX_BATCH_SIZE, MAX_SECONDS
from django_sessionkit.conf import activity_interval
from django_sessionkit.inventory import (
    InventoryUnavailable,
    SessionInventory,
    get_inventory,
    storage_errors,
    store_class_of,
)
from django_sessionkit.management.output import (
    Output,
    check_waiting,
    clearing_failed,
    number,
    scrub,
    stopped_by_signal,
)
from django_sessionkit.users import user_pk

logger = logging.getLogger(__name__)

DURATION_UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
DURATION = re.compile(r"(?:\d+[wdhms])+")
DURATION_PART = re.compile(r"(\d+)([wdhms])")


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


def flag(option: str) -> str:
    """Return the command-line flag of the option *option* (``--batch-size`` for batch_size)."""
    return "--" + option.replace("_", "-")


def validate(options: dict[str, Any]) -> None:
    """Raise a CommandError, before anything is read or deleted, for options that cannot be.

    Store the idle time ``--inactive-for`` names in ``options["inactive_delta"]``.
    """
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
                % {"option": flag(option), "most": number(MAX_SECONDS), "value": seconds}
            )
    max_runtime = options["max_runtime"]
    if max_runtime is not None and not 0 < max_runtime < math.inf:
        raise CommandError(
            _("--max-runtime must be a finite number of seconds, more than zero, not %(value)s.")
            % {"value": max_runtime}
        )
    limit = options["fail_if_expired_over"]
    if limit is not None and limit < 0:
        raise CommandError(
            _("--fail-if-expired-over must be zero or more, not %(value)s.") % {"value": limit}
        )
    if options["inactive_for"] is not None:
        options["inactive_delta"] = inactive_delta(options["inactive_for"])
    # Options that apply only to deleting expired (and idle) sessions in batches.
    batching = ("batch_size", "batch_time", "sleep", "max_runtime", "inactive_for")
    given = ", ".join(flag(name) for name in batching if options[name] is not None)
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


def inactive_delta(text: str) -> timedelta:
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
    interval = activity_interval()
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


def check_engine(engine: str) -> None:
    """Raise a CommandError unless *engine* names a session engine that can be used."""
    try:
        store_class_of(engine)
    except InventoryUnavailable as error:
        cause = error.__cause__
        names = {"engine": repr(engine), "error": cause}
        if isinstance(cause, ImportError):
            message = _("Unknown session engine %(engine)s: %(error)s.") % names
        elif isinstance(cause, ImproperlyConfigured):
            message = unusable(engine, cause)
        else:
            message = _("%(engine)s is not a session engine: it has no SessionStore.") % names
        raise CommandError(message) from None


def unusable(engine: str, error: Exception) -> str:
    """Return the message for an engine that cannot be used: misconfigured, say."""
    return _("The session engine %(engine)s cannot be used: %(error)s") % {
        "engine": repr(engine),
        "error": error,
    }


def find_user(user_id: str) -> Any | None:
    """Return the user with the primary key *user_id* (as text), None if there is none."""
    pk = user_pk(user_id)
    return None if pk is None else get_user_model()._default_manager.filter(pk=pk).first()


def resolve_user(value: str, inventory: SessionInventory) -> tuple[str, Any | None]:
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
    found = find_user(value)
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


class Command(DjangoClearSessions):
    help = (
        "Delete expired sessions in batches (each in its own short transaction), for any "
        "session engine; SIGINT or SIGTERM stop it between batches. Options add a dry run, "
        "totals, revoking a user's sessions, deleting idle sessions and a health check."
    )

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

    def handle(self, *args: Any, **options: Any) -> None:
        self.out = Output(
            self.stdout,
            self.stderr,
            verbosity=options["verbosity"],
            as_json=options["format"] == "json",
        )
        validate(options)
        engine: str = options["engine"] or settings.SESSION_ENGINE
        check_engine(engine)
        try:
            inventory = get_inventory(engine)
        except (InventoryUnavailable, ImproperlyConfigured) as error:
            self._without_inventory(engine, error, options)
        else:
            if options["stats"]:
                self._stats(engine, inventory, options)
            elif options["user"] is not None:
                self._revoke_user(engine, inventory, options)
            else:
                self._clear(engine, inventory, options)

    def _without_inventory(self, engine: str, error: Exception, options: dict[str, Any]) -> None:
        """Clear an engine that has no inventory, as Django does: by its own ``clear_expired()``.

        An engine that keeps no sessions on the server has nothing to clear.
        """
        nothing_to_clear = getattr(error, "nothing_to_clear", False)
        refused = ("stats", "user", "inactive_for", "fail_if_expired_over")
        for option in refused[:3] if nothing_to_clear else refused:
            if options[option] is not None and options[option] is not False:
                raise CommandError(
                    _("%(option)s cannot be used with this engine: %(reason)s")
                    % {"option": flag(option), "reason": error}
                )
        report = {"engine": engine, "action": "clear", "dry_run": options["dry_run"]}
        if nothing_to_clear:
            note = _("%(reason)s There is nothing to clear on the server.") % {"reason": error}
            self.out.nothing_to_clear(note, report, 0)
            return
        if options["dry_run"]:
            raise CommandError(
                _("--dry-run cannot count the expired sessions: %(reason)s") % {"reason": error}
            )
        try:
            store_class_of(engine).clear_expired()
        except NotImplementedError:
            raise CommandError(
                _("Session engine %(engine)s doesn't support clearing expired sessions.")
                % {"engine": repr(engine)}
            ) from None
        except ImproperlyConfigured as failure:
            # e.g. an engine pointed at a cache it cannot work with.
            raise CommandError(unusable(engine, failure)) from None
        except storage_errors() as failure:
            raise clearing_failed(failure) from None
        note = _(
            "%(reason)s Ran the engine's own clear_expired() instead, as Django's command does."
        ) % {"reason": error}
        self.out.say(note)
        self.out.json({**report, "expired": None, "inactive": None, "unreadable": 0, "note": note})

    def _stats(self, engine: str, inventory: SessionInventory, options: dict[str, Any]) -> None:
        try:
            stats = inventory.stats()
            busiest = stats.busiest_user
            holder = None if busiest is None else find_user(busiest[0])
        except NotImplementedError:
            raise CommandError(
                _("The inventory of %(engine)s cannot compute totals.") % {"engine": repr(engine)}
            ) from None
        except storage_errors() as error:
            raise CommandError(
                scrub(_("Could not read the totals: %(error)s") % {"error": error})
            ) from None
        self.out.stats(engine, stats, None if holder is None else holder.get_username(), inventory)
        check_waiting(stats.expired, options["fail_if_expired_over"])

    def _revoke_user(
        self, engine: str, inventory: SessionInventory, options: dict[str, Any]
    ) -> None:
        value: str = options["user"]
        dry_run: bool = options["dry_run"]
        try:
            user_id, user = resolve_user(value, inventory)
            if dry_run:
                revoked = inventory.count(users=[user_id], status="active").value
            else:
                revoked = inventory.revoke_user(user_id)
        except storage_errors() as error:
            raise CommandError(
                scrub(
                    _("Could not revoke the sessions of %(value)s: %(error)s")
                    % {"value": repr(value), "error": error}
                )
            ) from None
        username = None if user is None else user.get_username()
        self.out.revoked(
            {"engine": engine, "action": "revoke-user", "dry_run": dry_run, "user_id": user_id,
             "username": username, "revoked": revoked},
            inventory.unreadable,
        )  # fmt: skip

    # -- clearing --------------------------------------------------------------------------

    def _clear(self, engine: str, inventory: SessionInventory, options: dict[str, Any]) -> None:
        dry_run: bool = options["dry_run"]
        limit: int | None = options["fail_if_expired_over"]
        delta: timedelta | None = options.get("inactive_delta")
        if delta is not None and not inventory.records_activity:
            reason = _(
                "The session engine %(engine)s does not record when a session was last "
                "active, so idle sessions cannot be told apart."
            ) % {"engine": repr(engine)}
            raise CommandError(
                _("%(option)s cannot be used with this engine: %(reason)s")
                % {"option": "--inactive-for", "reason": reason}
            )
        cutoff = None if delta is None else timezone.now() - delta
        batch_time: float | None = options["batch_time"]
        report: dict[str, Any] = {
            "engine": engine,
            "action": "clear",
            "dry_run": dry_run,
            "batch_size": options["batch_size"] or DEFAULT_BATCH_SIZE,
            "batch_time": BATCH_SECONDS if batch_time is None else batch_time,
        }
        if cutoff is not None:
            report["inactive_before"] = cutoff.isoformat()
        elif inventory.expires_itself:
            note = _(
                "%(storage)s deletes the expired sessions of %(engine)s itself: there is "
                "nothing to clear."
            ) % {"storage": inventory.expires_itself, "engine": repr(engine)}
            self.out.nothing_to_clear(note, report, inventory.unreadable)
            return
        try:
            if dry_run:
                waiting = inventory.count(status="expired").value
                inactive = (
                    None
                    if cutoff is None
                    else inventory.count(status="active", active_before=cutoff).value
                )
                self.out.would_delete(report, waiting, inactive, cutoff, inventory.unreadable)
            else:
                waiting = None
                if limit is not None:
                    waiting = report["expired_waiting"] = inventory.count(status="expired").value
                self._delete(inventory, cutoff, options, report)
        except storage_errors() as error:
            raise clearing_failed(error) from None
        check_waiting(waiting, limit)

    def _delete(
        self,
        inventory: SessionInventory,
        cutoff: datetime | None,
        options: dict[str, Any],
        report: dict[str, Any],
    ) -> None:
        try:
            run = cleanup.clear_sessions(
                inventory,
                batch_size=report["batch_size"],
                batch_time=report["batch_time"],
                sleep=options["sleep"],
                max_runtime=options["max_runtime"],
                inactive_before=cutoff,
                on_phase=self.out.phase,
                on_batch=self.out.batch,
            )
        except cleanup.CleanupFailed as failure:
            self.out.deleted(report, failure.run, cutoff, inventory.unreadable)
            raise clearing_failed(failure.error) from None
        self.out.deleted(report, run, cutoff, inventory.unreadable)
        if run.signal_number is not None:
            # The one report of the signal: the summary above says what was done.
            raise stopped_by_signal(run, run.signal_number)
