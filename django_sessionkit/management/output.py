"""What ``clearsessions`` writes: sentences for people, or one JSON object for scripts.

Sentences go to standard output as the verbosity allows, translated, with the
active language's thousands separators; with ``--format json`` one JSON object
takes their place; on a terminal a progress bar goes to standard error. Nothing
here reads or deletes a session: the command hands over counts and user ids,
never a session key.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.core.management.base import CommandError, OutputWrapper
from django.utils.formats import number_format
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from django_sessionkit.cleanup import Phase, Run
from django_sessionkit.inventory import SessionInventory
from django_sessionkit.inventory.base import Stats

logger = logging.getLogger(__name__)

#: Seconds a run lasts before a progress bar appears (on a terminal).
PROGRESS_AFTER = 2.0
#: What a session key looks like; scrubbed from error messages just in case.
KEY_LIKE = re.compile(r"\b[a-z0-9]{32,}\b")


def number(value: float, decimals: int | None = None) -> str:
    """Return *value* with thousands separators, as the active language writes numbers."""
    return number_format(value, decimal_pos=decimals, force_grouping=True)


def scrub(text: str) -> str:
    """Return *text* without anything that looks like a session key."""
    return KEY_LIKE.sub("<redacted>", text)


def clearing_failed(error: BaseException) -> CommandError:
    """Return the error that reports a storage failure in the middle of clearing."""
    return CommandError(
        scrub(
            _(
                "Clearing stopped by an error: %(type)s: %(error)s. What was deleted "
                "before stays deleted; run the command again to carry on."
            )
            % {"type": type(error).__name__, "error": error}
        )
    )


def check_waiting(waiting: int | None, limit: int | None) -> None:
    """Raise a CommandError when more than *limit* expired sessions were *waiting*."""
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


def stopped_by_signal(run: Run, signal_number: int) -> CommandError:
    """Return the error that ends a run *signal_number* stopped: exit status 128 + the signal."""
    return CommandError(
        ngettext(
            "Stopped by %(signal)s after %(count)s batch; run the command again to carry on.",
            "Stopped by %(signal)s after %(count)s batches; run the command again to carry on.",
            run.batches,
        )
        % {"signal": run.stopped, "count": number(run.batches)},
        returncode=128 + signal_number,
    )


def _plain(text: str) -> str:
    return text


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


class Output:
    """The output of one ``clearsessions`` run: sentences by verbosity, or one JSON object.

    *report* is what every JSON object of the run starts with (engine, action, options).
    """

    def __init__(
        self, stdout: OutputWrapper, stderr: OutputWrapper, *, verbosity: int, as_json: bool
    ) -> None:
        self.stdout, self.stderr = stdout, stderr
        self.verbosity, self.as_json = verbosity, as_json
        self.bar: ProgressBar | None = None

    def say(self, message: str, level: int = 1) -> None:
        if not self.as_json and self.verbosity >= level:
            self.stdout.write(message)

    def json(self, report: dict[str, Any]) -> None:
        if self.as_json:
            self.stdout.write(json.dumps(report))

    def unreadable(self, unreadable: int) -> None:
        if unreadable:
            self.say(
                ngettext(
                    "Skipped %(count)s unreadable session; see the log.",
                    "Skipped %(count)s unreadable sessions; see the log.",
                    unreadable,
                )
                % {"count": number(unreadable)}
            )

    def dry_run(self, *, revoked: bool = False) -> None:
        self.say(
            _("Dry run: nothing was revoked.") if revoked else _("Dry run: nothing was deleted.")
        )

    def nothing_to_clear(self, note: str, report: dict[str, Any], unreadable: int) -> None:
        self.say(note)
        if report["dry_run"]:
            self.dry_run()
        self.json(
            {**report, "expired": 0, "inactive": None, "unreadable": unreadable, "note": note}
        )

    # -- clearing ------------------------------------------------------------------

    def would_delete(
        self,
        report: dict[str, Any],
        expired: int,
        inactive: int | None,
        cutoff: datetime | None,
        unreadable: int,
    ) -> None:
        """Report a dry run: *inactive* (None without a *cutoff*) idle sessions."""
        self.json({**report, "expired": expired, "inactive": inactive, "unreadable": unreadable})
        self.say(
            ngettext(
                "Would delete %(count)s expired session.",
                "Would delete %(count)s expired sessions.",
                expired,
            )
            % {"count": number(expired)}
        )
        if inactive is not None and cutoff is not None:
            self.say(
                ngettext(
                    "Would delete %(count)s unexpired session idle since before %(moment)s.",
                    "Would delete %(count)s unexpired sessions idle since before %(moment)s.",
                    inactive,
                )
                % {"count": number(inactive), "moment": cutoff.isoformat()}
            )
        self.unreadable(unreadable)
        self.dry_run()

    def phase(self, phase: Phase) -> None:
        """Hear that a run starts a phase; a progress bar follows it, on a terminal."""
        if self.bar is None:
            enabled = self.stderr.isatty() and not self.as_json and self.verbosity >= 1
            self.bar = ProgressBar(self.stderr, enabled)
        if phase.kind == "expired":
            label = _("Deleting expired sessions")
        else:
            label = _("Deleting inactive sessions")
        self.bar.phase(label, phase.remaining)

    def batch(self, run: Run, phase: Phase, deleted: int) -> None:
        """Hear of one batch: a line at verbosity 2, and the progress bar moves."""
        if phase.kind == "expired":
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
        self.say(message % {"batch": number(run.batches), "count": number(deleted)}, level=2)
        if self.bar is not None:
            self.bar.update(phase.done)

    def deleted(
        self, report: dict[str, Any], run: Run, cutoff: datetime | None, unreadable: int
    ) -> None:
        """Report what a run deleted, stopped early or not."""
        if self.bar is not None:
            self.bar.finish()
        self.json(
            {
                **report,
                "expired": run.expired,
                "inactive": None if cutoff is None else run.inactive,
                "batches": run.batches,
                "seconds": round(run.seconds, 3),
                "stopped": run.stopped,
                "unreadable": unreadable,
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
            "seconds": number(run.seconds, 1),
        }
        if run.stopped == "time limit":
            summary += " " + _("Stopped at the time limit; run the command again to carry on.")
        self.say(summary)
        self.unreadable(unreadable)

    # -- --stats and --user ------------------------------------------------------------

    def stats(
        self, engine: str, stats: Stats, username: str | None, inventory: SessionInventory
    ) -> None:
        """Report the totals of *engine*; *username* is the busiest user's, if still a user."""
        oldest, busiest = stats.oldest_expired, stats.busiest_user
        self.json(
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
                "unreadable": inventory.unreadable,
            }
        )
        self.say(_("Sessions of %(engine)s:") % {"engine": repr(engine)})
        self.say(_("  sessions: %(count)s") % {"count": number(stats.sessions)})
        self.say(_("  active: %(count)s") % {"count": number(stats.active)})
        expired = {"count": number(stats.expired)}
        self.say(
            _("  expired, waiting to be cleared: %(count)s") % expired
            if oldest is None
            else _("  expired, waiting to be cleared: %(count)s (the oldest expired at %(moment)s)")
            % {**expired, "moment": oldest.isoformat()}
        )
        if inventory.expires_itself:
            self.say(
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
        self.say(_("  most unexpired sessions held by one user: %(most)s") % {"most": most})
        self.unreadable(inventory.unreadable)

    def revoked(self, report: dict[str, Any], unreadable: int) -> None:
        """Report ``--user``: *report* holds the user id, the username (None for a deleted
        user), the number revoked (or that would be) and whether it is a dry run.
        """
        self.json({**report, "unreadable": unreadable})
        names = {"id": report["user_id"], "username": repr(report["username"])}
        who = (
            _("a deleted user (id %(id)s)") % names
            if report["username"] is None
            else _("user %(username)s (id %(id)s)") % names
        )
        revoked = report["revoked"]
        counts = {"count": number(revoked), "who": who}
        if report["dry_run"]:
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
        self.say(message % counts)
        self.unreadable(unreadable)
        if report["dry_run"]:
            self.dry_run(revoked=True)
