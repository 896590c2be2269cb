from __future__ import annotations

import sys
import types
from dataclasses import astuple, dataclass
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.base import VALID_KEY_CHARS
from django.contrib.sessions.backends.cached_db import SessionStore as CachedDBStore
from django.contrib.sessions.backends.db import SessionStore as DBStore
from django.contrib.sessions.models import Session as StockSession
from django.core.cache import caches
from django.db import connection, transaction
from django.db.models.signals import post_delete, pre_delete
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django.utils.crypto import get_random_string

from django_sessionkit.inventory import Count, InventoryUnavailable, SessionInfo
from django_sessionkit.inventory import model as model_module
from django_sessionkit.inventory.base import BatchSizer, Stats
from django_sessionkit.inventory.model import ModelInventory, has_metadata
from django_sessionkit.models import Session
from django_sessionkit.public_id import public_id

pytestmark = pytest.mark.django_db


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


STORES = {
    "metadata": MetadataStore,
    "metadata_cached": MetadataCachedStore,
    "stock": DBStore,
    "stock_cached": CachedDBStore,
}


def register_engine(monkeypatch, name, store_class):
    """Make *store_class* importable as the engine ``tests.engines.<name>``."""
    path = f"tests.engines.{name}"
    module = types.ModuleType(path)
    module.SessionStore = store_class
    monkeypatch.setitem(sys.modules, path, module)
    return path


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


@pytest.fixture(params=list(STORES))
def mode(request):
    return request.param


@pytest.fixture
def make(mode):
    return Maker(STORES[mode])


@pytest.fixture
def inventory(mode, monkeypatch):
    MetadataStore.decoded = 0
    return ModelInventory(register_engine(monkeypatch, mode, STORES[mode]))


@pytest.fixture
def users(django_user_model):
    return [django_user_model.objects.create_user(username=f"user{n}") for n in range(3)]


def ids(infos):
    return [info.public_id for info in infos]


def test_modes(inventory, mode):
    assert inventory.records_metadata is mode.startswith("metadata")
    assert inventory.cached is mode.endswith("cached")
    assert inventory.model is (Session if mode.startswith("metadata") else StockSession)


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


@pytest.mark.skipif(
    "postgresql" not in settings.DATABASES["default"]["ENGINE"], reason="PostgreSQL statistics"
)
def test_estimate_falls_back_to_exact_before_analyze(inventory, make):
    make()
    with connection.cursor() as cursor:
        # Reset the statistics as for a table that was never analyzed.
        cursor.execute(
            "UPDATE pg_class SET reltuples = -1 WHERE oid = to_regclass(%s)",
            [inventory.model._meta.db_table],
        )
    assert inventory.count(estimate=True) == Count(1, exact=True)


@pytest.mark.skipif(
    "postgresql" not in settings.DATABASES["default"]["ENGINE"], reason="PostgreSQL statistics"
)
def test_estimated_totals_of_a_large_table_come_from_the_planner(inventory, make, monkeypatch):
    for _ in range(80):
        make(expires=timedelta(days=-1))
    for _ in range(40):
        make()
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {connection.ops.quote_name(inventory.model._meta.db_table)}")

    # A small table: the expired sessions are counted; "about 1" for none would mislead.
    assert inventory.totals(estimate=True) == (Count(120, exact=False), Count(80))

    monkeypatch.setattr(model_module, "EXACT_BELOW", 50)
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


def test_stock_mode_streams_in_chunks(inventory, make, users, monkeypatch):
    monkeypatch.setattr(model_module, "CHUNK_SIZE", 2)
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


@pytest.mark.parametrize("cache_alias", ["default", "redis"])
def test_revoke_evicts_cached_db_copy(monkeypatch, settings, users, cache_alias, request):
    if cache_alias == "redis":
        request.getfixturevalue("redis_cache")
    settings.SESSION_CACHE_ALIAS = cache_alias
    cache = caches[cache_alias]
    results = {}
    for mode in ("metadata_cached", "stock_cached"):
        store_class = STORES[mode]
        inventory = ModelInventory(register_engine(monkeypatch, mode, store_class))
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


