from __future__ import annotations

import json
import logging
import random
import signal
import time
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth import SESSION_KEY
from django.contrib.auth.models import User
from django.contrib.sessions.backends.base import CreateError, UpdateError
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import path
from django_redis import get_redis_connection
from redis import connection as redis_connection
from redis.backoff import NoBackoff
from redis.retry import Retry

from django_sessionkit.backends import redis as backend
from django_sessionkit.backends.base import RequestMetadata, SessionStorageUnavailable
from django_sessionkit.backends.redis import scripts
from django_sessionkit.backends.redis.codec import user_digest
from django_sessionkit.public_id import public_id
from tests.engines import use_sessionkit_middleware
from tests.session_behaviour import NOW, SessionContract, asave_session

ENGINE = "django_sessionkit.backends.redis"
UA = "Mozilla/5.0 (X11; Linux x86_64) Firefox/126.0"


@pytest.fixture
def engine():
    return ENGINE


@pytest.fixture
def session_storage(redis_cache, settings):
    """The contract suite's storage hook: an empty Redis behind SESSION_CACHE_ALIAS."""
    settings.SESSION_CACHE_ALIAS = "redis"


@pytest.fixture
def store(session_storage, settings):
    settings.SESSION_ENGINE = ENGINE
    return backend.SessionStore


@pytest.fixture
def keyspace(store):
    return backend.Keyspace("redis")


@pytest.fixture
def redis(store):
    return get_redis_connection("redis")


def stored_hash(redis: Any, keyspace: backend.Keyspace, key: str) -> dict[str, str]:
    raw = redis.hgetall(keyspace.session(public_id(key)))
    return {k.decode(): v.decode() for k, v in raw.items()}


def save(
    store: Any, data: dict[str, Any], *, metadata: RequestMetadata | None = None, expiry: Any = None
) -> str:
    session = store()
    if metadata is not None:
        session.set_request_metadata(metadata)
    session.update(data)
    if expiry is not None:
        session.set_expiry(expiry)
    session.save()
    return session.session_key


def index_entries(keyspace: backend.Keyspace, name: str) -> dict[str, float]:
    """Return the entries of the chunked index *name*, checking its invariants."""
    redis = keyspace.client()
    directory = redis.zrange(keyspace.directory(name), 0, -1, withscores=True)
    entries: dict[str, float] = {}
    previous_max = None
    for chunk_id, minimum in directory:
        chunk = redis.zrange(keyspace.chunk(name, chunk_id.decode()), 0, -1, withscores=True)
        assert chunk, "an empty chunk stays in the directory"
        assert chunk[0][1] == minimum, "the directory holds each chunk's minimum"
        if previous_max is not None:
            assert previous_max < minimum, "chunks are ordered and never share a score"
        previous_max = chunk[-1][1]
        assert len(chunk) <= 120 or chunk[0][1] == chunk[-1][1], "oversized chunk"
        entries.update((member.decode(), score) for member, score in chunk)
    on_server = {
        key.decode().rsplit(":", 1)[1]
        for key in redis.scan_iter(match=keyspace.chunk(name, "*"), count=1000)
    }
    assert on_server == {chunk_id.decode() for chunk_id, _ in directory}, "stray chunk"
    assert int(redis.get(keyspace.size(name)) or 0) == len(entries), "count out of step"
    return entries


def expected_indexes(keyspace: backend.Keyspace) -> tuple[dict[str, float], dict[str, float]]:
    """Return the index entries the stored sessions call for (the ground truth)."""
    redis = keyspace.client()
    expiry_index, user_index = {}, {}
    for key in redis.scan_iter(match=keyspace.session_pattern(), count=1000):
        pid = key.decode().rsplit(":", 1)[1]
        expiry, digest = redis.hmget(key, "e", "h")
        if digest is None:
            expiry_index[pid] = float(expiry)
        else:
            expiry_index[f"{pid}:{digest.decode()}"] = float(expiry)
            user_index[pid] = float(digest)
    return expiry_index, user_index


def assert_indexes_match(keyspace: backend.Keyspace) -> None:
    expiry_index, user_index = expected_indexes(keyspace)
    assert index_entries(keyspace, "x") == expiry_index
    assert index_entries(keyspace, "u") == user_index
    authenticated = int(keyspace.client().get(keyspace.authenticated()) or 0)
    assert authenticated == len(user_index)


# -- what a session stores -----------------------------------------------------


