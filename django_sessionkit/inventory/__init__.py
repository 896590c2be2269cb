"""One read/revoke API over every session engine, chosen from the engine.

``get_inventory()`` looks at the ``SessionStore`` class of the engine, not at
its dotted path, so a project's subclass of a stock or sessionkit engine (or a
custom ``AbstractBaseSession`` model behind ``get_model_class()``) gets the
inventory of the engine it extends.
"""

from __future__ import annotations

import logging
import sys
from importlib import import_module

from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase
from django.core.exceptions import ImproperlyConfigured

from django_sessionkit.inventory.base import (
    BatchSizer,
    Count,
    InventoryUnavailable,
    Ordering,
    SessionInfo,
    SessionInventory,
    Status,
    storage_errors,
)

__all__ = [
    "BatchSizer",
    "Count",
    "InventoryUnavailable",
    "Ordering",
    "SessionInfo",
    "SessionInventory",
    "Status",
    "extends",
    "get_inventory",
    "storage_errors",
    "store_class_of",
]

logger = logging.getLogger(__name__)

OUR_REDIS_ENGINE = "django_sessionkit.backends.redis"


def store_class_of(engine: str) -> type[SessionBase]:
    """Return the ``SessionStore`` class of *engine*; InventoryUnavailable if it has none."""
    try:
        module = import_module(engine)
    except ImportError as exc:
        raise InventoryUnavailable(
            f"The session engine {engine!r} cannot be imported: {exc}."
        ) from exc
    except ImproperlyConfigured as exc:  # e.g. our redis engine without django-redis
        raise InventoryUnavailable(f"The session engine {engine!r} cannot be used: {exc}") from exc
    store_class = getattr(module, "SessionStore", None)
    if not isinstance(store_class, type) or not issubclass(store_class, SessionBase):
        raise InventoryUnavailable(
            f"The session engine {engine!r} has no SessionStore class, so its sessions "
            f"cannot be listed."
        )
    return store_class


def extends(store_class: type, module_name: str) -> bool:
    """Whether *store_class* extends ``module_name.SessionStore``.

    Only modules already imported are considered: a store that extends one
    has imported it, and the others (which may need optional packages such
    as django-redis) are never imported just to answer no.
    """
    module = sys.modules.get(module_name)
    base = getattr(module, "SessionStore", None)
    return isinstance(base, type) and issubclass(store_class, base)


def _stock_cache_inventory(engine: str) -> SessionInventory:
    from django_sessionkit.inventory.cache import StockCacheInventory, django_redis_cache

    django_redis_cache(settings.SESSION_CACHE_ALIAS, engine)  # or say why not
    return StockCacheInventory(engine)


def get_inventory(engine: str | None = None) -> SessionInventory:
    """Return the inventory of *engine* (default: ``settings.SESSION_ENGINE``).

    Raise :class:`InventoryUnavailable` when the engine keeps no list of its
    sessions that the server could read; the message says why.
    """
    engine = engine or settings.SESSION_ENGINE
    store_class = store_class_of(engine)

    if extends(store_class, "django.contrib.sessions.backends.signed_cookies"):
        raise InventoryUnavailable(
            f"The session engine {engine!r} stores each session in the browser's cookie; "
            f"the server keeps no list of them, so they cannot be listed or revoked.",
            nothing_to_clear=True,
        )
    if extends(store_class, "django.contrib.sessions.backends.db"):
        from django_sessionkit.inventory.model import ModelInventory, has_metadata
        from django_sessionkit.inventory.stock_model import StockModelInventory

        if has_metadata(store_class.get_model_class()):  # type: ignore[attr-defined]
            return ModelInventory(engine)
        return StockModelInventory(engine)
    if extends(store_class, "django.contrib.sessions.backends.file"):
        from django_sessionkit.inventory.file import FileInventory

        return FileInventory(engine)
    if extends(store_class, OUR_REDIS_ENGINE):
        from django_sessionkit.inventory.redis import RedisInventory

        return RedisInventory(engine)
    if extends(store_class, "django.contrib.sessions.backends.cache"):
        return _stock_cache_inventory(engine)
    raise InventoryUnavailable(
        f"django_sessionkit does not know how to list the sessions of the engine {engine!r}."
    )
