"""ModelInventory, and what it and StockModelInventory answer alike, in every mode."""

from __future__ import annotations

from dataclasses import astuple
from datetime import timedelta

import pytest
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.models import Session as StockSession
from django.core.cache import caches
from django.db import connection
from django.db.models.signals import post_delete
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_sessionkit.inventory import Count, SessionInfo, get_inventory
from django_sessionkit.inventory.base import Stats
from django_sessionkit.inventory.model import ModelInventory
from django_sessionkit.inventory.stock_model import StockModelInventory
from django_sessionkit.models import Session
from django_sessionkit.public_id import public_id
from tests.model_sessions import (
    METADATA_MODES,
    POSTGRESQL,
    STORES,
    Maker,
    MetadataCachedStore,
    MetadataStore,
    ids,
    model_fixtures,
    register_engine,
)

pytestmark = pytest.mark.django_db

mode, make, inventory, users = model_fixtures(*STORES)


def test_modes(inventory, mode):
    metadata = mode in METADATA_MODES
    assert type(inventory) is (ModelInventory if metadata else StockModelInventory)
    assert inventory.records_metadata is inventory.records_activity is metadata
    assert inventory.cached is mode.endswith("cached")
    assert inventory.model is (Session if metadata else StockSession)


def test_count(inventory, make, users, mode):
    alice, bob, _ = users
    make(user=alice, ip="10.0.0.1")
    make(user=alice, expires=timedelta(days=-1))
    make(user=bob, ip="10.0.0.1")
    make()
    make(expires=timedelta(seconds=-5))

    assert inventory.count() == Count(5)
    assert inventory.count(status="active") == Count(3)
    assert inventory.count(status="expired") == Count(2)
    assert inventory.count(users=[str(alice.pk)]) == Count(2)
    assert inventory.count(users=[str(alice.pk)], status="active") == Count(1)
    assert inventory.count(authenticated=True) == Count(3)
    assert inventory.count(authenticated=False) == Count(2)
    assert inventory.count(authenticated=False, status="expired") == Count(1)
    assert inventory.count(users=["not-a-user-id"]) == Count(0)
    assert inventory.count(ip="not an address") == Count(0)
    # Only sessionkit's model records addresses.
    assert inventory.count(ip="10.0.0.1") == Count(2 if inventory.records_metadata else 0)


@pytest.mark.parametrize("impossible", ["9" * 20, "-" + "9" * 20, "1\x00", "abc"])
def test_a_user_id_the_user_model_cannot_hold_has_no_sessions(inventory, make, users, impossible):
    make(user=users[0])

    assert inventory.count(users=[impossible]) == Count(0)
    assert inventory.page(users=[impossible]) == []
    assert inventory.page(users=[impossible, str(users[0].pk)]) != []
    assert inventory.for_user(impossible) == []
    assert inventory.revoke_user(impossible) == 0


def test_estimate_without_filters(inventory, make):
    for _ in range(4):
        make()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {connection.ops.quote_name(inventory.model._meta.db_table)}")
        assert inventory.count(estimate=True) == Count(4, exact=False)
    else:
        assert inventory.count(estimate=True) == Count(4, exact=True)
    # A filtered count has no statistics to read: it is exact.
    assert inventory.count(estimate=True, status="active") == Count(4, exact=True)


@pytest.mark.skipif(not POSTGRESQL, reason="PostgreSQL statistics")
def test_estimate_falls_back_to_exact_before_analyze(inventory, make):
    make()
    with connection.cursor() as cursor:
        # Reset the statistics as for a table that was never analyzed.
        cursor.execute(
            "UPDATE pg_class SET reltuples = -1 WHERE oid = to_regclass(%s)",
            [inventory.model._meta.db_table],
        )
    assert inventory.count(estimate=True) == Count(1, exact=True)


@pytest.mark.skipif(not POSTGRESQL, reason="PostgreSQL statistics")
def test_estimated_totals_of_a_large_table_come_from_the_planner(inventory, make):
    for _ in range(80):
        make(expires=timedelta(days=-1))
    for _ in range(40):
        make()
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {connection.ops.quote_name(inventory.model._meta.db_table)}")

    # A small table: the expired sessions are counted; "about 1" for none would mislead.
    assert inventory.totals(estimate=True) == (Count(120, exact=False), Count(80))

    inventory.exact_below = 50
    with CaptureQueriesContext(connection) as queries:
        everything, expired = inventory.totals(estimate=True)
    assert everything == Count(120, exact=False)
    assert not expired.exact
    assert 60 <= expired.value <= 100
    assert not [q for q in queries if "COUNT(" in q["sql"].upper()]
    # Without estimate=True both are counted.
    assert inventory.totals() == (Count(120), Count(80))


