from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.base import SessionBase
from django.contrib.sessions.backends.cache import SessionStore as CacheStore
from django.contrib.sessions.backends.db import SessionStore as DBStore
from django.contrib.sessions.backends.file import SessionStore as FileStore
from django.contrib.sessions.backends.signed_cookies import SessionStore as CookieStore
from django.utils import timezone

import django_sessionkit.inventory as inventory_package
from django_sessionkit.backends.base import RequestMetadata
from django_sessionkit.inventory import (
    Count,
    InventoryUnavailable,
    SessionInfo,
    SessionInventory,
    get_inventory,
)
from django_sessionkit.inventory.file import FileInventory
from django_sessionkit.inventory.model import ModelInventory
from django_sessionkit.models import Session
from django_sessionkit.public_id import public_id
from tests.engines import register_engine

OUR_DB = "django_sessionkit.backends.db"
OUR_CACHED_DB = "django_sessionkit.backends.cached_db"
OUR_REDIS = "django_sessionkit.backends.redis"


def test_reexports_the_interface():
    for name in ("SessionInventory", "SessionInfo", "Count", "InventoryUnavailable"):
        assert name in inventory_package.__all__
    assert issubclass(ModelInventory, SessionInventory)
    assert SessionInfo.__module__ == "django_sessionkit.inventory.base"
    assert Count(1) == Count(1, exact=True)


@pytest.mark.parametrize(
    ("engine", "metadata", "cached"),
    [
        ("django.contrib.sessions.backends.db", False, False),
        ("django.contrib.sessions.backends.cached_db", False, True),
        (OUR_DB, True, False),
        (OUR_CACHED_DB, True, True),
    ],
)
def test_database_engines(engine, metadata, cached):
    inventory = get_inventory(engine)

    assert isinstance(inventory, ModelInventory)
    assert inventory.engine == engine
    assert inventory.records_metadata is metadata
    assert inventory.cached is cached


def test_default_is_the_session_engine(settings):
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.file"
    assert isinstance(get_inventory(), FileInventory)
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.db"
    assert isinstance(get_inventory(), ModelInventory)


def test_chooses_by_class_not_by_name(monkeypatch):
    """A project's own store gets the inventory of the engine it extends."""

    class ProjectDBStore(DBStore):
        pass

    class ProjectMetadataStore(DBStore):
        @classmethod
        def get_model_class(cls):
            return Session

    class ProjectFileStore(FileStore):
        pass

    stock = get_inventory(register_engine(monkeypatch, "project_db", ProjectDBStore))
    ours = get_inventory(register_engine(monkeypatch, "project_meta", ProjectMetadataStore))
    files = get_inventory(register_engine(monkeypatch, "project_file", ProjectFileStore))

    assert isinstance(stock, ModelInventory)
    assert not stock.records_metadata
    assert isinstance(ours, ModelInventory)
    assert ours.records_metadata
    assert ours.model is Session
    assert isinstance(files, FileInventory)
    assert files.engine == "tests.registered_engines.project_file"


def test_file_engine():
    inventory = get_inventory("django.contrib.sessions.backends.file")
    assert isinstance(inventory, FileInventory)
    assert inventory.records_metadata is False


@pytest.mark.parametrize("engine", ["django.contrib.sessions.backends.signed_cookies", "subclass"])
def test_signed_cookies_cannot_be_listed(engine, monkeypatch):
    if engine == "subclass":

        class ProjectCookieStore(CookieStore):
            pass

        engine = register_engine(monkeypatch, "cookies", ProjectCookieStore)

    with pytest.raises(InventoryUnavailable, match="cookie") as raised:
        get_inventory(engine)

    assert "the server keeps no list" in str(raised.value)


def test_stock_cache_on_locmem_cannot_be_listed(settings):
    settings.SESSION_CACHE_ALIAS = "default"

    with pytest.raises(InventoryUnavailable) as raised:
        get_inventory("django.contrib.sessions.backends.cache")

    message = str(raised.value)
    assert "'default'" in message
    assert "LocMemCache" in message
    assert "django-redis" in message


def test_stock_cache_subclass_on_locmem_cannot_be_listed(settings, monkeypatch):
    class ProjectCacheStore(CacheStore):
        pass

    settings.SESSION_CACHE_ALIAS = "default"
    with pytest.raises(InventoryUnavailable, match="django-redis"):
        get_inventory(register_engine(monkeypatch, "cache", ProjectCacheStore))


def test_stock_cache_on_django_redis(settings, redis_cache):
    from django_sessionkit.inventory.cache import StockCacheInventory

    settings.SESSION_CACHE_ALIAS = "redis"

    inventory = get_inventory("django.contrib.sessions.backends.cache")

    assert isinstance(inventory, StockCacheInventory)
    assert inventory.engine == "django.contrib.sessions.backends.cache"


def test_our_redis_engine(settings, redis_cache):
    from django_sessionkit.inventory.redis import RedisInventory

    settings.SESSION_CACHE_ALIAS = "redis"

    inventory = get_inventory(OUR_REDIS)

    assert isinstance(inventory, RedisInventory)
    assert inventory.engine == OUR_REDIS