def test_data_and_metadata_are_one_hash_that_expires_with_the_session(
    store, keyspace, redis, settings
):
    with time_machine.travel(NOW, tick=False):
        key = save(
            store,
            {SESSION_KEY: "42", "k": "v"},
            metadata=RequestMetadata(ip="203.0.113.9", user_agent=UA),
            expiry=600,
        )

    fields = stored_hash(redis, keyspace, key)
    now_ms = backend.to_ms(NOW)
    assert fields["u"] == "42"
    assert fields["ip"] == "203.0.113.9"
    assert fields["ua"] == UA
    assert fields["c"] == fields["a"] == str(now_ms)
    assert fields["e"] == str(now_ms + 600_000)
    assert fields["k"] == key
    assert json.loads(fields["d"]) == {SESSION_KEY: "42", "k": "v", "_session_expiry": 600}
    assert 595 <= redis.ttl(keyspace.session(public_id(key))) <= 600
    # Named by the public id inside the cache's prefix and version: the key is not in it.
    assert keyspace.base == f"{settings.CACHES['redis']['KEY_PREFIX']}:1:sessionkit"
    assert key not in keyspace.session(public_id(key))


@pytest.mark.asyncio
async def test_async_save_stores_the_metadata(store, keyspace, redis):
    session = store()
    session.set_request_metadata(RequestMetadata(ip="2001:db8::", user_agent=UA))
    await session.aset(SESSION_KEY, "7")
    await session.asave()

    fields = stored_hash(redis, keyspace, session.session_key)
    assert (fields["u"], fields["ip"], fields["ua"]) == ("7", "2001:db8::", UA)
    assert backend.Keyspace("redis").base == keyspace.base


@pytest.mark.asyncio
async def test_async_login_path_records_the_user(store, keyspace, redis):
    # alogin() cycles the key (acycle_key) then sets the user id; the save at
    # the end of the request must index the new key under the user.
    session = store()
    session.set_request_metadata(RequestMetadata(ip="198.51.100.1", user_agent=UA))
    await session.aset("cart", [1])
    await session.asave()
    old = session.session_key
    await session.acycle_key()
    await session.aset(SESSION_KEY, "5")
    await session.asave()

    assert not await store().aexists(old)
    fields = stored_hash(redis, keyspace, session.session_key)
    assert (fields["u"], fields["ip"], fields["ua"]) == ("5", "198.51.100.1", UA)
    _, user_index = expected_indexes(keyspace)
    assert user_index == {public_id(session.session_key): float(user_digest("5"))}
    assert_indexes_match(keyspace)


def test_saving_outside_a_request_keeps_ip_user_agent_and_creation(store, keyspace, redis):
    with time_machine.travel(NOW, tick=False) as clock:
        key = save(store, {"k": "v"}, metadata=RequestMetadata(ip="192.0.2.1", user_agent=UA))
        clock.move_to(NOW + timedelta(minutes=5))
        session = store(key)  # e.g. a management command: no request metadata
        session["k"] = "w"
        session.save()

    fields = stored_hash(redis, keyspace, key)
    assert (fields["ip"], fields["ua"]) == ("192.0.2.1", UA)
    assert fields["c"] == str(backend.to_ms(NOW))
    assert fields["a"] == str(backend.to_ms(NOW + timedelta(minutes=5)))


def test_request_metadata_replaces_what_the_privacy_settings_no_longer_allow(
    store, keyspace, redis
):
    key = save(store, {"k": "v"}, metadata=RequestMetadata(ip="192.0.2.1", user_agent=UA))
    session = store(key)
    session.set_request_metadata(RequestMetadata(ip=None, user_agent=""))
    session["k"] = "w"
    session.save()

    fields = stored_hash(redis, keyspace, key)
    assert "ip" not in fields
    assert "ua" not in fields


def test_logout_in_place_removes_the_user(store, keyspace, redis):
    key = save(store, {SESSION_KEY: "3"})
    session = store(key)
    del session[SESSION_KEY]
    session.save()

    assert "u" not in stored_hash(redis, keyspace, key)
    _, user_index = expected_indexes(keyspace)
    assert user_index == {}
    assert_indexes_match(keyspace)


def test_load_remembers_the_stored_activity(store):
    with time_machine.travel(NOW, tick=False):
        key = save(store, {"k": "v"})
    session = store(key)
    assert session.loaded_activity is None

    session.load()

    assert session.loaded_activity == NOW


def test_save_with_must_create_refuses_an_existing_key(store):
    key = save(store, {"k": "v"})
    session = store(key)
    session["k"] = "other"

    with pytest.raises(CreateError):
        session.save(must_create=True)
    assert store(key).load() == {"k": "v"}