def test_page_orders_and_pages(inventory, make):
    now = timezone.now()
    # Activity and expiry disagree on the order, so each ordering is seen.
    first = make(last_activity=now - timedelta(minutes=3), expires=timedelta(days=2))
    second = make(last_activity=now - timedelta(minutes=2), expires=timedelta(days=3))
    third = make(last_activity=now - timedelta(minutes=1), expires=timedelta(days=1))
    by_expiry = [third.public_id, first.public_id, second.public_id]
    by_activity = [first.public_id, second.public_id, third.public_id]

    assert ids(inventory.page(ordering="expire_date")) == by_expiry
    assert ids(inventory.page(ordering="-expire_date")) == by_expiry[::-1]
    if inventory.records_metadata:
        assert ids(inventory.page(ordering="last_activity")) == by_activity
        assert ids(inventory.page(ordering="-last_activity")) == by_activity[::-1]
    else:
        # Without activity, a save moves the expiry: it stands in for activity.
        assert ids(inventory.page(ordering="last_activity")) == by_expiry
        assert ids(inventory.page(ordering="-last_activity")) == by_expiry[::-1]
    pages = [inventory.page(offset=offset, limit=2, ordering="expire_date") for offset in (0, 2)]
    assert [ids(page) for page in pages] == [by_expiry[:2], by_expiry[2:]]
    assert inventory.page(limit=0) == []
    with pytest.raises(ValueError, match="ordering"):
        inventory.page(ordering="session_key")


def test_page_filters(inventory, make, users):
    alice, bob, _ = users
    now = timezone.now()
    a1 = make(user=alice, last_activity=now, expires=timedelta(days=3), ip="192.0.2.1")
    a2 = make(user=alice, last_activity=now, expires=timedelta(days=2), ip="2001:db8::1")
    a_old = make(user=alice, expires=timedelta(days=-1))
    b1 = make(user=bob, expires=timedelta(days=1), ip="192.0.2.1")
    anon = make(expires=timedelta(hours=1))

    order = "-expire_date"
    assert ids(inventory.page(users=[str(alice.pk)], ordering=order)) == [
        a1.public_id,
        a2.public_id,
        a_old.public_id,
    ]
    assert ids(inventory.page(users=[str(alice.pk)], status="active", ordering=order)) == [
        a1.public_id,
        a2.public_id,
    ]
    assert ids(inventory.page(users=[str(alice.pk)], offset=1, limit=1, ordering=order)) == [
        a2.public_id
    ]
    assert ids(inventory.page(status="expired")) == [a_old.public_id]
    assert ids(inventory.page(authenticated=False)) == [anon.public_id]
    assert ids(inventory.page(authenticated=True, status="active", ordering=order)) == [
        a1.public_id,
        a2.public_id,
        b1.public_id,
    ]
    assert inventory.page(users=["nobody"]) == []
    assert inventory.page(ip="nonsense") == []
    if inventory.records_metadata:
        assert ids(inventory.page(ip="192.0.2.1", ordering=order)) == [a1.public_id, b1.public_id]
        assert ids(inventory.page(ip="2001:db8::1")) == [a2.public_id]
    else:
        assert inventory.page(ip="192.0.2.1") == []


def test_info_fields(inventory, make, users):
    alice = users[0]
    made = make(user=alice, ip="203.0.113.9", user_agent="Firefox", data={"cart": [1, 2]})

    [info] = inventory.page()

    assert isinstance(info, SessionInfo)
    assert info.public_id == made.public_id
    assert info.user_id == str(alice.pk)
    assert info.is_authenticated
    assert not info.is_expired
    assert info.expire_date > timezone.now()
    assert info.get_decoded() == {"cart": [1, 2], SESSION_KEY: str(alice.pk)}
    if inventory.records_metadata:
        assert (info.ip, info.user_agent) == ("203.0.113.9", "Firefox")
        assert info.created_at < info.last_activity
    else:
        assert (info.ip, info.user_agent, info.created_at, info.last_activity) == (
            None,
            "",
            None,
            None,
        )


def test_info_never_shows_the_key(inventory, make, users):
    made = make(user=users[0], data={"note": "x"})

    listed = [
        *inventory.page(),
        inventory.get(made.public_id),
        *inventory.for_user(str(users[0].pk)),
    ]
    assert len(listed) == 3
    for info in listed:
        info.get_decoded()
        assert made.key not in repr(info)
        assert made.key not in str(astuple(info))


