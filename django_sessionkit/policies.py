"""What happens to sessions when something else changes: receivers of model signals.

:func:`evict_cached_sessions_of_deleted_user` hears of every user deletion
(``pre_delete`` of the user model and its proxies, connected in
``SessionKitConfig.ready()``) and hands it to the inventory of
``SESSION_ENGINE``: on cached_db, the cached copies of the user's sessions,
whose rows the deletion cascades away, get tombstones.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db.models import Model

from django_sessionkit.inventory import InventoryUnavailable, get_inventory

logger = logging.getLogger(__name__)


def evict_cached_sessions_of_deleted_user(
    sender: type[Model], instance: Model, **kwargs: Any
) -> None:
    """Tell the inventory of ``SESSION_ENGINE`` that the user *instance* is being deleted."""
    try:
        inventory = get_inventory()
    except InventoryUnavailable:
        return  # an engine that keeps no list of sessions keeps no copies of them either
    inventory.user_deleted(str(instance.pk))