@pytest.mark.asyncio
async def test_asave_with_must_create_refuses_an_existing_key(store):
    key = save(store, {"k": "v"})
    session = store(key)
    await session.aset("k", "other")

    with pytest.raises(CreateError):
        await session.asave(must_create=True)
    assert await store(key).aload() == {"k": "v"}


def test_save_of_a_session_deleted_meanwhile_raises_update_error(store):
    key = save(store, {"k": "v"})
    session = store(key)
    session["k"] = "w"
    store().delete(key)  # a concurrent logout

    with pytest.raises(UpdateError):
        session.save()
    assert not store().exists(key)


@pytest.mark.asyncio
async def test_asave_of_a_session_deleted_meanwhile_raises_update_error(store):
    key = save(store, {"k": "v"})
    session = store(key)
    await session.aset("k", "w")
    await store().adelete(key)

    with pytest.raises(UpdateError):
        await session.asave()


def test_an_expiry_in_the_past_deletes_the_session(store, keyspace):
    key = save(store, {"k": "v"})
    session = store(key)
    session.set_expiry(NOW - timedelta(days=20000))
    session.save()

    assert not store().exists(key)
    assert index_entries(keyspace, "x") == {}


def test_sessions_are_stored_under_their_public_id(store):
    key = save(store, {"k": "v"})

    assert backend.storage_ids(key) == [public_id(key)]


def test_undecodable_data_loads_as_empty(store, keyspace, redis, caplog):
    key = save(store, {"k": "v"})
    redis.hset(keyspace.session(public_id(key)), "d", b"\x80not json")

    with caplog.at_level(logging.WARNING, logger="django_sessionkit.backends.redis"):
        assert store(key).load() == {}
    assert "Undecodable session data" in caplog.text
    assert key not in caplog.text


# -- round trips ---------------------------------------------------------------


def record_round_trips(monkeypatch: Any) -> Any:
    """Record what redis-py sends: one entry per round trip, the command names in it.

    Return a function that returns (and forgets) what was sent since its last call.
    """
    sent: list[list[str]] = []
    send = redis_connection.AbstractConnection.send_packed_command

    def recording(self: Any, command: Any, check_health: bool = True) -> None:
        packets = command if isinstance(command, list) else [command]
        words = [part for packet in packets for part in bytes(packet).split(b"\r\n")]
        names = [w.decode().lower() for w in words if w.upper() in COMMANDS]
        if names:  # not a connection's handshake
            sent.append(names)
        send(self, command, check_health)

    monkeypatch.setattr(redis_connection.AbstractConnection, "send_packed_command", recording)

    def take() -> list[list[str]]:
        taken = list(sent)
        sent.clear()
        return taken

    return take


COMMANDS = {b"HMGET", b"EVALSHA", b"EVAL", b"GET", b"EXISTS", b"HSET", b"SCRIPT", b"LOAD"}
COMMANDS |= {b"ZRANGEBYSCORE"}


@pytest.fixture
def round_trips(store, monkeypatch, redis, keyspace):
    """The round trips redis-py sends (see record_round_trips), every script loaded first.

    On a server that has not seen a script, its first call is an EVALSHA
    refused with NOSCRIPT, then a SCRIPT LOAD and an EVALSHA again.
    """
    for script in keyspace.scripts.values():
        redis.script_load(script.script)
    return record_round_trips(monkeypatch)


def test_a_read_costs_one_round_trip_and_a_write_one_script(store, round_trips):
    key = save(store, {SESSION_KEY: "1"}, metadata=RequestMetadata(ip="192.0.2.1"))
    round_trips()

    assert store(key).get(SESSION_KEY) == "1"
    assert round_trips() == [["hmget"]]

    session = store(key)
    session["k"] = "v"
    session.save()
    # The load, then one script for data, metadata and indexes.
    assert round_trips() == [["hmget"], ["evalsha"]]

    session = store(key)
    session.load()
    session.touch_activity(NOW)
    assert round_trips() == [["hmget"], ["evalsha"]]

    new = store()
    new["k"] = "v"
    new.save()  # no exists() before the create: the script refuses a taken key
    assert round_trips() == [["evalsha"]]


