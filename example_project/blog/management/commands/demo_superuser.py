"""Create the superuser of the demo, once, and say how to log in."""

from __future__ import annotations

from typing import Any, cast

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Field
from django.utils.translation import gettext as _

DEFAULT_PORT = 8000


class Command(BaseCommand):
    help = "Create a demo superuser (admin/admin unless told otherwise) if it does not exist yet."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--username", default="admin", help="Username of the superuser (default: admin)."
        )
        parser.add_argument("--password", default="admin", help="Its password (default: admin).")
        parser.add_argument(
            "--port",
            type=int,
            default=DEFAULT_PORT,
            help=f"Port of the server, for the URLs it prints (default: {DEFAULT_PORT}).",
        )
        parser.add_argument(
            "--reset",
            action="store_true",
            help="Set the password (and superuser flags) of an existing user.",
        )

    def handle(
        self, *args: Any, username: str, password: str, reset: bool, port: int, **options: Any
    ) -> None:
        user_model = get_user_model()
        username = username.strip()
        if not username or not password:
            raise CommandError(_("The username and the password must not be empty."))
        try:
            username_field = user_model._meta.get_field(user_model.USERNAME_FIELD)
            cast("Field[Any, Any]", username_field).run_validators(username)
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from error

        manager = user_model._default_manager
        user = manager.filter(**{user_model.USERNAME_FIELD: username}).first()
        if user is None:
            # A demo password on purpose: create_superuser skips AUTH_PASSWORD_VALIDATORS.
            manager.create_superuser(
                **{user_model.USERNAME_FIELD: username, "email": "", "password": password}
            )
            self.stdout.write(
                self.style.SUCCESS(
                    _("Created the superuser %(username)s.") % {"username": username}
                )
            )
        elif reset:
            user.set_password(password)
            user.is_staff = user.is_superuser = user.is_active = True
            user.save()
            self.stdout.write(
                self.style.SUCCESS(
                    _("Reset the password of %(username)s.") % {"username": username}
                )
            )
        elif user.check_password(password):
            self.stdout.write(
                _("The user %(username)s already exists; nothing changed.") % {"username": username}
            )
        else:
            self.stdout.write(
                self.style.WARNING(
                    _(
                        "The user %(username)s already exists with another password; "
                        "nothing changed. Run again with --reset to set it."
                    )
                    % {"username": username}
                )
            )
            return

        self.stdout.write(_("Username: %(username)s") % {"username": username})
        self.stdout.write(_("Password: %(password)s") % {"password": password})
        site_url = f"http://127.0.0.1:{port}/"
        self.stdout.write(_("Site:  %(url)s") % {"url": site_url})
        self.stdout.write(_("Admin: %(url)s") % {"url": f"{site_url}admin/"})
        self.stdout.write(
            _("Start the server with: python manage.py runserver %(port)s") % {"port": port}
        )
