"""django_sessionkit.backends.cached_db: Django's contract, plus activity in the cache entry.

The metadata written with the row is tested for both model engines in
test_backends_db.py; this module tests what the cache adds.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
import time_machine
from django.contrib.sessions.backends.cached_db import SessionStore as StockStore
from django.core.cache import caches
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_sessionkit.backends.base import RequestMetadata
from django_sessionkit.backends.cached_db import FORMAT, FORMAT_KEY, SessionStore
from django_sessionkit.models import Session
from tests.redis_server import private_server
from tests.session_behaviour import *  # noqa: F403
from tests.session_behaviour import NOW, close_async_connections

BROWSER = RequestMetadata(ip="203.0.113.7", user_agent="Firefox/140")


@pytest.fixture(
    params=["django.contrib.sessions.backends.cached_db", "django_sessionkit.backends.cached_db"]
)
def engine(request):
    return request.param


@pytest.fixture
def session_storage(transactional_db, settings):
    """The database and an empty session cache (local memory: it follows the frozen clock)."""
    caches[settings.SESSION_CACHE_ALIAS].clear()


@pytest.fixture(params=["default", "redis"])
def cache(request, settings):
    """The session cache: local memory, or django-redis on the real Redis server."""
    if request.param == "redis":
        request.getfixturevalue("redis_cache")
    settings.SESSION_CACHE_ALIAS = request.param
    caches[request.param].clear()
    yield caches[request.param]
    close_async_connections()


@pytest.fixture
def outage(settings):
    """SESSION_CACHE_ALIAS names a django-redis cache on a private Redis server.

    Call the returned function to stop the server: the cache fails from then on.
    """
    server = private_server()
    server.start()
    settings.CACHES = {
        **settings.CACHES,
        "private": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": server.url,
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
        },
    }
    settings.SESSION_CACHE_ALIAS = "private"
    yield server.stop
    server.stop()
    close_async_connections()


def save_new(data, metadata=BROWSER):
    store = SessionStore()
    store.set_request_metadata(metadata)
    store.update(data)
    store.save()
    return store.session_key


def row(key):
    return Session.objects.get(session_key=key)


@pytest.mark.django_db
def test_cache_hit_knows_last_activity_without_a_query(cache):
    with time_machine.travel(NOW, tick=False):
        key = save_new({"cart": [1]})

    store = SessionStore(key)
    with CaptureQueriesContext(connection) as queries:
        assert store["cart"] == [1]

    assert len(queries) == 0
    assert store.loaded_activity == NOW


@pytest.mark.django_db
def test_cache_entry_carries_data_activity_and_metadata(cache):
    with time_machine.travel(NOW, tick=False):
        key = save_new({"cart": [1]})

    entry = cache.get(SessionStore.cache_key_prefix + key)
    assert entry == {
        FORMAT_KEY: FORMAT,
        "data": {"cart": [1]},
        "last_activity": NOW,
        "metadata": (BROWSER.ip, BROWSER.user_agent),
    }


@pytest.mark.django_db
def test_cache_miss_reads_the_row_and_refills_the_entry(cache):
    with time_machine.travel(NOW, tick=False):
        key = save_new({"cart": [1]})
    cache.clear()

    first = SessionStore(key)
    with CaptureQueriesContext(connection) as queries:
        assert first["cart"] == [1]
    second = SessionStore(key)
    with CaptureQueriesContext(connection) as queries_after:
        assert second["cart"] == [1]

    assert (len(queries), len(queries_after)) == (1, 0)
    assert first.loaded_activity == second.loaded_activity == NOW


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_async_cache_hit_and_miss_know_last_activity(cache):
    with time_machine.travel(NOW, tick=False):
        store = SessionStore()
        store.set_request_metadata(BROWSER)
        await store.aset("cart", [1])
        await store.asave()
    hit = SessionStore(store.session_key)
    assert await hit.aget("cart") == [1]
    await cache.aclear()

    miss = SessionStore(store.session_key)
    assert await miss.aget("cart") == [1]

    assert hit.loaded_activity == miss.loaded_activity == NOW
    assert await SessionStore(store.session_key).aget("cart") == [1]  # refilled


@pytest.mark.django_db
def test_cycle_key_on_a_cache_hit_outside_a_request_keeps_ip_and_user_agent(cache):
    key = save_new({"cart": [1]})
    offline = SessionStore(key)
    with CaptureQueriesContext(connection) as queries:
        offline.load()
    assert len(queries) == 0

    offline.cycle_key()

    saved = row(offline.session_key)
    assert (saved.ip, saved.user_agent) == (BROWSER.ip, BROWSER.user_agent)


@pytest.mark.django_db
def test_reads_entries_written_by_djangos_cached_db(cache):
    # Switching from Django's cached_db logs nobody out: the bare dict is read.
    stock = StockStore()
    stock["_auth_user_id"] = "7"
    stock.save()

    ours = SessionStore(stock.session_key)
    with CaptureQueriesContext(connection) as queries:
        assert ours["_auth_user_id"] == "7"

    assert len(queries) == 0
    assert ours.loaded_activity is None  # unknown: no activity write is due
    assert not ours.activity_due(NOW)


@pytest.mark.django_db
def test_touch_activity_updates_the_row_and_evicts_the_entry(cache):
    with time_machine.travel(NOW, tick=False):
        key = save_new({"cart": [1]})
    store = SessionStore(key)
    store.load()
    later = NOW + timedelta(minutes=2)

    store.touch_activity(later)

    assert row(key).last_activity == later
    assert SessionStore.cache_key_prefix + key not in cache
    reloaded = SessionStore(key)
    assert reloaded["cart"] == [1]
    assert reloaded.loaded_activity == later
    assert cache.get(SessionStore.cache_key_prefix + key)["last_activity"] == later


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_atouch_activity_updates_the_row_and_evicts_the_entry(cache):
    with time_machine.travel(NOW, tick=False):
        store = SessionStore()
        await store.aset("cart", [1])
        await store.asave()
    later = NOW + timedelta(minutes=2)

    await store.atouch_activity(later)

    saved = await Session.objects.aget(session_key=store.session_key)
    assert saved.last_activity == later
    assert await cache.aget(SessionStore.cache_key_prefix + store.session_key) is None
    reloaded = SessionStore(store.session_key)
    assert await reloaded.aget("cart") == [1]
    assert reloaded.loaded_activity == later


@pytest.mark.django_db
def test_touch_activity_does_not_resurrect_a_session_flushed_meanwhile(cache):
    key = save_new({"cart": [1]})
    store = SessionStore(key)
    store.load()
    SessionStore(key).flush()  # a concurrent logout

    store.touch_activity(NOW)

    assert SessionStore(key).load() == {}
    assert SessionStore.cache_key_prefix + key not in cache


@pytest.mark.django_db
def test_delete_evicts_the_entry(cache):
    key = save_new({"cart": [1]})

    SessionStore(key).delete()

    assert SessionStore.cache_key_prefix + key not in cache
    assert not Session.objects.filter(session_key=key).exists()


# The cache failing: the database is written, the failure logged, not raised


@pytest.mark.django_db
def test_save_with_the_cache_down_writes_the_row_and_logs(outage, caplog):
    key = save_new({"cart": [1]})
    store = SessionStore(key)
    store["cart"] = [2]
    outage()

    with caplog.at_level(logging.ERROR):
        store.save()

    assert row(key).get_decoded() == {"cart": [2]}
    assert "Error saving to cache" in caplog.text
    assert key not in caplog.text


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_asave_with_the_cache_down_writes_the_row_and_logs(outage, caplog):
    store = SessionStore()
    await store.aset("cart", [1])
    await store.asave()
    outage()
    await store.aset("cart", [2])

    with caplog.at_level(logging.ERROR):
        await store.asave()

    saved = await Session.objects.aget(session_key=store.session_key)
    assert saved.get_decoded() == {"cart": [2]}
    assert "Error saving to cache" in caplog.text


@pytest.mark.django_db
def test_touch_activity_with_the_cache_down_writes_the_row_and_logs(outage, caplog):
    key = save_new({"cart": [1]})
    store = SessionStore(key)
    store.load()
    outage()

    with caplog.at_level(logging.ERROR, logger="django_sessionkit.backends.cached_db"):
        store.touch_activity(NOW)

    assert row(key).last_activity == NOW
    assert "Error evicting a session from cache" in caplog.text
    assert key not in caplog.text


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_atouch_activity_with_the_cache_down_writes_the_row_and_logs(outage, caplog):
    store = SessionStore()
    await store.aset("cart", [1])
    await store.asave()
    outage()

    with caplog.at_level(logging.ERROR, logger="django_sessionkit.backends.cached_db"):
        await store.atouch_activity(NOW)

    saved = await Session.objects.aget(session_key=store.session_key)
    assert saved.last_activity == NOW
    assert "Error evicting a session from cache" in caplog.text