@pytest.mark.parametrize(
    ("engine", "store_class", "fragment"),
    [
        ("no_such_package.sessions", None, "cannot be imported"),
        ("module_without_store", None, "no SessionStore"),
        ("unknown_store", type("ElsewhereStore", (SessionBase,), {}), "does not know"),
        ("not_a_store", type("NotAStore", (), {}), "no SessionStore"),
    ],
)
def test_unknown_engines(engine, store_class, fragment, monkeypatch):
    if engine != "no_such_package.sessions":
        engine = register_engine(monkeypatch, engine, store_class)

    with pytest.raises(InventoryUnavailable, match=fragment) as raised:
        get_inventory(engine)

    assert repr(engine) in str(raised.value)


@pytest.mark.django_db
@pytest.mark.parametrize("engine", [OUR_DB, OUR_CACHED_DB])
def test_sessions_written_by_our_engines(engine, django_user_model, settings):
    """What our engines write is what the inventory lists, without decoding."""
    settings.SESSION_CACHE_ALIAS = "default"
    user = django_user_model.objects.create_user(username="alice")
    store_class = get_inventory(engine).store_class
    keys = []
    for address in ("192.0.2.10", "2001:db8::5"):
        store = store_class()
        store.set_request_metadata(RequestMetadata(ip=address, user_agent="Firefox/140"))
        store[SESSION_KEY] = str(user.pk)
        store["cart"] = address
        store.save()
        keys.append(store.session_key)
    anonymous = store_class()
    anonymous.save()

    inventory = get_inventory(engine)

    assert inventory.count() == Count(3)
    assert inventory.count(users=[str(user.pk)]) == Count(2)
    listed = inventory.for_user(str(user.pk))
    assert {info.public_id for info in listed} == {public_id(key) for key in keys}
    for info in listed:
        assert info.ip in ("192.0.2.10", "2001:db8::5")
        assert info.user_agent == "Firefox/140"
        assert info.get_decoded()["cart"] == info.ip
        assert timezone.now() - info.last_activity < timedelta(minutes=1)
        assert info.created_at is not None
    assert [info.public_id for info in inventory.page(ip="192.0.2.10")] == [public_id(keys[0])]
    assert inventory.page(authenticated=False)[0].public_id == public_id(anonymous.session_key)

    assert inventory.revoke_user(str(user.pk), keep=public_id(keys[0])) == 1

    assert store_class(keys[1]).load() == {}
    assert store_class(keys[0]).load()["cart"] == "192.0.2.10"
    assert inventory.revoke(public_id(keys[0])) is True
    assert store_class(keys[0]).load() == {}


EVERY_ENGINE = [
    "django.contrib.sessions.backends.db",
    "django.contrib.sessions.backends.cached_db",
    "django.contrib.sessions.backends.cache",
    "django.contrib.sessions.backends.file",
    OUR_DB,
    OUR_CACHED_DB,
    OUR_REDIS,
]


@pytest.fixture(params=EVERY_ENGINE)
def any_inventory(request, settings, redis_cache, tmp_path, monkeypatch, db):
    settings.SESSION_ENGINE = request.param
    settings.SESSION_CACHE_ALIAS = "redis"
    settings.SESSION_FILE_PATH = str(tmp_path)
    monkeypatch.setattr(FileStore, "_storage_path", str(tmp_path), raising=False)
    return get_inventory()


@pytest.mark.parametrize(
    "arguments",
    [
        {"offset": -1},
        {"limit": -1},
        {"ordering": "created_at"},
        {"status": "alive"},
    ],
)
def test_every_engine_refuses_the_same_bad_page_arguments(any_inventory, arguments):
    with pytest.raises(ValueError, match=r"offset and limit|Unknown ordering|Unknown status"):
        any_inventory.page(**arguments)


def test_every_engine_refuses_an_unknown_status_to_count(any_inventory):
    with pytest.raises(ValueError, match="Unknown status"):
        any_inventory.count(status="alive")


def test_every_engine_matches_nothing_for_no_users(any_inventory, django_user_model):
    user = django_user_model.objects.create_user("ada")
    store = __import__(any_inventory.engine, fromlist=["SessionStore"]).SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store.save()

    assert any_inventory.count(users=[]) == Count(0)
    assert any_inventory.page(users=()) == []
    assert any_inventory.count(users=[str(user.pk)]).value == 1
    assert any_inventory.page(limit=0) == []


def test_every_engine_names_the_same_busiest_user(any_inventory, django_user_model):
    # Two users with as many sessions: the smallest id, compared as a number (2 before 10).
    users = [django_user_model.objects.create_user(f"u{n}", id=n) for n in (2, 10)]
    engine = __import__(any_inventory.engine, fromlist=["SessionStore"])
    for user in users:
        for _ in range(2):
            store = engine.SessionStore()
            store[SESSION_KEY] = str(user.pk)
            store.save()

    busiest = any_inventory.stats().busiest_user

    if any_inventory.engine == "django.contrib.sessions.backends.cache":
        assert busiest is None  # counting only: it would have to decode every session
    else:
        assert busiest == ("2", 2)
