"""StockModelInventory: the database engines on a model without sessionkit's metadata."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.sessions.backends.db import SessionStore as DBStore
from django.utils import timezone

from django_sessionkit.inventory import Count, InventoryUnavailable, get_inventory
from django_sessionkit.inventory.model import ModelInventory
from django_sessionkit.inventory.stock_model import StockModelInventory
from tests.custom_session.models import CustomSession
from tests.model_sessions import STOCK_MODES, ids, model_fixtures, register_engine

pytestmark = pytest.mark.django_db

mode, make, inventory, users = model_fixtures(*STOCK_MODES)


@pytest.mark.parametrize(
    "engine",
    [
        "django.contrib.sessions.backends.db",
        "django.contrib.sessions.backends.cached_db",
        "tests.custom_session.backends",
    ],
)
def test_get_inventory_picks_it_for_a_model_without_metadata(engine):
    inventory = get_inventory(engine)

    assert type(inventory) is StockModelInventory
    assert not inventory.records_metadata
    assert not inventory.records_activity
    assert type(get_inventory("django_sessionkit.backends.db")) is ModelInventory


def test_the_metadata_inventory_refuses_a_model_without_metadata(monkeypatch):
    class CustomStore(DBStore):
        @classmethod
        def get_model_class(cls):
            return CustomSession

    engine = register_engine(monkeypatch, "custom", CustomStore)

    with pytest.raises(TypeError, match=r"custom_session\.CustomSession .*StockModelInventory"):
        ModelInventory(engine)
    assert type(get_inventory(engine)) is StockModelInventory


def test_stock_mode_streams_in_chunks(inventory, make, users):
    inventory.chunk_size = 2
    alice, bob, _ = users
    made = [
        make(user=alice if n % 3 == 0 else bob, expires=timedelta(days=n + 1)) for n in range(9)
    ]
    alices = [m.public_id for n, m in enumerate(made) if n % 3 == 0]
    alice_id = str(alice.pk)

    assert ids(inventory.page(users=[alice_id], ordering="expire_date")) == alices
    assert ids(inventory.page(users=[alice_id], ordering="expire_date", offset=1)) == alices[1:]
    assert ids(inventory.for_user(str(alice.pk))) == alices[::-1]
    assert inventory.count(users=[str(bob.pk)]) == Count(6)


def test_stats_without_metadata_streams(make, users, inventory):
    inventory.chunk_size = 2
    for n in range(5):
        make(user=users[n % 2])

    assert inventory.stats().busiest_user == (str(users[0].pk), 3)


def test_count_and_page_by_activity(inventory, make):
    now = timezone.now()
    for days in (10, 5, 0):
        make(last_activity=now - timedelta(days=days))

    # Without metadata activity is unknown: the filters match nothing.
    assert inventory.count() == Count(3)
    assert inventory.count(active_before=now + timedelta(days=1)) == Count(0)
    assert inventory.count(active_after=now - timedelta(days=365)) == Count(0)
    assert inventory.page(active_after=now - timedelta(days=365)) == []
    assert not inventory.records_activity


def test_clear_inactive_is_refused(inventory, make, users):
    now = timezone.now()
    for n in range(4):
        make(user=users[0], last_activity=now - timedelta(days=40 + n))
    make(last_activity=now - timedelta(days=31), expires=timedelta(days=-1))
    make(last_activity=now - timedelta(days=29))
    make(user=users[1])

    # Refused when called, before the first batch: nothing is deleted.
    with pytest.raises(InventoryUnavailable, match="last active"):
        inventory.clear_inactive(before=now - timedelta(days=30), batch_size=2)
    assert inventory.count() == Count(7)


def test_deleting_a_user_leaves_the_sessions_that_name_them(inventory, make, users, settings):
    """No row names its user: the deletion cascades to none, and nothing is evicted."""
    settings.SESSION_ENGINE = inventory.engine
    alice = users[0]
    made = make(user=alice, data={"cart": 1})
    store = inventory.store_class(made.key)
    assert store.load()["cart"] == 1  # on cached_db, fills the cache

    alice.delete()

    assert inventory.get(made.public_id) is not None
    assert inventory.store_class(made.key).load()["cart"] == 1
