"""Sessions for the tests of the database inventories, on each kind of model.

Four modes: sessionkit's model behind Django's db and cached_db stores
(``metadata``, ``metadata_cached``), and Django's own table (``stock``,
``stock_cached``). :func:`model_fixtures` gives a test module the ``mode``,
``make``, ``inventory`` and ``users`` fixtures over the modes it tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.base import VALID_KEY_CHARS, SessionBase
from django.contrib.sessions.backends.cached_db import SessionStore as CachedDBStore
from django.contrib.sessions.backends.db import SessionStore as DBStore
from django.utils import timezone
from django.utils.crypto import get_random_string

from django_sessionkit.inventory import get_inventory
from django_sessionkit.inventory.model import has_metadata
from django_sessionkit.models import Session
from django_sessionkit.public_id import public_id
from tests.engines import register_engine

POSTGRESQL = "postgresql" in settings.DATABASES["default"]["ENGINE"]
METADATA_MODES = ("metadata", "metadata_cached")
STOCK_MODES = ("stock", "stock_cached")


class MetadataStore(DBStore):
    """A db store on sessionkit's model, independent of sessionkit's engine."""

    decoded = 0

    @classmethod
    def get_model_class(cls):
        return Session

    def decode(self, session_data):
        type(self).decoded += 1
        return super().decode(session_data)


class MetadataCachedStore(CachedDBStore):
    @classmethod
    def get_model_class(cls):
        return Session


STORES: dict[str, type[SessionBase]] = {
    "metadata": MetadataStore,
    "metadata_cached": MetadataCachedStore,
    "stock": DBStore,
    "stock_cached": CachedDBStore,
}


@dataclass
class Made:
    key: str
    public_id: str


class Maker:
    """Create sessions the way the mode's engine stores them."""

    def __init__(self, store_class):
        self.store_class = store_class
        self.model = store_class.get_model_class()
        self.metadata = has_metadata(self.model)

    def __call__(
        self,
        *,
        user=None,
        expires=timedelta(days=1),
        last_activity=None,
        ip=None,
        user_agent="",
        data=None,
        session_data=None,
    ):
        now = timezone.now()
        payload = dict(data or {})
        if user is not None:
            payload[SESSION_KEY] = str(user.pk)
        if self.metadata:
            store = self.store_class()
            key = get_random_string(32, VALID_KEY_CHARS)
            self.model.objects.create(
                session_key=key,
                session_data=store.encode(payload) if session_data is None else session_data,
                expire_date=now + expires,
                public_id=public_id(key),
                user=user,
                ip=ip,
                user_agent=user_agent,
                created_at=now - timedelta(hours=1),
                last_activity=last_activity or now,
            )
        else:
            store = self.store_class()
            store.update(payload)
            store.create()
            key = store.session_key
            changes = {"expire_date": now + expires}
            if session_data is not None:
                changes["session_data"] = session_data
            self.model.objects.filter(pk=key).update(**changes)
        return Made(key, public_id(key))


def model_fixtures(*modes: str) -> tuple[Any, Any, Any, Any]:
    """Return the fixtures ``mode`` (one test per mode of *modes*), ``make``,
    ``inventory`` (from ``get_inventory()``) and ``users`` (three users)."""

    @pytest.fixture(params=modes)
    def mode(request):
        return request.param

    @pytest.fixture
    def make(mode):
        return Maker(STORES[mode])

    @pytest.fixture
    def inventory(mode, monkeypatch):
        MetadataStore.decoded = 0
        return get_inventory(register_engine(monkeypatch, mode, STORES[mode]))

    @pytest.fixture
    def users(django_user_model):
        return [django_user_model.objects.create_user(username=f"user{n}") for n in range(3)]

    return mode, make, inventory, users


def ids(infos):
    return [info.public_id for info in infos]