def test_scripts_load_themselves_on_a_server_that_has_not_seen_them(redis_down, monkeypatch):
    """redis-py's Script objects: after NOSCRIPT a SCRIPT LOAD; a pipeline loads first."""
    store = backend.SessionStore
    take = record_round_trips(monkeypatch)
    with time_machine.travel(NOW, tick=False) as clock:
        key = save(store, {SESSION_KEY: "1"}, expiry=60)
        assert take() == [["evalsha"], ["script", "load"], ["evalsha"]]
        save(store, {SESSION_KEY: "2"})
        assert take() == [["evalsha"]]

        clock.move_to(NOW + timedelta(minutes=5))
        assert list(store.clear_expired_batches()) == [1]

    # The PRUNE pipeline: redis-py asks whether its script is loaded and loads it;
    # then the sweep's pipeline, which loads SWEEP the same way.
    assert take() == [
        ["script", "exists"],
        ["script", "load"],
        ["evalsha"] * 10,
        ["zrangebyscore"],
        ["script", "exists"],
        ["script", "load"],
        ["evalsha"],
    ]
    assert not store().exists(key)


def test_touch_activity_writes_only_the_activity(store, keyspace, redis):
    with time_machine.travel(NOW, tick=False):
        key = save(store, {SESSION_KEY: "1"}, expiry=600)
    before = stored_hash(redis, keyspace, key)
    ttl = redis.ttl(keyspace.session(public_id(key)))
    session = store(key)
    session.load()

    later = NOW + timedelta(minutes=2)
    session.touch_activity(later)

    after = stored_hash(redis, keyspace, key)
    assert after == {**before, "a": str(backend.to_ms(later))}
    assert redis.ttl(keyspace.session(public_id(key))) <= ttl
    assert session.loaded_activity == later
    assert store(key).load() == {SESSION_KEY: "1", "_session_expiry": 600}


def test_touch_activity_does_not_revive_a_deleted_session(store, keyspace, redis):
    key = save(store, {"k": "v"})
    session = store(key)
    session.load()
    store().delete(key)

    session.touch_activity(NOW)

    assert not redis.exists(keyspace.session(public_id(key)))


# -- indexes ------------------------------------------------------------------


def test_indexes_follow_saves_deletes_and_user_changes(store, keyspace):
    rng = random.Random(3)
    keys: list[str] = []
    for step in range(1000):
        action = rng.random()
        if keys and action < 0.2:
            store().delete(keys.pop(rng.randrange(len(keys))))
        elif keys and action < 0.55:
            session = store(rng.choice(keys))
            user = rng.choice([None, "1", "2", "3", "u-4"])
            if user is None:
                session.pop(SESSION_KEY, None)
            else:
                session[SESSION_KEY] = user
            session.set_expiry(rng.randint(60, 100_000))
            session.save()
        else:
            data = {"step": step}
            if rng.random() < 0.6:
                data[SESSION_KEY] = rng.choice(["1", "2", "3", "u-4"])
            keys.append(save(store, data, expiry=rng.randint(60, 100_000)))

    assert len(index_entries(keyspace, "x")) == len(keys) > 200  # several chunks
    assert_indexes_match(keyspace)
    for key in keys:
        store().delete(key)
    assert index_entries(keyspace, "x") == {}
    assert index_entries(keyspace, "u") == {}


def test_equal_expiries_stay_in_one_chunk(store, keyspace):
    with time_machine.travel(NOW, tick=False):
        keys = [save(store, {SESSION_KEY: "9"}) for _ in range(130)]

    entries = index_entries(keyspace, "x")  # checks: one score, one (oversized) chunk
    assert len(entries) == 130
    assert_indexes_match(keyspace)
    for key in keys[:100]:
        store().delete(key)
    assert_indexes_match(keyspace)


def test_a_lower_score_splits_a_large_single_score_chunk(store, keyspace):
    # Thousands of entries move to the new chunk: more than Lua's unpack() takes at once.
    with time_machine.travel(NOW, tick=False):
        keys = [save(store, {"n": i}, expiry=600) for i in range(4200)]
        save(store, {"n": -1}, expiry=60)

        entries = index_entries(keyspace, "x")
        assert len(entries) == 4201
        assert keyspace.client().zcard(keyspace.directory("x")) == 2
        for key in keys[:10]:
            store().delete(key)
        assert len(index_entries(keyspace, "x")) == 4191


def test_saves_prune_expired_index_entries(store, keyspace):
    with time_machine.travel(NOW, tick=False) as clock:
        for _ in range(6):
            save(store, {SESSION_KEY: "1"}, expiry=60)
        clock.move_to(NOW + timedelta(minutes=2))
        assert len(index_entries(keyspace, "x")) == 6

        save(store, {"k": "v"})

        # Each save prunes a few expired entries (and their user index entries).
        assert len(index_entries(keyspace, "x")) == 6 - scripts.PRUNE_ON_WRITE + 1
        assert len(index_entries(keyspace, "u")) == 6 - scripts.PRUNE_ON_WRITE


