"""model_batches: how the database inventories delete many sessions, in every mode."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.sessions.backends.cached_db import SessionStore as CachedDBStore
from django.core.cache import caches
from django.db import connection, transaction
from django.db.models.signals import post_delete, pre_delete
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_sessionkit.inventory import Count, get_inventory
from django_sessionkit.inventory.base import BatchSizer
from django_sessionkit.inventory.model import ModelInventory
from django_sessionkit.inventory.model_batches import PageRanges
from django_sessionkit.models import Session
from tests.custom_session.backends import SessionStore as CustomSessionStore
from tests.custom_session.models import Basket, CustomSession
from tests.model_sessions import (
    METADATA_MODES,
    POSTGRESQL,
    STORES,
    Maker,
    MetadataCachedStore,
    model_fixtures,
    register_engine,
)
from tests.test_inventory_base import Stopwatch

pytestmark = pytest.mark.django_db

mode, make, inventory, users = model_fixtures(*STORES)


def test_clear_expired_in_batches(inventory, make):
    expired = [make(expires=timedelta(seconds=-n - 1)) for n in range(5)]
    live = [make(expires=timedelta(minutes=n + 1)) for n in range(3)]

    assert list(inventory.clear_expired(batch_size=2)) == [2, 2, 1]

    remaining = set(inventory.model.objects.values_list("pk", flat=True))
    assert remaining == {made.key for made in live}
    assert not remaining & {made.key for made in expired}
    assert list(inventory.clear_expired(batch_size=2)) == []


def test_clear_expired_stops_between_batches(inventory, make):
    for n in range(5):
        make(expires=timedelta(seconds=-n - 1))

    batches = inventory.clear_expired(batch_size=2)
    assert next(batches) == 2
    batches.close()

    assert inventory.count() == Count(3)
    # The oldest go first.
    assert list(inventory.clear_expired(batch_size=10)) == [3]


def test_clear_expired_sends_no_delete_signals(inventory, make):
    seen = []

    def receiver(sender, instance, **kwargs):
        seen.append(instance.pk)

    for signal in (pre_delete, post_delete):
        signal.connect(receiver, sender=inventory.model, weak=False)
    try:
        for n in range(5):
            make(expires=timedelta(seconds=-n - 1))
        live = make()

        assert list(inventory.clear_expired(batch_size=2)) == [2, 2, 1]
    finally:
        for signal in (pre_delete, post_delete):
            signal.disconnect(receiver, sender=inventory.model)

    assert seen == []
    assert list(inventory.model.objects.values_list("pk", flat=True)) == [live.key]


def test_clear_expired_rejects_empty_batches(inventory):
    with pytest.raises(ValueError, match="batch_size"):
        next(inventory.clear_expired(batch_size=0))


@pytest.mark.parametrize("mode", METADATA_MODES)
def test_clear_inactive_in_batches(inventory, make, users, mode):
    now = timezone.now()
    idle = [make(user=users[0], last_activity=now - timedelta(days=40 + n)) for n in range(4)] + [
        make(last_activity=now - timedelta(days=31), expires=timedelta(days=-1))
    ]
    kept = [make(last_activity=now - timedelta(days=29)), make(user=users[1])]
    before = now - timedelta(days=30)

    assert list(inventory.clear_inactive(before=before, batch_size=2)) == [2, 2, 1]

    remaining = set(inventory.model.objects.values_list("pk", flat=True))
    assert remaining == {made.key for made in kept}
    assert not remaining & {made.key for made in idle}
    assert list(inventory.clear_inactive(before=before, batch_size=2)) == []
    with pytest.raises(ValueError, match="batch_size"):
        inventory.clear_inactive(before=before, batch_size=0)


@pytest.mark.parametrize("mode", METADATA_MODES)
def test_clear_inactive_stops_between_batches(inventory, make, mode):
    now = timezone.now()
    for n in range(5):
        make(last_activity=now - timedelta(days=10, minutes=n))

    batches = inventory.clear_inactive(before=now - timedelta(days=1), batch_size=2)
    assert next(batches) == 2
    batches.close()

    assert inventory.count() == Count(3)
    assert list(inventory.clear_inactive(before=now - timedelta(days=1))) == [3]


def walk_pages(inventory):
    """Make the PostgreSQL inventory walk the table's pages, even a small table's."""
    inventory.page_ranges = PageRanges(min_pages=1)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {connection.ops.quote_name(inventory.model._meta.db_table)}")


@pytest.mark.parametrize(
    "walk",
    [False, pytest.param(True, marks=pytest.mark.skipif(not POSTGRESQL, reason="PostgreSQL"))],
)
@pytest.mark.parametrize("method", ["clear_expired", "clear_inactive"])
def test_clearing_evicts_cached_db_copies(monkeypatch, settings, users, redis_cache, method, walk):
    settings.SESSION_CACHE_ALIAS = "redis"
    inventory = ModelInventory(register_engine(monkeypatch, "cached", MetadataCachedStore))
    make = Maker(MetadataCachedStore)
    now = timezone.now()
    doomed = make(
        user=users[0],
        data={"cart": 1},
        last_activity=now - timedelta(days=9),
        expires=timedelta(seconds=-1 if method == "clear_expired" else 3600),
    )
    kept = make(user=users[0], data={"cart": 2})
    if walk:
        walk_pages(inventory)
    prefix = MetadataCachedStore.cache_key_prefix
    for made in (doomed, kept):
        # Cached copies that outlive the row, as a longer cache timeout would leave them.
        redis_cache.set(prefix + made.key, {"cart": 3}, 3600)

    if method == "clear_expired":
        assert list(inventory.clear_expired()) == [1]
    else:
        assert list(inventory.clear_inactive(before=now - timedelta(days=1))) == [1]

    assert redis_cache.get(prefix + doomed.key) is None
    assert MetadataCachedStore(doomed.key).load() == {}
    assert redis_cache.get(prefix + kept.key) == {"cart": 3}


def test_clear_expired_survives_an_unreachable_cache(monkeypatch, settings, users, caplog):
    """Expired cache entries expire on their own: a cache that is down does not stop cleanup."""
    settings.CACHES = {
        **settings.CACHES,
        "down": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
        },
    }
    settings.SESSION_CACHE_ALIAS = "down"
    inventory = ModelInventory(register_engine(monkeypatch, "cached", MetadataCachedStore))
    make = Maker(MetadataCachedStore)
    expired = make(user=users[0], expires=timedelta(days=-1))
    idle = make(user=users[0], last_activity=timezone.now() - timedelta(days=9))

    assert list(inventory.clear_expired()) == [1]
    assert "Could not evict 1 expired session" in caplog.text
    assert expired.key not in caplog.text
    # An idle session is unexpired: its cached copy would keep it alive, so this raises.
    with pytest.raises(Exception, match=r"(?i)connect|redis"):
        list(inventory.clear_inactive(before=timezone.now() - timedelta(days=1)))
    assert not Session.objects.filter(pk=idle.key).exists()


def test_clear_expired_with_equal_expiry_across_batches(inventory, make):
    """Each batch starts at the last expiry of the one before: ties are not skipped."""
    same = timezone.now() - timedelta(hours=1)
    made = [make(expires=timedelta(days=-1)) for _ in range(5)]
    inventory.model.objects.filter(pk__in=[m.key for m in made]).update(expire_date=same)
    older = make(expires=timedelta(days=-2))
    live = make()

    assert list(inventory.clear_expired(batch_size=2)) == [2, 2, 2]

    assert list(inventory.model.objects.values_list("pk", flat=True)) == [live.key]
    assert not inventory.model.objects.filter(pk=older.key).exists()


def test_each_batch_is_one_delete_statement(inventory, make):
    """No transaction spans the SELECT and the DELETE of a batch.

    On SQLite a transaction that has read cannot start writing while another
    connection writes: it fails at once with "database is locked" instead of
    waiting. The DELETE re-checks the expiry, so it needs no transaction.
    """
    for n in range(3):
        make(expires=timedelta(seconds=-n - 1))

    with CaptureQueriesContext(connection) as queries:
        assert list(inventory.clear_expired(batch_size=2)) == [2, 1]

    statements = [query["sql"].split()[0].upper() for query in queries]
    if connection.vendor == "postgresql":
        # The table's size decides against walking its pages (one query); then one
        # statement a batch picks its rows and deletes them; the last finds none.
        assert statements == ["SELECT", "WITH", "WITH", "WITH"]
        assert all("DELETE FROM" in query["sql"].upper() for query in queries[1:])
    else:
        assert statements == ["SELECT", "DELETE", "SELECT", "DELETE"]


@pytest.mark.skipif(not POSTGRESQL, reason="PostgreSQL's synchronous_commit")
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("walk", [False, True])
@pytest.mark.parametrize("outer", [False, True])
def test_postgresql_batches_commit_without_waiting_for_the_disk(inventory, make, walk, outer):
    """Each batch's own transaction relaxes synchronous_commit; a caller's is left alone."""
    expired = [make(expires=timedelta(seconds=-n - 1)) for n in range(3)]
    live = make()
    if walk:
        walk_pages(inventory)
    seen = []

    def watch(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if "DELETE FROM" in sql.upper():
            with connection.connection.cursor() as cursor:  # the same transaction
                cursor.execute("SHOW synchronous_commit")
                seen.append(cursor.fetchone()[0])
        return result

    with connection.execute_wrapper(watch):
        if outer:
            with transaction.atomic():
                assert sum(inventory.clear_expired(batch_size=2)) == 3
        else:
            assert sum(inventory.clear_expired(batch_size=2)) == 3

    assert len(seen) >= 2
    assert set(seen) == {"on" if outer else "off"}
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == "on"
    assert not inventory.model.objects.filter(pk__in=[m.key for m in expired]).exists()
    assert inventory.model.objects.filter(pk=live.key).exists()


class CustomCachedStore(CachedDBStore):
    @classmethod
    def get_model_class(cls):
        return CustomSession


@pytest.mark.parametrize("store_class", [CustomSessionStore, CustomCachedStore])
def test_a_model_other_rows_point_to_is_cleared_through_the_orm(monkeypatch, store_class):
    """Rows pointing to a custom session model need on_delete: batches go through the ORM."""
    inventory = get_inventory(register_engine(monkeypatch, "custom", store_class))
    make = Maker(store_class)
    heard = []

    def receiver(sender, instance, **kwargs):
        heard.append(instance.pk)

    expired = [make(expires=timedelta(seconds=-n - 1)) for n in range(3)]
    live = make()
    cache = caches["default"]
    prefix = CustomCachedStore.cache_key_prefix
    for made in (*expired, live):
        Basket.objects.create(session_id=made.key)
        cache.set(prefix + made.key, {"cart": 3}, 3600)
    post_delete.connect(receiver, sender=CustomSession, weak=False)
    try:
        assert list(inventory.clear_expired(batch_size=2)) == [2, 1]
    finally:
        post_delete.disconnect(receiver, sender=CustomSession)

    assert sorted(heard) == sorted(made.key for made in expired)
    assert list(CustomSession.objects.values_list("pk", flat=True)) == [live.key]
    # on_delete applied: the rows that pointed to the expired sessions went with them.
    assert list(Basket.objects.values_list("session_id", flat=True)) == [live.key]
    cached = [cache.get(prefix + made.key) for made in (*expired, live)]
    assert cached == ([None, None, None] if inventory.cached else [{"cart": 3}] * 3) + [{"cart": 3}]


@pytest.mark.parametrize(
    ("seconds", "on_sqlite"), [(0.01, 0.025), (0.05, 0.025), (0.12, 0.06), (1.5, 0.1)]
)
def test_pause_after_a_batch_leaves_room_to_sqlite_writers(inventory, seconds, on_sqlite):
    """Half the batch's time, 25 to 100 ms, on SQLite; no pause where the lock is fair."""
    expected = on_sqlite if connection.vendor == "sqlite" else 0.0
    assert inventory.pause_after(seconds) == pytest.approx(expected)


