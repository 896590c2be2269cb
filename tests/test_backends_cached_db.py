"""django_sessionkit.backends.cached_db: Django's contract, plus activity in the cache entry.

The metadata written with the row is tested for both model engines in
test_backends_db.py; this module tests what the cache adds.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
import time_machine
from django.conf import settings as django_settings
from django.contrib.sessions.backends.cached_db import SessionStore as StockStore
from django.core.cache import caches
from django.db import connection, transaction
from django.db.models.signals import post_save
from django.http import HttpResponse
from django.test.utils import CaptureQueriesContext
from django.urls import path

from django_sessionkit.backends.base import RequestMetadata
from django_sessionkit.backends.cached_db import (
    FORMAT,
    FORMAT_KEY,
    MARKER_SUFFIX,
    TOMBSTONE,
    SessionStore,
)
from django_sessionkit.models import Session
from django_sessionkit.public_id import public_id
from tests.session_behaviour import NOW, SessionContract, close_async_connections

BROWSER = RequestMetadata(ip="203.0.113.7", user_agent="Firefox/140")
STOCK_MIDDLEWARE = "django.contrib.sessions.middleware.SessionMiddleware"
OUR_MIDDLEWARE = "django_sessionkit.middleware.SessionKitMiddleware"


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
def outage(private_redis):
    """SESSION_CACHE_ALIAS names a django-redis cache on a private Redis server.

    Call the returned function to stop the server: the cache fails from then on.
    """
    server = private_redis("private", SOCKET_CONNECT_TIMEOUT=0.5, SOCKET_TIMEOUT=0.5)
    yield server.stop
    close_async_connections()


def save_new(data, metadata=BROWSER):
    store = SessionStore()
    store.set_request_metadata(metadata)
    store.update(data)
    store.save()
    return store.session_key


def row(key):
    return Session.objects.get(session_key=key)


def ms(moment):
    """*moment* as Unix milliseconds, as the cache entry stores the activity."""
    return int(moment.timestamp()) * 1000 + moment.microsecond // 1000


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
        "last_activity": ms(NOW),
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
    assert cache.get(SessionStore.cache_key_prefix + key)["last_activity"] == ms(later)


@pytest.mark.django_db
def test_touch_activity_does_not_resurrect_a_session_flushed_meanwhile(cache):
    key = save_new({"cart": [1]})
    store = SessionStore(key)
    store.load()
    SessionStore(key).flush()  # a concurrent logout

    store.touch_activity(NOW)

    assert SessionStore(key).load() == {}
    assert cache.get(SessionStore.cache_key_prefix + key) == TOMBSTONE


@pytest.mark.django_db
def test_delete_leaves_a_tombstone_and_its_marker(cache):
    key = save_new({"cart": [1]})

    SessionStore(key).delete()

    cache_key = SessionStore.cache_key_prefix + key
    assert cache.get(cache_key) == TOMBSTONE
    assert cache.get(cache_key + MARKER_SUFFIX) is True
    assert not Session.objects.filter(session_key=key).exists()
    assert SessionStore(key).load() == {}


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


@pytest.mark.django_db
def test_load_with_the_cache_down_reads_the_row_and_logs(outage, caplog):
    key = save_new({"cart": [1]})
    outage()

    with caplog.at_level(logging.ERROR, logger="django_sessionkit.backends.cached_db"):
        assert SessionStore(key).load()["cart"] == [1]

    assert "Error saving to cache" in caplog.text
    assert key not in caplog.text


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_aload_with_the_cache_down_reads_the_row_and_logs(outage, caplog):
    store = SessionStore()
    await store.aset("cart", [1])
    await store.asave()
    outage()

    with caplog.at_level(logging.ERROR, logger="django_sessionkit.backends.cached_db"):
        assert await SessionStore(store.session_key).aget("cart") == [1]

    assert "Error saving to cache" in caplog.text


# Revocation: tombstones that neither a fill nor a write undoes. The races on
# real threads are in test_cached_db_revocation.py; here each step in turn.


def revoked_meanwhile(store, key):
    """Make *store*'s database read return the row, then delete the session elsewhere."""
    read_row, aread_row = store._get_session_from_db, store._aget_session_from_db

    def read():
        row = read_row()
        SessionStore(key).delete()
        return row

    async def aread():
        row = await aread_row()
        await SessionStore(key).adelete()
        return row

    store._get_session_from_db, store._aget_session_from_db = read, aread