def test_how_much_a_save_prunes_is_given_to_the_script(store, keyspace, monkeypatch):
    monkeypatch.setattr(scripts, "PRUNE_ON_WRITE", 1)
    with time_machine.travel(NOW, tick=False) as clock:
        for _ in range(3):
            save(store, {SESSION_KEY: "1"}, expiry=60)
        clock.move_to(NOW + timedelta(minutes=2))

        save(store, {"k": "v"})

        assert len(index_entries(keyspace, "x")) == 3 - 1 + 1


def test_creating_in_bulk_writes_what_a_save_writes(store, keyspace, redis):
    data = {SESSION_KEY: "4", "k": "v"}
    metadata = RequestMetadata(ip="192.0.2.7", user_agent=UA)
    with time_machine.travel(NOW, tick=False):
        key = save(store, data, metadata=metadata, expiry=600)
        saved = stored_hash(redis, keyspace, key)
        store().delete(key)
        bulk = scripts.Save(
            pid=public_id(key),
            session_key=key,
            data=store().serialize_data({**data, "_session_expiry": 600}),
            now=backend.to_ms(NOW),
            ttl=600,
            expiry=backend.to_ms(NOW + timedelta(seconds=600)),
            user_id="4",
            metadata=("192.0.2.7", UA),
        )

        assert keyspace.create_many([bulk, bulk]) == [1, 0]  # the second finds the key taken

        assert stored_hash(redis, keyspace, key) == saved
        assert_indexes_match(keyspace)
        assert store(key).load() == {**data, "_session_expiry": 600}


def test_clear_expired_prunes_in_batches(store, keyspace, redis):
    with time_machine.travel(NOW, tick=False) as clock:
        expiring = [save(store, {SESSION_KEY: str(i % 3)}, expiry=60 + i) for i in range(25)]
        kept = save(store, {SESSION_KEY: "1"}, expiry=3600)
        clock.move_to(NOW + timedelta(minutes=10))

        batches = list(keyspace.indexes.prune(NOW + timedelta(minutes=10), 10))
        assert batches == [10, 10, 5]
        assert list(store.clear_expired_batches()) == []

        # By Django's clock the sessions are expired: they are gone, not only indexed.
        assert not any(store().exists(key) for key in expiring)
        assert store(kept).load() == {SESSION_KEY: "1", "_session_expiry": 3600}
        assert list(index_entries(keyspace, "u")) == [public_id(kept)]
        assert_indexes_match(keyspace)


def test_clear_expired_keeps_a_session_its_old_entry_no_longer_describes(store, keyspace, redis):
    """An entry whose expiry is not the session's (written anew meanwhile) goes alone."""
    with time_machine.travel(NOW, tick=False) as clock:
        old = save(store, {SESSION_KEY: "1"}, expiry=60)
        renewed = save(store, {SESSION_KEY: "2"}, expiry=60)
        later = backend.to_ms(NOW + timedelta(hours=1))
        redis.hset(keyspace.session(public_id(renewed)), "e", later)
        clock.move_to(NOW + timedelta(minutes=10))

        assert list(keyspace.indexes.prune(NOW + timedelta(minutes=10), 10)) == [2]

        assert not redis.exists(keyspace.session(public_id(old)))
        assert stored_hash(redis, keyspace, renewed)["e"] == str(later)
        assert index_entries(keyspace, "x") == {}


def test_clear_expired_batch_size_must_be_positive(keyspace):
    with pytest.raises(ValueError, match="at least 1"):
        list(keyspace.indexes.prune(NOW, 0))


# -- a rotated SECRET_KEY -------------------------------------------------------


def test_sessions_survive_a_secret_key_rotation(store, keyspace, redis, settings):
    key = save(store, {SESSION_KEY: "8", "k": "v"})
    old_pid = public_id(key)
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-secret-key-for-the-rotation-test"
    assert public_id(key) != old_pid

    session = store(key)
    assert session.load() == {SESSION_KEY: "8", "k": "v"}
    assert store().exists(key)
    session["k"] = "w"
    session.save()

    # Moved under the new public id, indexes and all.
    assert not redis.exists(keyspace.session(old_pid))
    assert stored_hash(redis, keyspace, key)["u"] == "8"
    assert store(key).load() == {SESSION_KEY: "8", "k": "w"}
    assert_indexes_match(keyspace)
    store().delete(key)
    assert not store().exists(key)