def test_listing_never_decodes_with_metadata(monkeypatch, users):
    inventory = ModelInventory(register_engine(monkeypatch, "counting", MetadataStore))
    make = Maker(MetadataStore)
    alice = users[0]
    made = make(user=alice, data={"theme": "dark"})
    broken = make(user=alice, session_data="definitely not signed session data")
    MetadataStore.decoded = 0

    listed = [
        *inventory.page(),
        *inventory.page(users=[str(alice.pk)], authenticated=True),
        *inventory.for_user(str(alice.pk)),
        inventory.get(made.public_id),
    ]
    inventory.count(users=[str(alice.pk)])

    assert len(listed) == 7
    assert MetadataStore.decoded == 0
    expected = {"theme": "dark", SESSION_KEY: str(alice.pk)}
    assert inventory.get(made.public_id).get_decoded() == expected
    assert inventory.get(broken.public_id).get_decoded() == {}
    assert MetadataStore.decoded == 2


def test_undecodable_data_decodes_to_empty(inventory, make):
    made = make(session_data="garbage")

    info = inventory.get(made.public_id)

    assert info is not None
    assert info.get_decoded() == {}
    assert info.user_id is None


def test_get(inventory, make, users):
    made = make(user=users[1], expires=timedelta(days=-2))
    make(user=users[1])

    info = inventory.get(made.public_id)

    assert info is not None
    assert info.public_id == made.public_id
    assert info.user_id == str(users[1].pk)
    assert info.is_expired
    assert inventory.get(public_id("no-such-session")) is None
    assert inventory.get(made.key) is None  # a raw key is not a public id


def test_for_user(inventory, make, users):
    alice, bob, carol = users
    now = timezone.now()
    older = make(user=alice, last_activity=now - timedelta(hours=2), expires=timedelta(days=1))
    newer = make(user=alice, last_activity=now - timedelta(minutes=1), expires=timedelta(days=2))
    make(user=alice, expires=timedelta(minutes=-1))
    make(user=bob)
    make()

    assert ids(inventory.for_user(str(alice.pk))) == [newer.public_id, older.public_id]
    assert inventory.for_user(str(carol.pk)) == []
    assert inventory.for_user("not-a-pk") == []
    assert all(info.user_id == str(alice.pk) for info in inventory.for_user(str(alice.pk)))


def test_revoke(inventory, make, users):
    made = make(user=users[0])
    other = make(user=users[0])

    assert inventory.revoke(made.public_id) is True

    assert not inventory.model.objects.filter(pk=made.key).exists()
    assert inventory.model.objects.filter(pk=other.key).exists()
    assert inventory.revoke(made.public_id) is False
    assert inventory.revoke(public_id("unknown")) is False
    assert inventory.count() == Count(1)


def test_revoke_user_keeps_current(inventory, make, users):
    alice, bob, _ = users
    current = make(user=alice)
    others = [make(user=alice) for _ in range(2)]
    expired = make(user=alice, expires=timedelta(days=-1))
    bobs = make(user=bob)

    assert inventory.revoke_user(str(alice.pk), keep=current.public_id) == 2

    remaining = set(inventory.model.objects.values_list("pk", flat=True))
    assert remaining == {current.key, expired.key, bobs.key}
    assert not remaining & {made.key for made in others}
    assert inventory.revoke_user(str(alice.pk)) == 1
    assert inventory.for_user(str(alice.pk)) == []
    assert inventory.for_user(str(bob.pk))[0].public_id == bobs.public_id
    assert inventory.revoke_user("not-a-pk") == 0


def test_revoking_many_deletes_a_chunk_of_keys_at_a_time(inventory, make, users):
    """Each DELETE names at most chunk_size keys: a statement's parameters stay bounded."""
    inventory.chunk_size = 2
    revoked = [make(user=users[0]) for _ in range(5)]
    kept = make(user=users[1])

    with CaptureQueriesContext(connection) as queries:
        assert inventory.revoke_user(str(users[0].pk)) == 5

    deletes = [q["sql"] for q in queries if q["sql"].upper().startswith("DELETE")]
    assert len(deletes) == 3
    assert not inventory.model.objects.filter(pk__in=[m.key for m in revoked]).exists()
    assert inventory.model.objects.filter(pk=kept.key).exists()


@pytest.mark.parametrize("cache_alias", ["default", "redis"])
def test_revoke_evicts_cached_db_copy(monkeypatch, settings, users, cache_alias, request):
    if cache_alias == "redis":
        request.getfixturevalue("redis_cache")
    settings.SESSION_CACHE_ALIAS = cache_alias
    cache = caches[cache_alias]
    results = {}
    for mode in ("metadata_cached", "stock_cached"):
        store_class = STORES[mode]
        inventory = get_inventory(register_engine(monkeypatch, mode, store_class))
        make = Maker(store_class)
        made = make(user=users[0], data={"cart": 3})
        kept = make(user=users[0], data={"cart": 4})
        for key in (made.key, kept.key):
            assert store_class(key).load()["cart"] in (3, 4)  # fills the cache
        cache_key = store_class.cache_key_prefix + made.key
        assert cache.get(cache_key) is not None

        assert inventory.revoke(made.public_id) is True
        assert cache.get(cache_key) is None
        assert store_class(made.key).load() == {}
        assert inventory.revoke_user(str(users[0].pk)) == 1
        assert cache.get(store_class.cache_key_prefix + kept.key) is None
        assert store_class(kept.key).load() == {}
        results[mode] = inventory.cached
    assert results == {"metadata_cached": True, "stock_cached": True}


