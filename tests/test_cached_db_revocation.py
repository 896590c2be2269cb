"""cached_db: a revocation wins over every request in flight, and over deleted users.

The races run on real threads against the real database and cache: the
request in flight is paused exactly between its database access and its
cache write (by wrapping the store's own database read, or on the commit of
its write), the revocation runs meanwhile, then the request carries on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import SESSION_KEY, get_user_model
from django.contrib.auth.models import User
from django.core.cache import caches
from django.db import connection, transaction
from django.db.models.signals import post_save, pre_delete
from django.http import HttpResponse
from django.test.utils import CaptureQueriesContext
from django.urls import path
from django.utils import timezone

from django_sessionkit.backends.cached_db import SessionStore
from django_sessionkit.inventory import get_inventory
from django_sessionkit.models import Session
from django_sessionkit.public_id import public_id
from tests.engines import close_thread_connections

ENGINE = "django_sessionkit.backends.cached_db"
WAIT = 30  # seconds before a stuck thread fails the test instead of hanging it


def write(request):
    request.session["visits"] = request.session.get("visits", 0) + 1
    return HttpResponse(str(request.session["visits"]))


urlpatterns = [path("write/", write)]

pytestmark = pytest.mark.urls(__name__)


@pytest.fixture(params=["default", "redis"])
def cache(request, settings):
    """The session cache: local memory, or django-redis on the real Redis server."""
    if request.param == "redis":
        request.getfixturevalue("redis_cache")
    settings.SESSION_ENGINE = ENGINE
    settings.SESSION_CACHE_ALIAS = request.param
    caches[request.param].clear()
    return caches[request.param]


@pytest.fixture
def user(transactional_db):
    return User.objects.create_user("alice")


def logged_in(user, **data):
    store = SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store.update(data)
    store.save()
    return store.session_key


class Worker(threading.Thread):
    """Run *target* on its own thread and database connections; join() re-raises."""

    def __init__(self, target: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.target = target
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.target()
        except BaseException as error:
            self.error = error
        finally:
            close_thread_connections()

    def join(self, timeout: float | None = WAIT) -> None:
        super().join(timeout)
        assert not self.is_alive(), "the request in flight never finished"
        if self.error is not None:
            raise self.error


class Race:
    """The revocation runs while the request in flight waits at its race point."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.revoked = threading.Event()
        self.keys: list[str] = []

    def pause(self, key: str | None = None) -> None:
        """Called on the request's thread at the race point."""
        if key is not None:
            self.keys.append(key)
        self.reached.set()
        assert self.revoked.wait(WAIT), "the revocation never came"

    def run(self, request: Callable[[], Any], revoke: Callable[[], Any]) -> Any:
        worker = Worker(request)
        worker.start()
        assert self.reached.wait(WAIT), "the request never reached its race point"
        try:
            revoke()
        finally:
            self.revoked.set()
        worker.join()
        return worker.result


@pytest.fixture
def race() -> Race:
    return Race()


def revocation(kind: str, user: Any, key: str) -> Callable[[], Any]:
    inventory = get_inventory()

    def revoke() -> None:
        if kind == "revoke":
            assert inventory.revoke(public_id(key)) is True
        elif kind == "revoke_user":
            assert inventory.revoke_user(str(user.pk)) >= 1
        elif kind == "clear_inactive":
            before = timezone.now() - timedelta(days=1)
            assert sum(inventory.clear_inactive(before=before)) == 1
        else:  # a logout on another request
            SessionStore(key).delete()

    return revoke


def assert_revoked(key: str, user: Any) -> None:
    assert SessionStore(key).load() == {}
    inventory = get_inventory()
    assert inventory.get(public_id(key)) is None
    assert public_id(key) not in {info.public_id for info in inventory.page()}
    assert public_id(key) not in {info.public_id for info in inventory.for_user(str(user.pk))}


@pytest.mark.parametrize("kind", ["revoke", "revoke_user", "clear_inactive", "logout"])
def test_revoked_between_a_readers_database_read_and_its_cache_fill(cache, user, race, kind):
    key = logged_in(user, cart=[1])
    if kind == "clear_inactive":
        Session.objects.filter(pk=key).update(last_activity=timezone.now() - timedelta(days=9))
    cache.delete(SessionStore.cache_key_prefix + key)  # the reader misses
    reader = SessionStore(key)
    read_row = reader._get_session_from_db

    def paused_read() -> Any:
        row = read_row()
        race.pause()
        return row

    reader._get_session_from_db = paused_read

    data = race.run(reader.load, revocation(kind, user, key))

    assert data["cart"] == [1]  # the request in flight still saw it
    assert_revoked(key, user)