# -- filters by several users and by activity, stats, clear_inactive -------------


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


def test_count_and_page_by_activity(inventory, make, mode):
    now = timezone.now()
    old = make(last_activity=now - timedelta(days=10))
    middle = make(last_activity=now - timedelta(days=5))
    recent = make(last_activity=now - timedelta(minutes=1))
    cutoff = now - timedelta(days=5)

    if mode.startswith("metadata"):
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
        assert inventory.records_activity
    else:
        # Without metadata activity is unknown: the filters match nothing.
        assert inventory.count() == Count(3)
        assert inventory.count(active_before=now + timedelta(days=1)) == Count(0)
        assert inventory.count(active_after=now - timedelta(days=365)) == Count(0)
        assert inventory.page(active_after=now - timedelta(days=365)) == []
        assert not inventory.records_activity


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
        exact=True,
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


def test_stats_without_metadata_streams(monkeypatch, make, users, inventory, mode):
    if mode.startswith("metadata"):
        pytest.skip("with metadata the user is a column")
    monkeypatch.setattr(model_module, "CHUNK_SIZE", 2)
    for n in range(5):
        make(user=users[n % 2])

    assert inventory.stats().busiest_user == (str(users[0].pk), 3)


def test_clear_inactive_in_batches(inventory, make, users, mode):
    now = timezone.now()
    idle = [make(user=users[0], last_activity=now - timedelta(days=40 + n)) for n in range(4)] + [
        make(last_activity=now - timedelta(days=31), expires=timedelta(days=-1))
    ]
    kept = [make(last_activity=now - timedelta(days=29)), make(user=users[1])]
    before = now - timedelta(days=30)

    if not mode.startswith("metadata"):
        # Refused when called, before the first batch: nothing is deleted.
        with pytest.raises(InventoryUnavailable, match="last active"):
            inventory.clear_inactive(before=before, batch_size=2)
        assert inventory.count() == Count(7)
        return

    assert list(inventory.clear_inactive(before=before, batch_size=2)) == [2, 2, 1]

    remaining = set(inventory.model.objects.values_list("pk", flat=True))
    assert remaining == {made.key for made in kept}
    assert not remaining & {made.key for made in idle}
    assert list(inventory.clear_inactive(before=before, batch_size=2)) == []
    with pytest.raises(ValueError, match="batch_size"):
        inventory.clear_inactive(before=before, batch_size=0)


def test_clear_inactive_stops_between_batches(inventory, make, mode):
    if not mode.startswith("metadata"):
        pytest.skip("needs activity")
    now = timezone.now()
    for n in range(5):
        make(last_activity=now - timedelta(days=10, minutes=n))

    batches = inventory.clear_inactive(before=now - timedelta(days=1), batch_size=2)
    assert next(batches) == 2
    batches.close()

    assert inventory.count() == Count(3)
    assert list(inventory.clear_inactive(before=now - timedelta(days=1))) == [3]


POSTGRESQL = "postgresql" in settings.DATABASES["default"]["ENGINE"]


def walk_pages(monkeypatch, model):
    """Make the PostgreSQL inventory walk the table's pages, even a small table's."""
    monkeypatch.setattr(model_module, "PAGE_RANGE_MIN_PAGES", 1)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")


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
        walk_pages(monkeypatch, Session)
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
def test_postgresql_batches_commit_without_waiting_for_the_disk(
    inventory, make, monkeypatch, walk, outer
):
    """Each batch's own transaction relaxes synchronous_commit; a caller's is left alone."""
    expired = [make(expires=timedelta(seconds=-n - 1)) for n in range(3)]
    live = make()
    if walk:
        walk_pages(monkeypatch, inventory.model)
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


