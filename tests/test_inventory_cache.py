from __future__ import annotations

from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

import pytest
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.cache import SessionStore as StockCacheStore
from django.contrib.sessions.backends.cached_db import SessionStore as StockCachedDBStore
from django.core.cache import caches

from django_sessionkit.inventory.base import InventoryUnavailable, Stats
from django_sessionkit.inventory.cache import StockCacheInventory
from django_sessionkit.public_id import public_id

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=dt_timezone.utc)


def pids(infos: list[Any]) -> list[str]:
    return [info.public_id for info in infos]


@pytest.fixture
def stock(redis_cache, settings) -> type[StockCacheStore]:
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cache"
    settings.SESSION_CACHE_ALIAS = "redis"
    return StockCacheStore


@pytest.fixture
def stock_inventory(stock) -> StockCacheInventory:
    return StockCacheInventory("django.contrib.sessions.backends.cache")


def stock_save(store: Any, data: dict[str, Any], expiry: int | None = None) -> str:
    session = store()
    session.update(data)
    if expiry is not None:
        session.set_expiry(expiry)
    session.save()
    return str(session.session_key)


@pytest.fixture
def stock_population(stock) -> dict[str, str]:
    return {
        "anon": stock_save(stock, {"cart": 1}, expiry=1000),
        "u1a": stock_save(stock, {SESSION_KEY: 1}, expiry=2000),
        "u1b": stock_save(stock, {SESSION_KEY: "1"}, expiry=3000),
        "u2": stock_save(stock, {SESSION_KEY: "2"}, expiry=4000),
    }


def test_stock_count(stock_inventory, stock_population):
    assert stock_inventory.count() == stock_inventory.count(status="active")
    assert stock_inventory.count().value == 4
    assert stock_inventory.count().exact
    assert stock_inventory.count(status="expired").value == 0
    assert stock_inventory.count(users=["1"]).value == 2
    assert stock_inventory.count(authenticated=True).value == 3
    assert stock_inventory.count(authenticated=False).value == 1
    assert stock_inventory.count(ip="192.0.2.1").value == 0


def test_stock_page(stock_inventory, stock_population):
    order = [public_id(stock_population[n]) for n in ("anon", "u1a", "u1b", "u2")]

    assert pids(stock_inventory.page(ordering="expire_date")) == order
    assert pids(stock_inventory.page()) == order[::-1]
    assert pids(stock_inventory.page(offset=1, limit=2, ordering="expire_date")) == order[1:3]
    assert pids(stock_inventory.page(users=["1"], ordering="expire_date")) == order[1:3]
    assert pids(stock_inventory.page(authenticated=False)) == order[:1]
    assert stock_inventory.page(status="expired") == []
    page = stock_inventory.page(ordering="expire_date")
    assert [info.user_id for info in page] == [None, "1", "1", "2"]
    assert page[0].get_decoded() == {"cart": 1, "_session_expiry": 1000}
    now = datetime.now(dt_timezone.utc)
    assert now + timedelta(seconds=990) < page[0].expire_date <= now + timedelta(seconds=1000)
    assert not page[0].is_expired
    assert all(key not in repr(page) for key in stock_population.values())


def test_stock_get_for_user_and_revoke(stock_inventory, stock_population, stock):
    u1a, u1b = stock_population["u1a"], stock_population["u1b"]

    info = stock_inventory.get(public_id(u1a))
    assert (info.user_id, info.ip, info.last_activity) == ("1", None, None)
    assert stock_inventory.get("f" * 32) is None
    # Latest save (latest expiry) first: activity is not recorded.
    assert pids(stock_inventory.for_user("1")) == [public_id(u1b), public_id(u1a)]

    assert stock_inventory.revoke(public_id(u1a))
    assert not stock_inventory.revoke(public_id(u1a))
    assert not stock().exists(u1a)
    assert stock_inventory.revoke_user("2") == 1
    assert stock_inventory.revoke_user("1", keep=public_id(u1b)) == 0
    assert stock().exists(u1b)
    assert stock_inventory.count().value == 2


def test_stock_clear_expired_has_nothing_to_do(stock_inventory, stock_population):
    assert list(stock_inventory.clear_expired()) == []
    assert stock_inventory.count().value == 4


@pytest.mark.django_db
def test_stock_inventory_skips_cached_db_keys(stock_inventory, stock_population, settings):
    # cached_db's key prefix extends the cache engine's: SCAN matches its keys too.
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
    stock_save(StockCachedDBStore, {SESSION_KEY: "1"})

    assert stock_inventory.count().value == 4
    assert stock_inventory.count(users=["1"]).value == 2


def test_stock_inventory_needs_django_redis(settings):
    settings.SESSION_CACHE_ALIAS = "default"

    with pytest.raises(InventoryUnavailable, match="LocMemCache"):
        StockCacheInventory()


@pytest.fixture
def private_cache(settings, private_redis) -> str:
    """A django-redis cache alone on a private server: DBSIZE counts only its keys."""
    private_redis("private")
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cache"
    return "private"


def test_stock_count_estimate_samples_the_database(private_cache):
    for i in range(30):
        stock_save(StockCacheStore, {"n": i})
    caches[private_cache].set_many({f"other-{i}": i for i in range(10)})
    inventory = StockCacheInventory(cache_alias=private_cache)

    estimate = inventory.count(estimate=True)

    assert not estimate.exact
    assert 22 <= estimate.value <= 38
    assert inventory.count() == inventory.count(estimate=False)
    assert inventory.count().value == 30


def test_stock_filters_stats_and_clear_inactive(stock_inventory, stock_population):
    assert stock_inventory.count(users=["1", "2"]).value == 3
    assert stock_inventory.count(users=[]).value == 0
    assert pids(stock_inventory.page(users=["2"])) == [public_id(stock_population["u2"])]
    # No activity is recorded: the activity filters match nothing.
    assert not stock_inventory.records_activity
    assert stock_inventory.count(active_before=NOW).value == 0
    assert stock_inventory.page(active_after=datetime(2000, 1, 1, tzinfo=dt_timezone.utc)) == []

    assert stock_inventory.stats() == Stats(4, 4, 0, None, None)
    assert stock_inventory.expires_itself == "Redis"
    with pytest.raises(InventoryUnavailable, match="last active"):
        stock_inventory.clear_inactive(before=NOW)
    assert stock_inventory.count().value == 4