@pytest.fixture
def paused_on_commit(race) -> Iterator[None]:
    """Pause a request's save after its row write has committed, before its cache write."""

    def on_save(sender: Any, instance: Session, **kwargs: Any) -> None:
        if isinstance(threading.current_thread(), Worker):
            key = instance.session_key
            transaction.on_commit(lambda: race.pause(key))

    post_save.connect(on_save, sender=Session, dispatch_uid=__name__)
    yield
    post_save.disconnect(sender=Session, dispatch_uid=__name__)


@pytest.mark.parametrize("kind", ["revoke", "revoke_user", "logout"])
def test_revoked_between_a_writers_update_and_its_cache_write(
    cache, user, race, paused_on_commit, kind
):
    key = logged_in(user, cart=[1])
    writer = SessionStore(key)
    writer["cart"] = [1, 2]

    race.run(writer.save, revocation(kind, user, key))

    assert race.keys == [key]
    assert_revoked(key, user)


def test_revoked_between_a_logins_insert_and_its_cache_write(cache, user, race, paused_on_commit):
    # A new login's session, reached by "log out everywhere" before its cache write.
    key = logged_in(user, cart=[1])
    writer = SessionStore(key)
    writer.load()

    race.run(writer.cycle_key, revocation("revoke_user", user, key))

    (new_key,) = race.keys
    assert new_key != key
    assert_revoked(new_key, user)
    assert_revoked(key, user)


# Deleted users: their cached sessions go with their rows


def test_deleting_a_user_lets_their_browser_write_again(client, settings, redis_cache, db):
    settings.SESSION_ENGINE = ENGINE
    settings.SESSION_CACHE_ALIAS = "redis"
    alice = User.objects.create_user("alice")
    client.force_login(alice)
    assert client.get("/write/").status_code == 200
    key = client.cookies[django_settings.SESSION_COOKIE_NAME].value

    alice.delete()
    response = client.get("/write/")

    assert response.status_code == 200
    assert response.content == b"1"  # a fresh anonymous session
    assert client.cookies[django_settings.SESSION_COOKIE_NAME].value != key
    assert SessionStore(key).load() == {}


@pytest.fixture
def proxy_user(settings):
    """A proxy of the user model, defined after start-up, and ready() run again for it."""
    from django.apps import apps

    class StaffUser(get_user_model()):
        class Meta:
            proxy = True
            app_label = "django_sessionkit"

    apps.get_app_config("django_sessionkit").ready()
    yield StaffUser
    pre_delete.disconnect(
        sender=StaffUser, dispatch_uid="django_sessionkit.evict_cached_sessions_of_deleted_user"
    )
    del apps.all_models["django_sessionkit"]["staffuser"]
    apps.clear_cache()


def test_deleting_a_user_through_a_proxy_model_evicts_their_sessions(
    settings, redis_cache, db, proxy_user
):
    settings.SESSION_ENGINE = ENGINE
    settings.SESSION_CACHE_ALIAS = "redis"
    alice = User.objects.create_user("alice")
    key = logged_in(alice, cart=[1])

    proxy_user.objects.get(pk=alice.pk).delete()

    assert SessionStore(key).load() == {}


def test_deleting_a_user_leaves_other_users_sessions_cached(settings, redis_cache, db):
    settings.SESSION_ENGINE = ENGINE
    settings.SESSION_CACHE_ALIAS = "redis"
    alice, bob = User.objects.create_user("alice"), User.objects.create_user("bob")
    gone, kept = logged_in(alice, cart=[1]), logged_in(bob, cart=[2])

    alice.delete()

    assert SessionStore(gone).load() == {}
    with CaptureQueriesContext(connection) as queries:
        assert SessionStore(kept).load()["cart"] == [2]
    assert len(queries) == 0  # still served from the cache


@pytest.mark.parametrize(
    "engine",
    [
        "django.contrib.sessions.backends.signed_cookies",  # no inventory at all
        "django_sessionkit.backends.db",  # nothing cached
        "django.contrib.sessions.backends.cached_db",  # rows that name no user
    ],
)
def test_deleting_a_user_on_other_engines_deletes_the_user(settings, db, engine):
    settings.SESSION_ENGINE = engine
    alice = User.objects.create_user("alice")

    alice.delete()

    assert not User.objects.filter(username="alice").exists()


def test_deleting_a_user_with_the_cache_down_deletes_the_user_and_logs(
    settings, db, caplog, private_redis
):
    server = private_redis("private", SOCKET_CONNECT_TIMEOUT=0.5, SOCKET_TIMEOUT=0.5)
    settings.SESSION_ENGINE = ENGINE
    alice = User.objects.create_user("alice")
    key = logged_in(alice, cart=[1])
    server.stop()

    with caplog.at_level(logging.ERROR, logger="django_sessionkit.inventory.model"):
        alice.delete()

    assert not User.objects.filter(username="alice").exists()
    assert not Session.objects.filter(pk=key).exists()
    assert "Could not evict the 1 cached session(s) of a deleted user" in caplog.text
    assert key not in caplog.text
