"""Copy the sessions of one engine into another, so that switching engines logs nobody out.

``python manage.py migratesessions --from ENGINE --to ENGINE`` reads the
unexpired sessions of the source in batches (its inventory's ``export()``) and writes
each one through the destination's own ``SessionStore``
(``inventory.transfer``). It records the copies it makes, so that a run after
the switch brings them up to date with the source (changes copied, logouts and
revocations carried over) without touching what the destination's own traffic
changed or ended, and without overwriting sessions the destination already had.
Output carries counts only, never a session key.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_sessionkit.inventory import SessionInventory, get_inventory, storage_errors
from django_sessionkit.inventory.base import ExportedSession, InventoryUnavailable
from django_sessionkit.inventory.transfer import OUTCOMES, Transfer, check_engines
from django_sessionkit.public_id import public_id

logger = logging.getLogger(__name__)

#: How the report names each outcome that is not a copy.
DESCRIPTIONS = {
    "updated": "updated (changed at the source since copied)",
    "removed": "removed (ended at the source since copied)",
    "unchanged": "already up to date",
    "existing": "skipped: already at the destination, not copied by this command",
    "diverged": "skipped: changed or ended at the destination since copied",
    "expired": "skipped: expired",
    "orphaned": "skipped: of users that no longer exist",
    "invalid": "skipped: with a key the destination refuses",
    "unreadable": "skipped: unreadable (see the log)",
}


def hide_keys(text: str, sessions: list[ExportedSession]) -> str:
    """Return *text* with every key of *sessions* replaced by its public id."""
    for session in sessions:
        if session.session_key in text:
            text = text.replace(session.session_key, public_id(session.session_key))
    return text


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """Return "1 session", "2 sessions", with thousands separators."""
    word = singular if count == 1 else plural_form or f"{singular}s"
    return f"{count:,} {word}"


class Command(BaseCommand):
    help = (
        "Copy the unexpired sessions of one session engine into another (key, data, expiry, "
        "user, IP, user agent, creation and activity), so that switching SESSION_ENGINE logs "
        "nobody out. Run again after the switch, it brings its copies up to date: changes "
        "and logouts at the source are carried over, sessions the destination changed or "
        "already had are left alone."
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
            help="Count what would be copied, updated or removed; write nothing.",
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

        inventory = self._validate(source, destination, batch_size)
        totals: Counter[str] = Counter()
        details: list[dict[str, int]] = []
        batch: list[ExportedSession] = []
        failures: tuple[type[BaseException], ...] = (*storage_errors(), InventoryUnavailable)
        try:
            transfer = Transfer(source, destination, dry_run=dry_run)
            for number, batch in enumerate(inventory.export(batch_size=batch_size), start=1):
                counts = transfer.copy(batch)
                totals.update(counts)
                details.append({"read": len(batch), **{name: counts[name] for name in OUTCOMES}})
                if verbosity >= 2 and not as_json:
                    self.stdout.write(f"Batch {number}: {self._describe(len(batch), counts)}")
            batch = []
            totals.update(transfer.remove_gone(batch_size))
        except failures as error:
            # The failed batch is not in totals: with a database destination it
            # was rolled back; with another it may be partly written, which the
            # next run finds recorded (or at the destination) and carries on from.
            reason = hide_keys(f"{type(error).__name__}: {error}", batch)
            done = plural(len(details), "complete batch", "complete batches")
            copied = plural(totals["copied"], "session")
            raise CommandError(
                f"Copying sessions stopped after {done}: {reason}. {copied} were copied "
                f"before. Run the command again to carry on; copies already made are "
                f"recorded and not made twice."
            ) from None
        totals["unreadable"] += inventory.unreadable

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
            lines = [
                f"{verb} {totals['copied']:,} of {plural(read, 'session')} from {source!r} to "
                f"{destination!r} in {plural(len(details), 'batch', 'batches')}."
            ]
            lines += [
                f"  {description}: {totals[name]:,}"
                for name, description in DESCRIPTIONS.items()
                if totals[name]
            ]
            if dry_run:
                lines.append("Dry run: nothing was written.")
            self.stdout.write("\n".join(lines))

    # -- validation -------------------------------------------------------------

    def _validate(self, source: str, destination: str, batch_size: int) -> SessionInventory:
        """Check every argument before anything is written; return the source's inventory."""
        if batch_size < 1:
            raise CommandError(f"--batch-size must be a positive number, not {batch_size}.")
        try:
            check_engines(source, destination)
        except InventoryUnavailable as error:
            raise CommandError(str(error)) from None
        try:
            return get_inventory(source)
        except InventoryUnavailable as error:
            raise CommandError(f"Cannot read the sessions of --from: {error}") from None

    # -- output -------------------------------------------------------------------

    @staticmethod
    def _describe(read: int, counts: Counter[str]) -> str:
        parts = [f"{counts[name]:,} {name}" for name in OUTCOMES[1:] if counts[name]]
        return ", ".join([f"{read:,} read", f"{counts['copied']:,} copied", *parts])