def test_clear_expired_sizes_each_batch_as_the_sizer_says(inventory, make):
    for n in range(13):
        make(expires=timedelta(seconds=-n - 1))
    kept = make()
    # Each batch "takes" four times the target: 8 rows, then 2, then 1 at a time.
    sizer = BatchSizer(8, target=0.05, start=8, clock=Stopwatch(0.2))

    assert list(inventory.clear_expired(batch_size=sizer)) == [8, 2, 1, 1, 1]
    assert inventory.count() == Count(1)
    assert inventory.get(kept.public_id) is not None


@pytest.mark.skipif(not POSTGRESQL, reason="PostgreSQL's TID range scans")
def test_a_large_share_goes_a_range_of_pages_at_a_time(inventory, make):
    now = timezone.now()
    expired = [make(expires=timedelta(seconds=-n - 1)) for n in range(40)]
    idle = [make(last_activity=now - timedelta(days=9)) for _ in range(20)]
    kept = [make(last_activity=now) for _ in range(10)]
    walk_pages(inventory)

    with CaptureQueriesContext(connection) as queries:
        batches = list(inventory.clear_expired(batch_size=BatchSizer(10, target=60.0)))
        if inventory.records_activity:
            idle_batches = list(
                inventory.clear_inactive(before=now - timedelta(days=1), batch_size=5)
            )
            assert sum(idle_batches) == len(idle)

    assert sum(batches) == len(expired)
    assert len(batches) > 1
    deletes = [q["sql"] for q in queries if q["sql"].startswith("DELETE")]
    assert deletes
    assert all("ctid >= " in sql and "::tid" in sql for sql in deletes)
    assert not any("ORDER BY" in q["sql"] for q in queries)
    assert all(inventory.get(made.public_id) is None for made in expired)
    left = len(kept) + (0 if inventory.records_activity else len(idle))
    assert inventory.count() == Count(left)


@pytest.mark.skipif(not POSTGRESQL, reason="PostgreSQL's TID range scans")
def test_a_range_of_pages_never_deletes_more_than_a_batch(inventory, make):
    """Sparse pages first, then dense ones: a range that holds too many is rolled back."""
    kept = [make() for _ in range(100)]
    doomed = [make(expires=timedelta(seconds=-1)) for _ in range(100)]
    walk_pages(inventory)

    with CaptureQueriesContext(connection) as queries:
        batches = list(inventory.clear_expired(batch_size=BatchSizer(30, target=60.0)))

    assert sum(batches) == len(doomed)
    assert max(batches) <= 30
    rolled_back = [q for q in queries if q["sql"].upper().startswith("ROLLBACK")]
    assert rolled_back  # at least one range held more than 30 and was undone
    assert inventory.count() == Count(len(kept))
