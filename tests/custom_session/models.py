from __future__ import annotations

from typing import Any

from django.contrib.sessions.base_session import AbstractBaseSession
from django.db import models


class CustomSession(AbstractBaseSession):
    """A session table of the project's own, without sessionkit's metadata."""

    @classmethod
    def get_session_store_class(cls) -> Any:
        from tests.custom_session.backends import SessionStore

        return SessionStore


class Basket(models.Model):
    """A row that points to a session: deleting the session must apply ``on_delete``."""

    session = models.ForeignKey(CustomSession, on_delete=models.CASCADE)

    def __str__(self) -> str:
        return f"Basket {self.pk}"
