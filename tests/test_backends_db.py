"""django_sessionkit.backends.db: Django's contract, plus metadata in the same write.

The metadata tests run on both model engines (db and cached_db): the code
under test is the mixin in backends/db.py that they share.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth import alogin, login
from django.contrib.sessions.backends.base import CreateError, UpdateError
from django.contrib.sessions.backends.db import SessionStore as StockStore
from django.db import IntegrityError, connection
from django.test import AsyncRequestFactory, RequestFactory
from django.test.utils import CaptureQueriesContext

from django_sessionkit.backends.base import RequestMetadata, SessionKitStore
from django_sessionkit.backends.cached_db import SessionStore as CachedDBStore
from django_sessionkit.backends.db import SessionStore
from django_sessionkit.middleware import request_metadata
from django_sessionkit.models import Session
from django_sessionkit.public_id import public_id
from tests.session_behaviour import NOW, SessionContract, close_async_connections

BROWSER = RequestMetadata(ip="203.0.113.7", user_agent="Firefox/140")
PHONE = RequestMetadata(ip="2001:db8::1", user_agent="Safari/18")


@pytest.fixture(params=["django.contrib.sessions.backends.db", "django_sessionkit.backends.db"])
def engine(request):
    return request.param


@pytest.fixture(params=[SessionStore, CachedDBStore], ids=["db", "cached_db"])
def ours(request, settings):
    """Each of our model-backed store classes, on an empty cache."""
    from django.core.cache import caches

    caches[settings.SESSION_CACHE_ALIAS].clear()
    yield request.param
    close_async_connections()


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("ada", password="pw")


def new_store(store_class, metadata=BROWSER, key=None):
    store = store_class(key)
    if metadata is not None:
        store.set_request_metadata(metadata)
    return store


def row(key):
    return Session.objects.get(session_key=key)


def data_statements(context):
    """The statements of *context* other than savepoint bookkeeping."""
    return [
        query["sql"]
        for query in context.captured_queries
        if "SAVEPOINT" not in query["sql"].upper()
    ]


# Metadata goes into the same write


@pytest.mark.django_db
def test_insert_writes_metadata(ours, user):
    with time_machine.travel(NOW, tick=False):
        store = new_store(ours)
        store["_auth_user_id"] = str(user.pk)
        store.save()

    saved = row(store.session_key)
    assert saved.public_id == public_id(store.session_key)
    assert saved.user == user
    assert (saved.ip, saved.user_agent) == (BROWSER.ip, BROWSER.user_agent)
    assert saved.created_at == saved.last_activity == NOW
    assert store.loaded_activity == NOW
    assert saved.get_decoded() == {"_auth_user_id": str(user.pk)}


@pytest.mark.django_db
def test_anonymous_session_has_no_user(ours):
    store = new_store(ours)
    store["cart"] = [1, 2]
    store.save()

    assert row(store.session_key).user is None


@pytest.mark.django_db
def test_update_keeps_created_at_and_public_id(ours, user):
    with time_machine.travel(NOW, tick=False) as clock:
        store = new_store(ours)
        store["cart"] = [1]
        store.save()
        key = store.session_key

        clock.move_to(NOW + timedelta(hours=1))
        later = new_store(ours, metadata=PHONE, key=key)
        later["_auth_user_id"] = str(user.pk)
        later.save()

    saved = row(key)
    assert saved.created_at == NOW
    assert saved.last_activity == NOW + timedelta(hours=1)
    assert saved.public_id == public_id(key)
    assert saved.user == user
    assert (saved.ip, saved.user_agent) == (PHONE.ip, PHONE.user_agent)


@pytest.mark.django_db
def test_update_outside_a_request_keeps_ip_and_user_agent(ours):
    store = new_store(ours)
    store["cart"] = [1]
    store.save()

    offline = ours(store.session_key)  # e.g. a management command
    offline["cart"] = [1, 2]
    offline.save()

    saved = row(store.session_key)
    assert (saved.ip, saved.user_agent) == (BROWSER.ip, BROWSER.user_agent)
    assert saved.get_decoded() == {"cart": [1, 2]}


@pytest.mark.django_db
def test_update_with_privacy_settings_clears_what_is_no_longer_stored(ours):
    store = new_store(ours)
    store["cart"] = [1]
    store.save()

    private = new_store(
        ours, metadata=RequestMetadata(ip=None, user_agent=""), key=store.session_key
    )
    private["cart"] = [2]
    private.save()

    saved = row(store.session_key)
    assert (saved.ip, saved.user_agent) == (None, "")


@pytest.mark.django_db
def test_cycle_key_outside_a_request_keeps_stored_ip_and_user_agent(ours):
    store = new_store(ours)
    store["cart"] = [1]
    store.save()

    offline = ours(store.session_key)
    offline["cart"]
    offline.cycle_key()

    saved = row(offline.session_key)
    assert (saved.ip, saved.user_agent) == (BROWSER.ip, BROWSER.user_agent)


@pytest.mark.django_db
def test_user_id_is_converted_to_the_primary_key_type(ours, user):
    store = new_store(ours)
    store["_auth_user_id"] = str(user.pk)
    store.save()

    assert Session.objects.filter(user_id=user.pk).count() == 1


@pytest.mark.django_db
def test_user_id_the_user_model_cannot_hold_is_stored_as_none(ours, caplog):
    store = new_store(ours)
    store["_auth_user_id"] = "not-an-integer"

    with caplog.at_level(logging.WARNING, logger="django_sessionkit.backends.db"):
        store.save()

    assert row(store.session_key).user is None
    assert "cannot hold" in caplog.text
    assert store.session_key not in caplog.text


@pytest.mark.django_db
def test_deleting_a_user_deletes_their_sessions(ours, user, django_user_model):
    other = django_user_model.objects.create_user("bob", password="pw")
    keys = []
    for owner in (user, user, other):
        store = new_store(ours)
        store["_auth_user_id"] = str(owner.pk)
        store.save()
        keys.append(store.session_key)

    user.delete()

    assert list(Session.objects.values_list("session_key", flat=True)) == [keys[2]]


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_async_api_writes_metadata(ours, user):
    store = new_store(ours)
    await store.aset("_auth_user_id", str(user.pk))
    await store.asave()
    first = store.session_key

    await store.acycle_key()
    await store.aset("cart", [1])
    await store.asave()

    saved = await Session.objects.aget(session_key=store.session_key)
    assert store.session_key != first
    assert not await Session.objects.filter(session_key=first).aexists()
    assert saved.user_id == user.pk
    assert (saved.ip, saved.user_agent) == (BROWSER.ip, BROWSER.user_agent)
    assert saved.public_id == public_id(store.session_key)


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_async_update_keeps_created_at_and_stored_metadata(ours):
    with time_machine.travel(NOW, tick=False) as clock:
        store = new_store(ours)
        await store.aset("cart", [1])
        await store.asave()

        clock.move_to(NOW + timedelta(minutes=5))
        offline = ours(store.session_key)
        await offline.aset("cart", [2])
        await offline.asave()

    saved = await Session.objects.aget(session_key=store.session_key)
    assert saved.created_at == NOW
    assert saved.last_activity == NOW + timedelta(minutes=5)
    assert (saved.ip, saved.user_agent) == (BROWSER.ip, BROWSER.user_agent)


@pytest.mark.django_db
def test_login_stores_user_ip_and_user_agent(ours, user, settings):
    settings.SESSION_ENGINE = ours.__module__
    request = RequestFactory().get("/", REMOTE_ADDR="198.51.100.4", HTTP_USER_AGENT="Edge/1")
    request.session = ours()
    request.session.set_request_metadata(request_metadata(request))
    request.session["cart"] = [1]
    request.session.save()
    anonymous = request.session.session_key

    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    request.session.save()  # what the middleware does at the end of the request

    saved = row(request.session.session_key)
    assert request.session.session_key != anonymous
    assert not Session.objects.filter(session_key=anonymous).exists()
    assert saved.user == user
    assert (saved.ip, saved.user_agent) == ("198.51.100.4", "Edge/1")
    assert saved.get_decoded()["cart"] == [1]


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_alogin_stores_user_ip_and_user_agent(ours, user, settings):
    settings.SESSION_ENGINE = ours.__module__
    request = AsyncRequestFactory().get("/", headers={"user-agent": "Edge/1"})
    request.META["REMOTE_ADDR"] = "198.51.100.4"  # the ASGI scope's client
    request.session = ours()
    request.session.set_request_metadata(request_metadata(request))
    await request.session.aset("cart", [1])
    await request.session.asave()
    anonymous = request.session.session_key

    await alogin(request, user, backend="django.contrib.auth.backends.ModelBackend")
    await request.session.asave()

    saved = await Session.objects.select_related("user").aget(
        session_key=request.session.session_key
    )
    assert request.session.session_key != anonymous
    assert not await Session.objects.filter(session_key=anonymous).aexists()
    assert saved.user == user
    assert (saved.ip, saved.user_agent) == ("198.51.100.4", "Edge/1")
    assert saved.get_decoded()["cart"] == [1]


# Loading and activity


@pytest.mark.django_db
def test_load_is_one_select_and_remembers_last_activity(user):
    with time_machine.travel(NOW, tick=False):
        key = save_new(SessionStore, {"_auth_user_id": str(user.pk)})

    store = SessionStore(key)
    with CaptureQueriesContext(connection) as queries:
        assert store["_auth_user_id"] == str(user.pk)

    assert len(queries) == 1
    assert store.loaded_activity == NOW


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_aload_remembers_last_activity():
    with time_machine.travel(NOW, tick=False):
        store = new_store(SessionStore)
        await store.aset("cart", [1])
        await store.asave()

    loaded = SessionStore(store.session_key)
    assert await loaded.aget("cart") == [1]
    assert loaded.loaded_activity == NOW
    close_async_connections()


@pytest.mark.django_db
def test_a_missing_session_has_no_loaded_activity():
    store = SessionStore("a" * 32)
    store.load()

    assert store.loaded_activity is None


@pytest.mark.django_db
@pytest.mark.parametrize("operation", ["create", "update", "load"])
def test_same_number_of_queries_as_django(operation):
    def run(store_class):
        key = save_new(store_class, {"cart": [1]})
        store = store_class(key if operation != "create" else None)
        with CaptureQueriesContext(connection) as context:
            if operation == "load":
                store.load()
            else:
                store["cart"] = [2]
                store.save()
        return data_statements(context)

    ours, stock = run(SessionStore), run(StockStore)

    assert len(ours) == len(stock)
    assert len([sql for sql in ours if sql.startswith(("INSERT", "UPDATE"))]) == (
        0 if operation == "load" else 1
    )


@pytest.mark.django_db
def test_touch_activity_is_one_update_of_last_activity():
    with time_machine.travel(NOW, tick=False):
        key = save_new(SessionStore, {"cart": [1]})
    before = row(key)
    store = SessionStore(key)
    store.load()

    with CaptureQueriesContext(connection) as queries:
        store.touch_activity(NOW + timedelta(minutes=2))

    after = row(key)
    assert len(queries) == 1
    assert queries[0]["sql"].startswith("UPDATE")
    assert after.last_activity == store.loaded_activity == NOW + timedelta(minutes=2)
    assert (after.session_data, after.expire_date) == (before.session_data, before.expire_date)


@pytest.mark.django_db
def test_touch_activity_without_a_key_does_nothing():
    with CaptureQueriesContext(connection) as queries:
        SessionStore().touch_activity(NOW)

    assert len(queries) == 0


# Django's error semantics are kept


@pytest.mark.django_db
def test_saving_a_session_deleted_meanwhile_raises_update_error(ours):
    key = save_new(ours, {"cart": [1]})
    store = ours(key)
    store["cart"] = [2]
    Session.objects.filter(session_key=key).delete()  # a concurrent logout

    with pytest.raises(UpdateError):
        store.save()


@pytest.mark.django_db
def test_must_create_on_a_taken_key_raises_create_error(ours):
    key = save_new(ours, {"cart": [1]})
    store = ours(key)

    with pytest.raises(CreateError):
        store.save(must_create=True)


@pytest.mark.django_db(transaction=True)
def test_insert_failing_for_another_reason_is_raised_not_retried(ours):
    # Django would retry create() with new keys forever.
    store = new_store(ours)
    store["_auth_user_id"] = "424242"  # no such user

    with pytest.raises(IntegrityError):
        store.save()

    assert not Session.objects.exists()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_async_insert_failing_for_another_reason_is_raised_not_retried(ours):
    store = new_store(ours)
    await store.aset("_auth_user_id", "424242")

    with pytest.raises(IntegrityError):
        await store.asave()


# Drop-in: data is interchangeable with Django's engine


@pytest.mark.django_db
def test_session_data_written_by_django_decodes_in_ours():
    stock = StockStore()
    encoded = stock.encode({"_auth_user_id": "1", "cart": [1]})

    assert SessionStore().decode(encoded) == {"_auth_user_id": "1", "cart": [1]}


@pytest.mark.django_db
def test_tampered_row_loads_as_empty_session():
    key = save_new(SessionStore, {"cart": [1]})
    saved = row(key)
    Session.objects.filter(session_key=key).update(session_data=saved.session_data[:-2] + "xx")

    assert SessionStore(key).load() == {}


def save_new(store_class, data):
    store = store_class()
    if isinstance(store, SessionKitStore):
        store.set_request_metadata(BROWSER)
    store.update(data)
    store.save()
    return store.session_key


@pytest.mark.django_db
def test_the_table_has_one_index_led_by_expire_date():
    """(expire_date, key) serves the expiry queries; another expire_date index only costs writes."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, Session._meta.db_table)
    led_by_expiry = [
        columns
        for columns in (c["columns"] for c in constraints.values() if c["index"])
        if columns and columns[0] == "expire_date"
    ]
    assert led_by_expiry == [["expire_date", "session_key"]]


class TestSessionContract(SessionContract):
    """Django's documented session behaviour, on Django's database engine and ours."""