@pytest.mark.django_db
def test_a_fill_never_replaces_a_tombstone(cache):
    key = save_new({"cart": [1]})
    cache.delete(SessionStore.cache_key_prefix + key)
    reader = SessionStore(key)
    revoked_meanwhile(reader, key)

    assert reader.load()["cart"] == [1]

    assert SessionStore(key).load() == {}


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_an_async_fill_never_replaces_a_tombstone(cache):
    store = SessionStore()
    await store.aset("cart", [1])
    await store.asave()
    key = store.session_key
    await cache.adelete(SessionStore.cache_key_prefix + key)
    reader = SessionStore(key)
    revoked_meanwhile(reader, key)

    assert await reader.aget("cart") == [1]

    assert await SessionStore(key).aload() == {}


@pytest.fixture
def revoked_after_the_commit():
    """Delete a session elsewhere as soon as its next save has committed its row."""
    pending = []

    def on_save(sender, instance, **kwargs):
        if pending:
            key = pending.pop()
            transaction.on_commit(lambda: SessionStore(key).delete())

    post_save.connect(on_save, sender=Session, dispatch_uid=__name__)
    yield pending.append
    post_save.disconnect(sender=Session, dispatch_uid=__name__)


@pytest.mark.django_db(transaction=True)
def test_a_save_puts_back_a_tombstone_written_after_its_update(cache, revoked_after_the_commit):
    key = save_new({"cart": [1]})
    writer = SessionStore(key)
    writer["cart"] = [2]
    revoked_after_the_commit(key)

    writer.save()

    assert cache.get(SessionStore.cache_key_prefix + key) == TOMBSTONE
    assert SessionStore(key).load() == {}


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_an_async_save_puts_back_a_tombstone_written_after_its_update(
    cache, revoked_after_the_commit
):
    store = SessionStore()
    await store.aset("cart", [1])
    await store.asave()
    writer = SessionStore(store.session_key)
    await writer.aset("cart", [2])
    revoked_after_the_commit(store.session_key)

    await writer.asave()

    assert await cache.aget(SessionStore.cache_key_prefix + store.session_key) == TOMBSTONE
    assert await SessionStore(store.session_key).aload() == {}


@pytest.mark.django_db
def test_touch_activity_keeps_a_tombstone_written_after_its_update(cache):
    # The cache half of a revocation whose row deletion is still to commit.
    key = save_new({"cart": [1]})
    store = SessionStore(key)
    store.load()
    SessionStore.revoke_cached([key])

    store.touch_activity(NOW)

    assert cache.get(SessionStore.cache_key_prefix + key) == TOMBSTONE


@pytest.mark.django_db
def test_touch_activity_on_a_gone_row_writes_a_tombstone(cache):
    key = save_new({"cart": [1]})
    store = SessionStore(key)
    store.load()
    Session.objects.filter(pk=key).delete()  # the entry is still live

    store.touch_activity(NOW)

    assert cache.get(SessionStore.cache_key_prefix + key) == TOMBSTONE


@pytest.mark.django_db
def test_a_tombstoned_session_whose_row_exists_is_read_from_the_row(cache):
    key = save_new({"cart": [1]})
    SessionStore.revoke_cached([key])

    for _ in range(2):
        with CaptureQueriesContext(connection) as queries:
            assert SessionStore(key).load()["cart"] == [1]
        assert len(queries) == 1  # the fill did not replace the tombstone

    assert SessionStore(key).exists(key)


@pytest.mark.django_db
def test_a_tombstone_outlives_the_activity_interval(settings, redis_cache):
    settings.SESSION_CACHE_ALIAS = "redis"
    settings.SESSIONKIT_ACTIVITY_INTERVAL = 3600
    key = save_new({"cart": [1]})

    SessionStore(key).delete()

    cache_key = redis_cache.make_key(SessionStore.cache_key_prefix + key)
    marker = redis_cache.make_key(SessionStore.cache_key_prefix + key + MARKER_SUFFIX)
    redis = redis_cache.client.get_client()
    assert 3000 < redis.ttl(cache_key) <= 3600
    assert 3000 < redis.ttl(marker) <= 3600


# A cache entry that cannot be read is discarded; the row is read instead


def read(request):
    return HttpResponse(str(request.session.get("visits", 0)))


def write(request):
    request.session["visits"] = request.session.get("visits", 0) + 1
    return HttpResponse(str(request.session["visits"]))


urlpatterns = [path("read/", read), path("write/", write)]


