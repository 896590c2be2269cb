"""Django's documented session behaviour, as a contract any engine must keep.

Written against https://docs.djangoproject.com/en/5.2/topics/http/sessions/
and run against stock engines too, so a pass proves an engine is a drop-in.
Every behaviour is tested on the sync API and on its async twin.

Reuse it from a test module, as Django's own suite reuses its
``SessionTestsMixin``::

    from tests.session_behaviour import SessionContract

    @pytest.fixture
    def engine():
        return "django_sessionkit.backends.db"

    class TestDatabaseEngine(SessionContract):
        pass

``store_class`` (the engine's ``SessionStore``) follows from ``engine``. The
storage is prepared by the ``session_storage`` fixture (``tests/conftest.py``);
its default grants the database (``transactional_db``, since async ORM calls
run in another thread). A module whose engine keeps sessions elsewhere
overrides ``session_storage``, e.g. to empty its cache and set
``SESSION_CACHE_ALIAS``. An engine that cannot follow a behaviour (Redis TTLs
run on the server's clock, not a frozen one) overrides that test method.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import time_machine
from asgiref.sync import SyncToAsync
from django.contrib.sessions.backends.base import VALID_KEY_CHARS
from django.db import connections

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=timezone.utc)
UNSTORED_KEY = "a" * 32


def close_async_connections() -> None:
    """Close the database connections of asgiref's worker thread.

    pytest-asyncio runs a test without Django's ``async_to_sync`` wrapper, so
    the ORM calls of the async API run in asgiref's single worker thread. Its
    connections would outlive the test and keep PostgreSQL from dropping the
    test database at the end of the run.
    """
    SyncToAsync.single_thread_executor.submit(connections.close_all).result()


def save_session(store_class: Any, data: dict[str, Any], expiry: Any = None) -> str:
    session = store_class()
    session.update(data)
    if expiry is not None:
        session.set_expiry(expiry)
    session.save()
    return str(session.session_key)


async def asave_session(store_class: Any, data: dict[str, Any], expiry: Any = None) -> str:
    session = store_class()
    await session.aupdate(data)
    if expiry is not None:
        await session.aset_expiry(expiry)
    await session.asave()
    return str(session.session_key)


def stored(store_class: Any, key: str) -> dict[str, Any] | None:
    """Return what the engine loads for *key*, None when it has no live session."""
    session = store_class(key)
    data = session.load()
    # Every engine forgets the key when it finds no live session under it.
    return None if session.session_key is None else data


async def astored(store_class: Any, key: str) -> dict[str, Any] | None:
    session = store_class(key)
    data = await session.aload()
    return None if session.session_key is None else data


class SessionContract:
    """Django's documented session behaviour: subclass it once per engine under test.

    The subclass's module provides an ``engine`` fixture (the dotted path, or
    parametrized over several); the ``store_class`` and ``session_storage``
    fixtures of ``tests/conftest.py`` follow from it, and a module whose engine
    keeps sessions elsewhere than the database overrides ``session_storage``.
    An engine that cannot follow a behaviour overrides that test method.
    """

    # The dictionary API and the accessed / modified flags

    def test_new_session_is_empty(self, store_class):
        session = store_class()

        assert session.session_key is None
        assert session.is_empty()
        assert not session.accessed
        assert not session.modified

    def test_dict_api(self, store_class):
        session = store_class()
        session["a"] = 1

        assert session.modified
        assert "a" in session
        assert session["a"] == 1
        assert session.get("missing") is None
        assert session.get("missing", 2) == 2
        assert session.setdefault("a", 5) == 1
        assert session.setdefault("c", 3) == 3
        session.update({"d": 4})
        assert dict(session.items()) == {"a": 1, "c": 3, "d": 4}
        assert sorted(session.keys()) == ["a", "c", "d"]
        assert sorted(session.values()) == [1, 3, 4]
        assert session.has_key("d")
        assert session.pop("a") == 1
        assert session.pop("a", "gone") == "gone"
        with pytest.raises(KeyError):
            session.pop("a")
        del session["c"]
        with pytest.raises(KeyError):
            session["c"]
        session.clear()
        assert dict(session.items()) == {}

    @pytest.mark.asyncio
    async def test_dict_api_async(self, store_class):
        session = store_class()
        await session.aset("a", 1)

        assert session.modified
        assert await session.ahas_key("a")
        assert await session.aget("a") == 1
        assert await session.aget("missing") is None
        assert await session.aget("missing", 2) == 2
        assert await session.asetdefault("a", 5) == 1
        assert await session.asetdefault("c", 3) == 3
        await session.aupdate({"d": 4})
        assert dict(await session.aitems()) == {"a": 1, "c": 3, "d": 4}
        assert sorted(await session.akeys()) == ["a", "c", "d"]
        assert sorted(await session.avalues()) == [1, 3, 4]
        assert await session.apop("a") == 1
        assert await session.apop("a", "gone") == "gone"
        with pytest.raises(KeyError):
            await session.apop("a")

    def test_accessed_and_modified_flags(self, store_class):
        key = save_session(store_class, {"k": "v"})
        session = store_class(key)
        assert not session.accessed

        assert session.get("k") == "v"
        assert session.accessed
        session.pop("missing", None)
        session.setdefault("k", "other")
        assert not session.modified

        session["k"] = "w"
        assert session.modified
        popping = store_class(key)
        popping.pop("k")
        assert popping.modified

    @pytest.mark.asyncio
    async def test_accessed_and_modified_flags_async(self, store_class):
        key = await asave_session(store_class, {"k": "v"})
        session = store_class(key)
        assert not session.accessed

        assert await session.aget("k") == "v"
        assert session.accessed
        await session.apop("missing", None)
        await session.asetdefault("k", "other")
        assert not session.modified

        await session.aset("k", "w")
        assert session.modified
        popping = store_class(key)
        await popping.apop("k")
        assert popping.modified

    # save / load / create / exists / delete

    def test_load_of_a_store_without_a_key_is_empty(self, store_class):
        # Django's SessionMiddlewareTests.test_session_save_on_500 loads such a store.
        session = store_class()

        assert session.load() == {}
        assert session.session_key is None

    @pytest.mark.asyncio
    async def test_aload_of_a_store_without_a_key_is_empty(self, store_class):
        session = store_class()

        assert await session.aload() == {}
        assert session.session_key is None

    def test_save_and_load(self, store_class):
        session = store_class()
        session["k"] = "v"
        session.save()
        key = session.session_key

        assert key is not None
        assert set(key) <= set(VALID_KEY_CHARS)
        assert session.exists(key)
        assert stored(store_class, key) == {"k": "v"}

        session = store_class(key)
        session["k"] = "w"
        session.save()
        assert session.session_key == key
        assert stored(store_class, key) == {"k": "w"}

    @pytest.mark.asyncio
    async def test_save_and_load_async(self, store_class):
        session = store_class()
        await session.aset("k", "v")
        await session.asave()
        key = session.session_key

        assert key is not None
        assert await session.aexists(key)
        assert await astored(store_class, key) == {"k": "v"}

        session = store_class(key)
        await session.aset("k", "w")
        await session.asave()
        assert session.session_key == key
        assert await astored(store_class, key) == {"k": "w"}

    def test_create(self, store_class):
        session = store_class()
        session.create()

        assert session.modified
        assert session.exists(session.session_key)
        assert stored(store_class, session.session_key) == {}
        other = store_class()
        other.create()
        assert other.session_key != session.session_key

    @pytest.mark.asyncio
    async def test_create_async(self, store_class):
        session = store_class()
        await session.acreate()

        assert session.modified
        assert await session.aexists(session.session_key)
        assert await astored(store_class, session.session_key) == {}

    def test_exists(self, store_class):
        key = save_session(store_class, {"k": "v"})

        assert store_class().exists(key)
        assert not store_class().exists(UNSTORED_KEY)

    @pytest.mark.asyncio
    async def test_exists_async(self, store_class):
        key = await asave_session(store_class, {"k": "v"})

        assert await store_class().aexists(key)
        assert not await store_class().aexists(UNSTORED_KEY)

    def test_delete(self, store_class):
        key = save_session(store_class, {"k": "v"})
        other = save_session(store_class, {"k": "other"})
        session = store_class(key)

        session.delete()

        assert not session.exists(key)
        assert stored(store_class, key) is None
        store_class().delete(other)
        assert stored(store_class, other) is None
        store_class().delete()  # a session without a key: nothing to do

    @pytest.mark.asyncio
    async def test_delete_async(self, store_class):
        key = await asave_session(store_class, {"k": "v"})
        other = await asave_session(store_class, {"k": "other"})
        session = store_class(key)

        await session.adelete()

        assert not await session.aexists(key)
        assert await astored(store_class, key) is None
        await store_class().adelete(other)
        assert await astored(store_class, other) is None
        await store_class().adelete()

    # cycle_key and flush

    def test_cycle_key_keeps_data_under_a_new_key(self, store_class):
        old = save_session(store_class, {"k": "v"})
        session = store_class(old)
        session["extra"] = 1

        session.cycle_key()

        new = session.session_key
        assert new != old
        assert session["k"] == "v"
        assert not session.exists(old)
        assert stored(store_class, old) is None
        session.save()
        assert stored(store_class, new) == {"k": "v", "extra": 1}

    @pytest.mark.asyncio
    async def test_cycle_key_keeps_data_under_a_new_key_async(self, store_class):
        old = await asave_session(store_class, {"k": "v"})
        session = store_class(old)
        await session.aset("extra", 1)

        await session.acycle_key()

        new = session.session_key
        assert new != old
        assert await session.aget("k") == "v"
        assert not await session.aexists(old)
        assert await astored(store_class, old) is None
        await session.asave()
        assert await astored(store_class, new) == {"k": "v", "extra": 1}

    def test_flush_clears_data_and_key(self, store_class):
        key = save_session(store_class, {"k": "v"})
        session = store_class(key)

        session.flush()

        assert session.session_key is None
        assert dict(session.items()) == {}
        assert session.modified
        assert not session.exists(key)
        assert stored(store_class, key) is None

    @pytest.mark.asyncio
    async def test_flush_clears_data_and_key_async(self, store_class):
        key = await asave_session(store_class, {"k": "v"})
        session = store_class(key)

        await session.aflush()

        assert session.session_key is None
        assert dict(await session.aitems()) == {}
        assert session.modified
        assert not await session.aexists(key)
        assert await astored(store_class, key) is None

    # Expiry in all its forms, on a frozen clock

    def test_set_expiry_seconds_is_relative_to_the_last_save(self, store_class):
        with time_machine.travel(NOW, tick=False) as clock:
            key = save_session(store_class, {"k": "v"}, expiry=300)
            session = store_class(key)
            assert session.get_expiry_age() == 300
            assert session.get_expiry_date() == NOW + timedelta(seconds=300)
            assert not session.get_expire_at_browser_close()

            clock.move_to(NOW + timedelta(seconds=299))
            session = store_class(key)
            assert session.get_expiry_age() == 300  # inactivity, not age
            session["k"] = "w"
            session.save()  # activity pushes the expiry forward

            clock.move_to(NOW + timedelta(seconds=590))
            assert stored(store_class, key) == {"k": "w", "_session_expiry": 300}
            clock.move_to(NOW + timedelta(seconds=600))
            assert stored(store_class, key) is None

    @pytest.mark.asyncio
    async def test_set_expiry_seconds_is_relative_to_the_last_save_async(self, store_class):
        with time_machine.travel(NOW, tick=False) as clock:
            key = await asave_session(store_class, {"k": "v"}, expiry=300)
            session = store_class(key)
            assert await session.aget_expiry_age() == 300
            assert await session.aget_expiry_date() == NOW + timedelta(seconds=300)
            assert not await session.aget_expire_at_browser_close()

            clock.move_to(NOW + timedelta(seconds=299))
            session = store_class(key)
            await session.aset("k", "w")
            await session.asave()

            clock.move_to(NOW + timedelta(seconds=590))
            assert await astored(store_class, key) == {"k": "w", "_session_expiry": 300}
            clock.move_to(NOW + timedelta(seconds=600))
            assert await astored(store_class, key) is None

    @pytest.mark.parametrize("expiry", [NOW + timedelta(minutes=10), timedelta(minutes=10)])
    def test_set_expiry_datetime_or_timedelta_is_a_fixed_time(self, store_class, expiry):
        with time_machine.travel(NOW, tick=False) as clock:
            key = save_session(store_class, {"k": "v"}, expiry=expiry)

            clock.move_to(NOW + timedelta(minutes=4))
            session = store_class(key)
            assert session.get_expiry_date() == NOW + timedelta(minutes=10)
            assert session.get_expiry_age() == 6 * 60
            assert not session.get_expire_at_browser_close()

            clock.move_to(NOW + timedelta(minutes=10, seconds=1))
            assert stored(store_class, key) is None

    @pytest.mark.asyncio
    @pytest.mark.parametrize("expiry", [NOW + timedelta(minutes=10), timedelta(minutes=10)])
    async def test_set_expiry_datetime_or_timedelta_is_a_fixed_time_async(
        self, store_class, expiry
    ):
        with time_machine.travel(NOW, tick=False) as clock:
            key = await asave_session(store_class, {"k": "v"}, expiry=expiry)

            clock.move_to(NOW + timedelta(minutes=4))
            session = store_class(key)
            assert await session.aget_expiry_date() == NOW + timedelta(minutes=10)
            assert await session.aget_expiry_age() == 6 * 60

            clock.move_to(NOW + timedelta(minutes=10, seconds=1))
            assert await astored(store_class, key) is None

    def test_set_expiry_zero_expires_at_browser_close(self, store_class, settings):
        key = save_session(store_class, {"k": "v"}, expiry=0)
        session = store_class(key)

        assert session.get_expire_at_browser_close()
        # The server side still keeps it for the global cookie age.
        assert session.get_expiry_age() == settings.SESSION_COOKIE_AGE
        assert session["k"] == "v"

    @pytest.mark.asyncio
    async def test_set_expiry_zero_expires_at_browser_close_async(self, store_class, settings):
        key = await asave_session(store_class, {"k": "v"}, expiry=0)
        session = store_class(key)

        assert await session.aget_expire_at_browser_close()
        assert await session.aget_expiry_age() == settings.SESSION_COOKIE_AGE

    @pytest.mark.parametrize("at_browser_close", [False, True])
    def test_set_expiry_none_restores_the_global_policy(
        self, store_class, settings, at_browser_close
    ):
        settings.SESSION_EXPIRE_AT_BROWSER_CLOSE = at_browser_close
        key = save_session(store_class, {"k": "v"}, expiry=300)
        session = store_class(key)

        session.set_expiry(None)
        session.set_expiry(None)  # removing twice is fine

        assert "_session_expiry" not in session
        assert session.get_expire_at_browser_close() is at_browser_close
        assert session.get_expiry_age() == settings.SESSION_COOKIE_AGE

    @pytest.mark.asyncio
    @pytest.mark.parametrize("at_browser_close", [False, True])
    async def test_set_expiry_none_restores_the_global_policy_async(
        self, store_class, settings, at_browser_close
    ):
        settings.SESSION_EXPIRE_AT_BROWSER_CLOSE = at_browser_close
        key = await asave_session(store_class, {"k": "v"}, expiry=300)
        session = store_class(key)

        await session.aset_expiry(None)
        await session.aset_expiry(None)

        assert not await session.ahas_key("_session_expiry")
        assert await session.aget_expire_at_browser_close() is at_browser_close
        assert await session.aget_expiry_age() == settings.SESSION_COOKIE_AGE

    def test_default_expiry_is_the_cookie_age(self, store_class, settings):
        with time_machine.travel(NOW, tick=False) as clock:
            key = save_session(store_class, {"k": "v"})

            clock.move_to(NOW + timedelta(seconds=settings.SESSION_COOKIE_AGE - 1))
            assert stored(store_class, key) == {"k": "v"}
            clock.move_to(NOW + timedelta(seconds=settings.SESSION_COOKIE_AGE + 1))
            assert stored(store_class, key) is None

    @pytest.mark.asyncio
    async def test_default_expiry_is_the_cookie_age_async(self, store_class, settings):
        with time_machine.travel(NOW, tick=False) as clock:
            key = await asave_session(store_class, {"k": "v"})

            clock.move_to(NOW + timedelta(seconds=settings.SESSION_COOKIE_AGE - 1))
            assert await astored(store_class, key) == {"k": "v"}
            clock.move_to(NOW + timedelta(seconds=settings.SESSION_COOKIE_AGE + 1))
            assert await astored(store_class, key) is None

    def test_expiry_age_and_date_accept_modification_and_expiry(self, store_class, settings):
        key = save_session(store_class, {"k": "v"}, expiry=300)
        session = store_class(key)
        later = NOW + timedelta(seconds=10)

        assert session.get_expiry_age(modification=NOW, expiry=later) == 10
        assert session.get_expiry_age(expiry=60) == 60
        assert session.get_expiry_age(expiry=None) == settings.SESSION_COOKIE_AGE
        assert session.get_expiry_date(modification=NOW, expiry=60) == NOW + timedelta(seconds=60)
        assert session.get_expiry_date(expiry=later) == later
        assert session.get_expiry_date(modification=NOW, expiry=None) == NOW + timedelta(
            seconds=settings.SESSION_COOKIE_AGE
        )
        # With expiry given, the session is not loaded.
        assert not session.accessed

    @pytest.mark.asyncio
    async def test_expiry_age_and_date_accept_modification_and_expiry_async(
        self, store_class, settings
    ):
        key = await asave_session(store_class, {"k": "v"}, expiry=300)
        session = store_class(key)
        later = NOW + timedelta(seconds=10)

        assert await session.aget_expiry_age(modification=NOW, expiry=later) == 10
        assert await session.aget_expiry_age(expiry=None) == settings.SESSION_COOKIE_AGE
        assert await session.aget_expiry_date(modification=NOW, expiry=60) == NOW + timedelta(
            seconds=60
        )
        assert not session.accessed

    def test_clear_expired_removes_only_expired_sessions(self, store_class):
        with time_machine.travel(NOW, tick=False) as clock:
            short = save_session(store_class, {"k": "short"}, expiry=60)
            long = save_session(store_class, {"k": "long"}, expiry=3600)

            clock.move_to(NOW + timedelta(seconds=61))
            store_class.clear_expired()

            assert not store_class().exists(short)
            assert store_class().exists(long)
            assert stored(store_class, long) == {"k": "long", "_session_expiry": 3600}

    @pytest.mark.asyncio
    async def test_clear_expired_removes_only_expired_sessions_async(self, store_class):
        with time_machine.travel(NOW, tick=False) as clock:
            short = await asave_session(store_class, {"k": "short"}, expiry=60)
            long = await asave_session(store_class, {"k": "long"}, expiry=3600)

            clock.move_to(NOW + timedelta(seconds=61))
            await store_class.aclear_expired()

            assert not await store_class().aexists(short)
            assert await store_class().aexists(long)

    # The test cookie

    def test_test_cookie(self, store_class):
        session = store_class()
        assert not session.test_cookie_worked()
        session.set_test_cookie()
        session.save()

        session = store_class(session.session_key)
        assert session.test_cookie_worked()
        session.delete_test_cookie()
        assert not session.test_cookie_worked()
        assert session.modified

    @pytest.mark.asyncio
    async def test_test_cookie_async(self, store_class):
        session = store_class()
        assert not await session.atest_cookie_worked()
        await session.aset_test_cookie()
        await session.asave()

        session = store_class(session.session_key)
        assert await session.atest_cookie_worked()
        await session.adelete_test_cookie()
        assert not await session.atest_cookie_worked()
        # Django's adelete_test_cookie() does not set ``modified`` (the sync twin
        # does), so save explicitly.
        await session.asave()
        assert not await store_class(session.session_key).atest_cookie_worked()

    # Keys the client sends

    @pytest.mark.parametrize("key", [None, "", "short", "1234567"])
    def test_missing_or_too_short_keys_are_rejected(self, store_class, key):
        assert store_class(key).session_key is None

    def test_unknown_key_gets_a_new_key_on_save(self, store_class):
        # A key the client made up must not become a session key: no fixation.
        for planted in (UNSTORED_KEY, "Not-A-Django_Key.1234"):
            session = store_class(planted)
            session["k"] = "v"
            session.save()

            assert session.session_key not in (None, planted)
            assert not session.exists(planted)
            assert stored(store_class, session.session_key) == {"k": "v"}

    @pytest.mark.asyncio
    async def test_unknown_key_gets_a_new_key_on_save_async(self, store_class):
        for planted in (UNSTORED_KEY, "Not-A-Django_Key.1234"):
            session = store_class(planted)
            await session.aset("k", "v")
            await session.asave()

            assert session.session_key not in (None, planted)
            assert not await session.aexists(planted)
            assert await astored(store_class, session.session_key) == {"k": "v"}

    def test_tampered_data_decodes_as_empty(self, store_class):
        session = store_class()
        encoded = session.encode({"k": "v"})
        tampered = encoded[:-1] + ("A" if encoded[-1] != "A" else "B")

        assert session.decode(encoded) == {"k": "v"}
        assert session.decode(tampered) == {}
        assert session.decode("not even base64") == {}