def test_a_rotated_session_is_deleted_under_its_old_id(store, keyspace, redis, settings):
    key = save(store, {"k": "v"})
    old_pid = public_id(key)
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-secret-key-for-the-rotation-test"

    store().delete(key)

    assert not redis.exists(keyspace.session(old_pid))
    assert index_entries(keyspace, "x") == {}


# -- configuration ----------------------------------------------------------------


def test_a_cache_that_is_not_django_redis_is_refused(settings, caplog):
    settings.SESSION_ENGINE = ENGINE
    settings.SESSION_CACHE_ALIAS = "default"  # locmem

    with pytest.raises(SessionStorageUnavailable, match="django-redis cache") as raised:
        backend.SessionStore().save()
    assert not raised.value.outcome_unknown
    with caplog.at_level(logging.ERROR, logger="django_sessionkit.backends.redis"):
        assert backend.SessionStore("a" * 32).load() == {}
    assert "django-redis cache" in caplog.text


def test_django_redis_sharded_client_is_refused_with_the_reason(settings, redis_server):
    settings.CACHES = {
        **settings.CACHES,
        "sharded": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": [redis_server.url],
            "OPTIONS": {"CLIENT_CLASS": "django_redis.client.ShardClient"},
        },
    }
    settings.SESSION_ENGINE = ENGINE
    settings.SESSION_CACHE_ALIAS = "sharded"

    with pytest.raises(SessionStorageUnavailable, match="sharded client") as raised:
        backend.SessionStore().save()
    assert not raised.value.outcome_unknown


@pytest.mark.django_db
def test_logging_in_on_a_cache_that_is_not_django_redis_answers_503_not_500(settings):
    settings.SESSION_ENGINE = ENGINE
    settings.SESSION_CACHE_ALIAS = "default"  # locmem: the system check says so at start-up
    use_sessionkit_middleware(settings)
    User.objects.create_user("carol", password="carol-pass")
    client = Client(raise_request_exception=False)

    page = client.get("/accounts/login/")
    response = client.post("/accounts/login/", {"username": "carol", "password": "carol-pass"})

    assert page.status_code == 200
    assert response.status_code == 503
    assert b"Nothing was changed" in response.content


def test_redis_prefix_setting_names_the_keys(store, settings, redis):
    settings.SESSIONKIT_REDIS_PREFIX = "sk2"
    key = save(store, {"k": "v"})

    prefix = settings.CACHES["redis"]["KEY_PREFIX"]
    assert redis.exists(f"{prefix}:1:sk2:s:{public_id(key)}")
    assert store(key).load() == {"k": "v"}


# -- Redis down ---------------------------------------------------------------------


@pytest.fixture
def redis_down(settings, private_redis) -> Any:
    """A real Redis server behind SESSION_CACHE_ALIAS, to be stopped by the test."""
    settings.SESSION_ENGINE = ENGINE
    return private_redis("redis_down")


def test_redis_down_reads_as_empty_and_refuses_to_write(redis_down, caplog):
    store = backend.SessionStore
    key = save(store, {SESSION_KEY: "1", "k": "v"})
    redis_down.stop()
    session = store(key)

    with caplog.at_level(logging.ERROR, logger="django_sessionkit.backends.redis"):
        assert session.get(SESSION_KEY) is None

    assert dict(session.items()) == {}
    assert session.session_key == key  # kept, so the cookie outlives the outage
    assert "could not be reached to load" in caplog.text
    assert key not in caplog.text
    session["k"] = "overwrite"
    with pytest.raises(SessionStorageUnavailable) as raised:
        session.save()
    assert key not in str(raised.value)
    with pytest.raises(SessionStorageUnavailable):
        session.cycle_key()
    with pytest.raises(SessionStorageUnavailable):
        session.flush()  # a logout that did not happen must not look done
    with pytest.raises(SessionStorageUnavailable):
        store().exists(key)
    fresh = store()
    fresh["k"] = "v"
    with pytest.raises(SessionStorageUnavailable):
        fresh.save()
    loaded = store(key)
    loaded.load()
    loaded.touch_activity(NOW)  # best effort: nothing to report