def test_revoke_sends_delete_signals(inventory, make):
    """Revoking goes through the ORM, so audit receivers hear of it."""
    seen = []

    def receiver(sender, instance, **kwargs):
        seen.append(instance.pk)

    made = make()
    post_delete.connect(receiver, sender=inventory.model, weak=False)
    try:
        inventory.revoke(made.public_id)
    finally:
        post_delete.disconnect(receiver, sender=inventory.model)

    assert seen == [made.key]


def test_revoke_reports_a_cache_it_could_not_evict_from(monkeypatch, settings, users, caplog):
    """A cached copy left behind would keep a revoked session alive: say so."""
    settings.CACHES = {
        **settings.CACHES,
        "down": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens on port 1
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
        },
    }
    settings.SESSION_CACHE_ALIAS = "down"
    inventory = ModelInventory(register_engine(monkeypatch, "cached", MetadataCachedStore))
    made = Maker(MetadataCachedStore)(user=users[0])

    with pytest.raises(Exception, match=r"(?i)connect|redis"):
        inventory.revoke(made.public_id)

    assert not Session.objects.filter(pk=made.key).exists()
    assert "could not evict" in caplog.text
    assert made.key not in caplog.text


@pytest.mark.parametrize("method", ["count", "page"])
def test_rejects_unknown_status(inventory, method):
    with pytest.raises(ValueError, match="status"):
        getattr(inventory, method)(status="stale")


def test_count_and_page_by_user_ids(inventory, make, users):
    alice, bob, carol = users
    a = make(user=alice, expires=timedelta(days=3))
    b = make(user=bob, expires=timedelta(days=2))
    make(user=carol)
    make()
    pair = [str(alice.pk), str(bob.pk)]

    assert inventory.count(users=pair) == Count(2)
    assert ids(inventory.page(users=pair, ordering="-expire_date")) == [a.public_id, b.public_id]
    # Any collection; ids the user model cannot hold are ignored.
    assert inventory.count(users={str(bob.pk), "not-a-pk"}) == Count(1)
    # An empty collection matches nothing, unlike None.
    assert inventory.count(users=[]) == Count(0)
    assert inventory.page(users=()) == []
    assert inventory.count(users=["not-a-pk"]) == Count(0)
    # Filters combine: user_id and user_ids keep what both keep.
    assert inventory.count(users=pair, authenticated=False) == Count(0)


@pytest.mark.parametrize("mode", METADATA_MODES)
def test_count_and_page_by_activity(inventory, make, mode):
    now = timezone.now()
    old = make(last_activity=now - timedelta(days=10))
    middle = make(last_activity=now - timedelta(days=5))
    recent = make(last_activity=now - timedelta(minutes=1))
    cutoff = now - timedelta(days=5)

    assert inventory.count(active_before=cutoff) == Count(1)
    assert inventory.count(active_after=cutoff) == Count(2)  # at or after
    assert inventory.count(
        active_after=now - timedelta(days=6), active_before=now - timedelta(hours=1)
    ) == Count(1)
    assert ids(inventory.page(active_after=cutoff, ordering="last_activity")) == [
        middle.public_id,
        recent.public_id,
    ]
    assert ids(inventory.page(active_before=cutoff)) == [old.public_id]


def test_stats(inventory, make, users):
    alice, bob, carol = users
    now = timezone.now()
    for _ in range(3):
        make(user=bob)
    make(user=bob, expires=timedelta(days=-3))  # expired: not counted for bob
    make(user=bob, expires=timedelta(days=-3))
    for _ in range(2):
        make(user=alice)
    make()
    oldest = make(user=carol, expires=timedelta(days=-7))

    stats = inventory.stats()

    assert stats == Stats(
        sessions=9,
        active=6,
        expired=3,
        oldest_expired=stats.oldest_expired,
        busiest_user=(str(bob.pk), 3),
    )
    expire_date = inventory.model.objects.get(pk=oldest.key).expire_date
    assert stats.oldest_expired == expire_date
    assert stats.oldest_expired < now - timedelta(days=6)


def test_stats_ties_and_empty(inventory, make, users):
    assert inventory.stats() == Stats(0, 0, 0, None, None)
    alice, bob, _ = users
    make(user=bob)
    make(user=alice)
    make()

    stats = inventory.stats()

    assert (stats.sessions, stats.active, stats.expired, stats.oldest_expired) == (3, 3, 0, None)
    # Among equals, the smallest id.
    assert stats.busiest_user == (min(str(alice.pk), str(bob.pk)), 1)
