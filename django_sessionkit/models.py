from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.sessions.base_session import AbstractBaseSession
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from django_sessionkit.backends.base import USER_AGENT_MAX_LENGTH


class Session(AbstractBaseSession):
    """A session row that also records who, from where and when."""

    # Django's own expire_date index is left out: the (expire_date, key)
    # index below serves the same queries, and one index fewer is one write
    # fewer for every session saved or deleted.
    expire_date = models.DateTimeField(_("expire date"))
    public_id = models.CharField(_("public id"), max_length=64, unique=True, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="sessionkit_sessions",
        db_index=False,  # covered by the (user, last_activity) index
    )
    ip = models.GenericIPAddressField(_("IP address"), null=True, blank=True)
    user_agent = models.CharField(
        _("user agent"), max_length=USER_AGENT_MAX_LENGTH, blank=True, default=""
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now, editable=False)
    last_activity = models.DateTimeField(_("last activity"), default=timezone.now)

    class Meta(AbstractBaseSession.Meta):
        db_table = "sessionkit_session"
        verbose_name = _("session")  # type: ignore[assignment]
        verbose_name_plural = _("sessions")  # type: ignore[assignment]
        indexes = [
            models.Index(fields=["user", "-last_activity"], name="sessionkit_user_activity"),
            # (column, key): the admin's order and its deep pages, in either direction.
            models.Index(fields=["last_activity", "session_key"], name="sessionkit_activity_key"),
            models.Index(fields=["expire_date", "session_key"], name="sessionkit_expiry_key"),
        ]

    def __str__(self) -> str:
        # Django's default is the session key, which the admin would show in
        # places such as the delete confirmation of a user.
        return str(_("Session %(id)s") % {"id": self.public_id[:12]})

    @classmethod
    def get_session_store_class(cls) -> Any:
        from django_sessionkit.backends.db import SessionStore

        return SessionStore


class CopiedSession(models.Model):
    """A session that ``migratesessions`` copied, so that a later run can bring it up to date.

    A session is named by a digest of its key, never by the key. A later run
    overwrites the copy when the source changed and deletes it when the source
    is gone, but only while the copy is still what the command wrote: once the
    destination's own traffic changed or ended it, it is *released* and never
    touched again (a logout on the new engine is never undone).
    """

    source = models.CharField(_("source engine"), max_length=255)
    destination = models.CharField(_("destination engine"), max_length=255)
    key_digest = models.CharField(_("key digest"), max_length=64)
    #: The session at the source (data and expiry) when it was last copied.
    source_digest = models.CharField(_("source digest"), max_length=64)
    #: The data the copy was written with.
    copy_digest = models.CharField(_("copy digest"), max_length=64)
    released = models.BooleanField(_("released"), default=False)
    #: The session's expiry when it was last copied: after it, the row is forgotten.
    expire_date = models.DateTimeField(_("expire date"))
    copied_at = models.DateTimeField(_("copied"), default=timezone.now)

    class Meta:
        db_table = "sessionkit_copied_session"
        verbose_name = _("copied session")
        verbose_name_plural = _("copied sessions")
        constraints = [
            models.UniqueConstraint(
                fields=["source", "destination", "key_digest"], name="sessionkit_copied_unique"
            )
        ]

    def __str__(self) -> str:
        return str(_("Copy %(id)s") % {"id": self.key_digest[:12]})
