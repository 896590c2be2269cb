"""The engine ``tests.custom_session.backends``: Django's db engine on CustomSession."""

from __future__ import annotations

from typing import Any

from django.contrib.sessions.backends.db import SessionStore as DBStore

from tests.custom_session.models import CustomSession


class SessionStore(DBStore):
    @classmethod
    def get_model_class(cls) -> Any:
        return CustomSession