def test_a_store_that_could_not_read_never_writes_even_when_redis_is_back(redis_down):
    store = backend.SessionStore
    key = save(store, {SESSION_KEY: "1", "k": "v"})
    redis_down.stop()
    session = store(key)
    assert session.get("k") is None  # the load failed

    redis_down.start()
    # Redis is back with the session (this test server keeps nothing across a restart).
    restored = store(key)
    restored._session_cache = {SESSION_KEY: "1", "k": "v"}
    restored.save(must_create=True)
    session["k"] = "overwrite"

    with pytest.raises(SessionStorageUnavailable):
        session.save()
    assert store(key).load() == {SESSION_KEY: "1", "k": "v"}


@pytest.mark.asyncio
async def test_redis_down_async(redis_down, caplog):
    store = backend.SessionStore
    key = await asave_session(store, {SESSION_KEY: "1"})
    redis_down.stop()
    session = store(key)

    with caplog.at_level(logging.ERROR, logger="django_sessionkit.backends.redis"):
        assert await session.aget(SESSION_KEY) is None
    assert key not in caplog.text
    await session.aset("k", "v")
    with pytest.raises(SessionStorageUnavailable):
        await session.asave()
    with pytest.raises(SessionStorageUnavailable):
        await session.aflush()
    with pytest.raises(SessionStorageUnavailable):
        await store().aexists(key)
    fresh = store()
    await fresh.aset("k", "v")
    with pytest.raises(SessionStorageUnavailable):
        await fresh.asave()


def read_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"user={request.session.get(SESSION_KEY, 'anonymous')}")


def write_view(request: HttpRequest) -> HttpResponse:
    request.session["k"] = "v"
    return HttpResponse("written")


#: Called by load_hang_write_view between loading the session and changing it.
on_loaded: list[Any] = []


def load_hang_write_view(request: HttpRequest) -> HttpResponse:
    request.session.get("k")  # loads the session
    for hook in on_loaded:
        hook()
    request.session["k"] = "v"
    return HttpResponse("written")


urlpatterns = [
    path("read/", read_view),
    path("write/", write_view),
    path("load-hang-write/", load_hang_write_view),
]


@pytest.fixture
def sessionkit_client(redis_down, settings) -> Client:
    settings.ROOT_URLCONF = __name__
    use_sessionkit_middleware(settings)
    client = Client()
    client.cookies[settings.SESSION_COOKIE_NAME] = save(backend.SessionStore, {SESSION_KEY: "1"})
    return client


def test_read_only_requests_write_activity_once_per_interval(store, keyspace, redis, settings):
    settings.ROOT_URLCONF = __name__
    settings.SESSIONKIT_ACTIVITY_INTERVAL = 60
    use_sessionkit_middleware(settings)
    with time_machine.travel(NOW, tick=False) as clock:
        key = save(store, {SESSION_KEY: "1"})
        client = Client(headers={"user-agent": UA})
        client.cookies[settings.SESSION_COOKIE_NAME] = key
        before = stored_hash(redis, keyspace, key)

        clock.move_to(NOW + timedelta(seconds=30))
        assert client.get("/read/").content == b"user=1"
        assert stored_hash(redis, keyspace, key) == before

        clock.move_to(NOW + timedelta(seconds=61))
        assert client.get("/read/").content == b"user=1"
        after = stored_hash(redis, keyspace, key)
        assert after == {**before, "a": str(backend.to_ms(NOW + timedelta(seconds=61)))}


def test_requests_with_redis_down_read_anonymous_and_refuse_writes(
    sessionkit_client, redis_down, settings
):
    assert sessionkit_client.get("/read/").content == b"user=1"
    redis_down.stop()

    read = sessionkit_client.get("/read/")
    assert read.status_code == 200
    assert read.content == b"user=anonymous"
    assert settings.SESSION_COOKIE_NAME not in read.cookies  # the cookie is not deleted

    write = sessionkit_client.get("/write/")
    assert write.status_code == 503
    assert b"Service unavailable" in write.content
    assert b"Nothing was changed" in write.content  # refused: nothing was sent
    assert settings.SESSION_COOKIE_NAME not in write.cookies


@pytest.fixture
def redis_hung(settings, private_redis) -> Any:
    """A real Redis server with short socket timeouts, which the test may pause (SIGSTOP)."""
    settings.SESSION_ENGINE = ENGINE
    retry = Retry(NoBackoff(), 1)
    return private_redis("redis_hung", SOCKET_TIMEOUT=0.3, CONNECTION_POOL_KWARGS={"retry": retry})