@pytest.fixture
def through_our_middleware(settings):
    settings.MIDDLEWARE = [
        OUR_MIDDLEWARE if name == STOCK_MIDDLEWARE else name for name in settings.MIDDLEWARE
    ]
    settings.SESSION_ENGINE = "django_sessionkit.backends.cached_db"


def envelope(**fields):
    entry = {FORMAT_KEY: FORMAT, "data": {"visits": 5}, "last_activity": None, "metadata": None}
    entry.update(fields)
    return entry


CORRUPT = {
    "text": "not a session",
    "list": [("visits", 5)],
    "number": 7,
    "bool": True,
    "data not a dict": envelope(data=[("visits", 5)]),
    "activity text": envelope(last_activity="2030-06-01"),
    "activity float": envelope(last_activity=1.9e12),
    "activity out of range": envelope(last_activity=10**20),
    "metadata text": envelope(metadata="203.0.113.7"),
    "metadata of three": envelope(metadata=("203.0.113.7", "Firefox/140", "x")),
    "metadata numbers": envelope(metadata=(203, 113)),
    "field missing": {FORMAT_KEY: FORMAT, "data": {"visits": 5}, "last_activity": None},
    "unknown format": envelope(**{FORMAT_KEY: 99}),
}


@pytest.mark.urls(__name__)
@pytest.mark.parametrize("value", CORRUPT.values(), ids=CORRUPT.keys())
@pytest.mark.django_db
def test_an_unreadable_entry_is_discarded_and_the_row_read(
    client, cache, through_our_middleware, caplog, value
):
    assert client.get("/write/").content == b"1"
    key = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    cache.set(SessionStore.cache_key_prefix + key, value)

    with caplog.at_level(logging.WARNING, logger="django_sessionkit.backends.cached_db"):
        first = client.get("/read/")
        with CaptureQueriesContext(connection) as queries:
            second = client.get("/read/")
        third = client.get("/write/")

    assert (first.status_code, first.content) == (200, b"1")
    assert (second.status_code, second.content) == (200, b"1")
    assert len(queries) == 0  # the entry was filled again from the row
    assert (third.status_code, third.content) == (200, b"2")
    assert caplog.text.count("Discarding the unreadable cache entry") == 1
    assert public_id(key) in caplog.text
    assert key not in caplog.text


# USE_TZ: the activity is cached in one form and read in the settings' form


@pytest.mark.urls(__name__)
@pytest.mark.parametrize("cached_with_tz", [True, False], ids=["aware-to-naive", "naive-to-aware"])
@pytest.mark.django_db
def test_a_session_cached_under_one_use_tz_is_read_under_the_other(
    client, cache, through_our_middleware, settings, cached_with_tz
):
    settings.USE_TZ = cached_with_tz
    later = NOW + timedelta(seconds=61)
    with time_machine.travel(NOW, tick=False) as clock:
        assert client.get("/write/").status_code == 200
        settings.USE_TZ = not cached_with_tz
        clock.move_to(later)
        response = client.get("/read/")  # served from the cache: activity is due

    assert (response.status_code, response.content) == (200, b"1")
    stored = only_row().last_activity
    assert stored == (later if settings.USE_TZ else later.replace(tzinfo=None))


@pytest.mark.parametrize(
    ("cached", "use_tz"),
    [(NOW, False), (NOW.replace(tzinfo=None), True), (NOW, True)],
    ids=["aware-to-naive", "naive-to-aware", "aware-to-aware"],
)
@pytest.mark.django_db
def test_entries_that_cached_the_activity_as_a_datetime_are_still_read(
    cache, settings, cached, use_tz
):
    key = save_new({"cart": [1]})
    entry = envelope(data={"cart": [1]}, last_activity=cached, metadata=("203.0.113.7", "Fx"))
    cache.set(SessionStore.cache_key_prefix + key, entry)
    settings.USE_TZ = use_tz

    store = SessionStore(key)
    with CaptureQueriesContext(connection) as queries:
        assert store["cart"] == [1]

    expected = NOW if use_tz else NOW.replace(tzinfo=None)
    assert len(queries) == 0
    assert store.loaded_activity == expected
    assert store.activity_due(expected + timedelta(seconds=61))
    assert store._stored_metadata == RequestMetadata(ip="203.0.113.7", user_agent="Fx")


def only_row():
    (session,) = Session.objects.all()
    return session


class TestSessionContract(SessionContract):
    """Django's documented session behaviour, on our cached_db engine."""