def test_a_model_other_rows_point_to_is_cleared_through_the_orm(inventory, make, monkeypatch):
    """Rows pointing to a custom session model need on_delete: batches go through the ORM."""
    # Django's Collector finds relations through get_fields(); the inventory
    # chooses its path by related_objects.
    relation = types.SimpleNamespace(one_to_one=False)
    monkeypatch.setitem(inventory.model._meta.__dict__, "related_objects", (relation,))
    heard = []

    def receiver(sender, instance, **kwargs):
        heard.append(instance.pk)

    expired = [make(expires=timedelta(seconds=-n - 1)) for n in range(3)]
    live = make()
    post_delete.connect(receiver, sender=inventory.model, weak=False)
    try:
        assert list(inventory.clear_expired(batch_size=2)) == [2, 1]
    finally:
        post_delete.disconnect(receiver, sender=inventory.model)

    assert sorted(heard) == sorted(made.key for made in expired)
    assert list(inventory.model.objects.values_list("pk", flat=True)) == [live.key]


class Stopwatch:
    """A clock that advances by *step* seconds each time it is read twice (start, end)."""

    def __init__(self, *steps: float) -> None:
        self.now = 0.0
        self.steps = list(steps)
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        if self.reads % 2 == 0:
            self.now += self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        return self.now


def test_batch_sizer_follows_the_time_each_batch_takes():
    # 8 rows took 0.2 s against a 0.05 s target: the next batch asks for 2;
    # then fast batches double the size, up to the limit.
    sizer = BatchSizer(16, target=0.05, start=8, clock=Stopwatch(0.2, 0.001))
    asked = []
    for _ in range(5):
        with sizer.batch() as size:
            asked.append(size)
    assert asked == [8, 2, 4, 8, 16]
    assert sizer.size == 16  # never above the limit
    assert sizer.elapsed == pytest.approx(0.001)  # the latest batch's time

    slow = BatchSizer(10, target=0.05, start=10, clock=Stopwatch(60.0))
    for _ in range(3):
        with slow.batch():
            pass
    assert slow.size == 1  # never below one row


@pytest.mark.parametrize(
    ("seconds", "on_sqlite"), [(0.01, 0.025), (0.05, 0.025), (0.12, 0.06), (1.5, 0.1)]
)
def test_pause_after_a_batch_leaves_room_to_sqlite_writers(inventory, seconds, on_sqlite):
    """Half the batch's time, 25 to 100 ms, on SQLite; no pause where the lock is fair."""
    expected = on_sqlite if connection.vendor == "sqlite" else 0.0
    assert inventory.pause_after(seconds) == pytest.approx(expected)


def test_batch_sizer_without_a_target_asks_for_the_limit():
    sizer = BatchSizer.of(7)
    for _ in range(3):
        with sizer.batch() as size:
            assert size == 7
    assert sizer.asked == 7
    assert BatchSizer.of(sizer) is sizer
    with pytest.raises(ValueError, match="at least 1"):
        BatchSizer.of(0)


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
def test_a_large_share_goes_a_range_of_pages_at_a_time(inventory, make, monkeypatch):
    now = timezone.now()
    expired = [make(expires=timedelta(seconds=-n - 1)) for n in range(40)]
    idle = [make(last_activity=now - timedelta(days=9)) for _ in range(20)]
    kept = [make(last_activity=now) for _ in range(10)]
    walk_pages(monkeypatch, inventory.model)

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
def test_a_range_of_pages_never_deletes_more_than_a_batch(inventory, make, monkeypatch):
    """Sparse pages first, then dense ones: a range that holds too many is rolled back."""
    kept = [make() for _ in range(100)]
    doomed = [make(expires=timedelta(seconds=-1)) for _ in range(100)]
    walk_pages(monkeypatch, inventory.model)

    with CaptureQueriesContext(connection) as queries:
        batches = list(inventory.clear_expired(batch_size=BatchSizer(30, target=60.0)))

    assert sum(batches) == len(doomed)
    assert max(batches) <= 30
    rolled_back = [q for q in queries if q["sql"].upper().startswith("ROLLBACK")]
    assert rolled_back  # at least one range held more than 30 and was undone
    assert inventory.count() == Count(len(kept))