def eventually(check: Any, seconds: float = 10.0) -> bool:
    """Poll *check* until it is true or *seconds* have passed (a wait, not a timed assertion)."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_write_that_times_out_may_have_been_applied_and_says_so(redis_hung):
    store = backend.SessionStore
    key = save(store, {SESSION_KEY: "1", "k": "v"})
    session = store(key)
    session.load()
    session["k"] = "changed"
    redis_hung.process.send_signal(signal.SIGSTOP)
    try:
        with pytest.raises(SessionStorageUnavailable) as raised:
            session.save()
    finally:
        redis_hung.process.send_signal(signal.SIGCONT)

    assert raised.value.outcome_unknown
    assert "may have been applied" in str(raised.value)
    assert "nothing" not in str(raised.value).lower()
    assert key not in str(raised.value)
    # And it was: Redis ran the script it had received once it went on.
    assert eventually(lambda: store(key).load().get("k") == "changed")


def test_a_write_refused_by_a_stopped_server_changed_nothing_and_says_so(redis_hung):
    store = backend.SessionStore
    key = save(store, {SESSION_KEY: "1", "k": "v"})
    session = store(key)
    session.load()
    session["k"] = "changed"
    redis_hung.stop()

    with pytest.raises(SessionStorageUnavailable) as raised:
        session.save()

    assert not raised.value.outcome_unknown
    assert "could not be reached" in str(raised.value)


def test_the_503_page_of_a_write_that_timed_out_does_not_say_nothing_changed(redis_hung, settings):
    settings.ROOT_URLCONF = __name__
    use_sessionkit_middleware(settings)
    client = Client()
    client.cookies[settings.SESSION_COOKIE_NAME] = save(backend.SessionStore, {SESSION_KEY: "1"})
    assert client.get("/read/").content == b"user=1"

    # Redis hangs after the request has loaded its session, before the save.
    on_loaded.append(lambda: redis_hung.process.send_signal(signal.SIGSTOP))
    try:
        write = client.get("/load-hang-write/")
    finally:
        on_loaded.clear()
        redis_hung.process.send_signal(signal.SIGCONT)

    assert write.status_code == 503
    assert b"may or may not have been saved" in write.content
    assert b"Nothing was changed" not in write.content


# -- corrupt entries -----------------------------------------------------------------

#: Ways a session's hash can be broken, by hand or by another program: each
#: takes the client and the hash's name.
CORRUPTIONS = {
    "activity is text": lambda redis, name: redis.hset(name, "a", "soon"),
    "activity is a float": lambda redis, name: redis.hset(name, "a", "1.9e12"),
    "expiry is text": lambda redis, name: redis.hset(name, "e", "never"),
    "expiry is a float": lambda redis, name: redis.hset(name, "e", "1.9e12"),
    "expiry is out of range": lambda redis, name: redis.hset(name, "e", "9" * 30),
    "expiry is missing": lambda redis, name: redis.hdel(name, "e"),
    "data is missing": lambda redis, name: redis.hdel(name, "d"),
    "the key is a string": lambda redis, name: redis.delete(name) + redis.set(name, "x"),
    "the key is a list": lambda redis, name: redis.delete(name) + redis.rpush(name, "x"),
}


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_a_corrupt_session_loads_as_no_session_and_is_logged_once(
    store, keyspace, redis, corruption, caplog
):
    key = save(store, {SESSION_KEY: "1", "k": "v"})
    CORRUPTIONS[corruption](redis, keyspace.session(public_id(key)))

    with caplog.at_level(logging.WARNING, logger="django_sessionkit.backends.redis"):
        sessions = [store(key) for _ in range(3)]
        loaded = [session.load() for session in sessions]

    assert loaded == [{}, {}, {}]
    assert [session.session_key for session in sessions] == [None, None, None]
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert key not in caplog.text


@pytest.mark.django_db
@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_a_request_carrying_a_corrupt_session_gets_a_fresh_one(
    store, keyspace, redis, corruption, settings
):
    settings.ROOT_URLCONF = __name__
    use_sessionkit_middleware(settings)
    key = save(store, {SESSION_KEY: "1", "k": "v"})
    CORRUPTIONS[corruption](redis, keyspace.session(public_id(key)))
    client = Client(raise_request_exception=False)
    client.cookies[settings.SESSION_COOKIE_NAME] = key

    read = client.get("/read/")
    write = client.get("/write/")

    assert (read.status_code, read.content) == (200, b"user=anonymous")
    assert write.status_code == 200
    assert client.cookies[settings.SESSION_COOKIE_NAME].value != key


class TestSessionContract(SessionContract):
    """Django's documented session behaviour, on our redis engine."""
