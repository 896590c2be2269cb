from __future__ import annotations

import io
import json
from datetime import timedelta
from importlib import import_module
from typing import Any

import pytest
import time_machine
from django.contrib.auth import SESSION_KEY, get_user_model
from django.contrib.sessions.backends.cache import KEY_PREFIX as CACHE_PREFIX
from django.contrib.sessions.models import Session as StockSession
from django.core.cache import caches
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from django_sessionkit.backends.redis import Keyspace, from_ms, storage_ids, to_ms
from django_sessionkit.inventory.base import ExportedSession
from django_sessionkit.management.commands.migratesessions import Command, hide_keys
from django_sessionkit.models import Session
from django_sessionkit.public_id import public_id

STOCK_DB = "django.contrib.sessions.backends.db"
STOCK_CACHED_DB = "django.contrib.sessions.backends.cached_db"
STOCK_CACHE = "django.contrib.sessions.backends.cache"
STOCK_FILE = "django.contrib.sessions.backends.file"
SIGNED_COOKIES = "django.contrib.sessions.backends.signed_cookies"
OUR_DB = "django_sessionkit.backends.db"
OUR_CACHED_DB = "django_sessionkit.backends.cached_db"
OUR_REDIS = "django_sessionkit.backends.redis"
MODEL_ENGINES = (STOCK_DB, STOCK_CACHED_DB, OUR_DB, OUR_CACHED_DB)

#: Redis TTLs are whole seconds on the way in: allow for the rounding.
TTL_SLACK = timedelta(seconds=2)


@pytest.fixture
def redis_sessions(redis_cache, settings):
    """Cache-backed engines keep their sessions in the real Redis of the test run."""
    settings.SESSION_CACHE_ALIAS = "redis"
    return redis_cache


def store_class(engine: str) -> Any:
    return import_module(engine).SessionStore


def create(engine: str, data: dict[str, Any], *, expires_in: timedelta | None = None) -> str:
    """Save a session through *engine*; move its stored expiry to now + *expires_in*."""
    store = store_class(engine)()
    store.update(data)
    store.save()
    key = str(store.session_key)
    if expires_in is not None:
        if engine in MODEL_ENGINES:
            model = store_class(engine).get_model_class()
            model.objects.filter(pk=key).update(expire_date=timezone.now() + expires_in)
        elif engine == STOCK_CACHE:
            caches["redis"].expire(CACHE_PREFIX + key, int(expires_in.total_seconds()))
        else:
            raise AssertionError(f"no way to move the expiry of {engine}")
    return key


def stored(engine: str, key: str) -> tuple[dict[str, Any], Any] | None:
    """Return (data, expire_date) as *engine*'s storage holds *key*, read around the engine."""
    if engine in MODEL_ENGINES:
        store = store_class(engine)
        row = store.get_model_class().objects.filter(pk=key).first()
        return None if row is None else (store().decode(row.session_data), row.expire_date)
    if engine == STOCK_CACHE:
        cache = caches["redis"]
        data = cache.get(CACHE_PREFIX + key)
        if data is None:
            return None
        return data, timezone.now() + timedelta(seconds=cache.ttl(CACHE_PREFIX + key))
    if engine == OUR_REDIS:
        fields = redis_session(key)
        if not fields:
            return None
        return store_class(engine)().deserialize_data(fields[b"d"]), from_ms(fields[b"e"])
    raise AssertionError(engine)


def run(*args: str, **options: Any) -> str:
    out, err = io.StringIO(), io.StringIO()
    call_command("migratesessions", *args, stdout=out, stderr=err, **options)
    assert err.getvalue() == ""
    return out.getvalue()


def run_json(*args: str, **options: Any) -> dict[str, Any]:
    return json.loads(run(*args, "--format", "json", **options))


def redis_keys() -> list[bytes]:
    """This test run's keys: other runs may share the server."""
    cache = caches["redis"]
    client = cache.client.get_client()
    return list(client.scan_iter(match=f"{cache.key_prefix}*", count=1000))


@pytest.fixture
def user(db):
    return get_user_model().objects.create_user(
        "ada", password="pw", is_staff=True, is_superuser=True
    )


def login_data(user) -> dict[str, Any]:
    return {
        SESSION_KEY: str(user.pk),
        "_auth_user_backend": "django.contrib.auth.backends.ModelBackend",
        "_auth_user_hash": user.get_session_auth_hash(),
    }


# -- copying between the stock engines ----------------------------------------------


def test_stock_db_to_stock_cache_copies_data_and_expiry(db, redis_sessions, user):
    anonymous = create(STOCK_DB, {"cart": [1, 2]}, expires_in=timedelta(days=3, hours=5))
    logged_in = create(STOCK_DB, {**login_data(user), "theme": "dark"})
    source = {key: stored(STOCK_DB, key) for key in (anonymous, logged_in)}

    report = run_json("--from", STOCK_DB, "--to", STOCK_CACHE)

    assert report["read"] == 2
    assert report["copied"] == 2
    for key, (data, expire_date) in source.items():
        copied_data, copied_expiry = stored(STOCK_CACHE, key)
        assert copied_data == data
        assert abs(copied_expiry - expire_date) <= TTL_SLACK
    # The expiry is not written into the data: the session keeps sliding.
    assert "_session_expiry" not in stored(STOCK_CACHE, anonymous)[0]


def test_stock_cache_to_stock_db_takes_expiry_from_the_ttl(db, redis_sessions):
    key = create(STOCK_CACHE, {"a": 1}, expires_in=timedelta(hours=7))

    report = run_json("--from", STOCK_CACHE, "--to", STOCK_DB)

    assert report["copied"] == 1
    data, expire_date = stored(STOCK_DB, key)
    assert data == {"a": 1}
    assert abs(expire_date - (timezone.now() + timedelta(hours=7))) <= TTL_SLACK


def test_stock_cache_source_ignores_cached_db_entries(db, redis_sessions):
    # cached_db's cache prefix extends the cache engine's: SCAN matches both.
    create(STOCK_CACHED_DB, {"from": "cached_db"})
    key = create(STOCK_CACHE, {"from": "cache"})
    StockSession.objects.all().delete()

    report = run_json("--from", STOCK_CACHE, "--to", OUR_DB)

    assert report["read"] == 1
    assert list(Session.objects.values_list("session_key", flat=True)) == [key]


def test_stock_cached_db_source_reads_the_table(db, redis_sessions):
    key = create(STOCK_CACHED_DB, {"a": 1})
    caches["redis"].delete_pattern("*")  # the table is the source of truth, not the cache

    report = run_json("--from", STOCK_CACHED_DB, "--to", STOCK_CACHE)

    assert report["copied"] == 1
    assert stored(STOCK_CACHE, key)[0] == {"a": 1}


@pytest.fixture
def file_sessions(settings, tmp_path, monkeypatch):
    """The file engine keeps its sessions in a directory of this test's own."""
    settings.SESSION_FILE_PATH = str(tmp_path)
    # Django's file engine caches the directory on its class at first use.
    monkeypatch.setattr(store_class(STOCK_FILE), "_storage_path", str(tmp_path), raising=False)


def test_stock_file_source(db, file_sessions):
    key = create(STOCK_FILE, {"a": 1})

    report = run_json("--from", STOCK_FILE, "--to", OUR_DB)

    assert report["copied"] == 1
    assert stored(OUR_DB, key)[0] == {"a": 1}


def test_stock_file_destination(db, file_sessions):
    # The file engine keeps no expiry of its own: a copied file starts a new
    # SESSION_COOKIE_AGE, which logs nobody out.
    key = create(STOCK_DB, {"a": 1})

    first = run_json("--from", STOCK_DB, "--to", STOCK_FILE)
    second = run_json("--from", STOCK_DB, "--to", STOCK_FILE)

    assert (first["copied"], second["unchanged"]) == (1, 1)
    assert store_class(STOCK_FILE)(key).load() == {"a": 1}


# -- our engines -----------------------------------------------------------------------


def test_stock_db_to_our_db_records_the_user(db, user):
    key = create(STOCK_DB, {**login_data(user), "n": 1}, expires_in=timedelta(days=9))
    anonymous = create(STOCK_DB, {"n": 2})
    expire_date = stored(STOCK_DB, key)[1]

    run("--from", STOCK_DB, "--to", OUR_DB)

    row = Session.objects.get(pk=key)
    assert row.user_id == user.pk
    assert row.public_id == public_id(key)
    assert row.expire_date == expire_date
    assert stored(OUR_DB, key)[0] == {**login_data(user), "n": 1}
    assert Session.objects.get(pk=anonymous).user_id is None


@pytest.mark.django_db(transaction=True)
def test_sessions_of_deleted_users_are_skipped_for_a_user_foreign_key(user, redis_sessions):
    # Django never deletes the sessions of a deleted user; our table's foreign
    # key cannot hold them, and a deferred constraint would fail the whole batch.
    gone = get_user_model().objects.create_user("gone")
    orphan = create(STOCK_DB, login_data(gone))
    gone.delete()
    kept = create(STOCK_DB, login_data(user))
    anonymous = create(STOCK_DB, {"a": 1})

    report = run_json("--from", STOCK_DB, "--to", OUR_DB)

    assert report["orphaned"] == 1
    assert report["copied"] == 2
    assert set(Session.objects.values_list("pk", flat=True)) == {kept, anonymous}
    # A cache has no such constraint: the session is copied as it is.
    assert run_json("--from", STOCK_DB, "--to", STOCK_CACHE)["copied"] == 3
    assert stored(STOCK_CACHE, orphan) is not None


def test_round_trip_through_every_kind_of_engine(db, redis_sessions, user):
    originals = {
        create(STOCK_DB, {**login_data(user), "n": 1}, expires_in=timedelta(days=4)): None,
        create(STOCK_DB, {"n": 2}, expires_in=timedelta(hours=3)): None,
        create(STOCK_DB, {"n": 3, "nested": {"list": [1, "two"]}}): None,
    }
    originals = {key: stored(STOCK_DB, key) for key in originals}
    logged_in = next(key for key, (data, _) in originals.items() if SESSION_KEY in data)

    assert run_json("--from", STOCK_DB, "--to", OUR_DB)["copied"] == 3
    assert Session.objects.get(pk=logged_in).user_id == user.pk
    StockSession.objects.all().delete()

    assert run_json("--from", OUR_DB, "--to", STOCK_CACHE)["copied"] == 3
    Session.objects.all().delete()

    assert run_json("--from", STOCK_CACHE, "--to", OUR_REDIS)["copied"] == 3
    assert_redis_user(logged_in, user)
    for key in originals:
        caches["redis"].delete(CACHE_PREFIX + key)

    assert run_json("--from", OUR_REDIS, "--to", STOCK_DB)["copied"] == 3
    for key, (data, expire_date) in originals.items():
        copied_data, copied_expiry = stored(STOCK_DB, key)
        assert copied_data == data
        assert abs(copied_expiry - expire_date) <= 2 * TTL_SLACK


def redis_session(key: str) -> dict[bytes, bytes]:
    """Return the hash our redis engine keeps for *key*."""
    keyspace = Keyspace("redis")
    return keyspace.client().hgetall(keyspace.session(storage_ids(key)[0]))


def assert_redis_user(key: str, user) -> None:
    """Our redis engine records the session's user in the session's hash."""
    assert redis_session(key)[b"u"] == str(user.pk).encode()


def test_our_redis_source_skips_sessions_expired_by_the_clock(db, redis_sessions):
    # Redis's TTL may lag behind Django's clock; the stored expiry decides.
    live = create(OUR_REDIS, {"live": True})
    expired = create(OUR_REDIS, {"live": False})
    keyspace = Keyspace("redis")
    past = to_ms(timezone.now() - timedelta(seconds=1))
    keyspace.client().hset(keyspace.session(storage_ids(expired)[0]), "e", past)

    report = run_json("--from", OUR_REDIS, "--to", OUR_DB)

    assert (report["read"], report["copied"]) == (1, 1)
    assert list(Session.objects.values_list("pk", flat=True)) == [live]


def test_our_redis_source_reads_sessions_of_a_previous_secret(db, redis_sessions, settings):
    key = create(OUR_REDIS, {"a": 1})
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "rotated-" + settings.SECRET_KEY

    report = run_json("--from", OUR_REDIS, "--to", STOCK_DB)

    assert report["copied"] == 1
    assert stored(STOCK_DB, key)[0] == {"a": 1}


# -- switching engines keeps people logged in -------------------------------------------


@pytest.mark.parametrize("destination", [OUR_DB, OUR_CACHED_DB, STOCK_CACHE, OUR_REDIS])
def test_logged_in_client_stays_logged_in_after_switching(
    destination, client, user, settings, redis_sessions
):
    settings.SESSION_ENGINE = STOCK_DB
    # No request before the switch: the client's handler would keep the
    # SessionMiddleware (and so the engine) of its first request.
    assert client.login(username="ada", password="pw")

    run("--from", STOCK_DB, "--to", destination)
    StockSession.objects.all().delete()
    settings.SESSION_ENGINE = destination

    assert client.get("/admin/").status_code == 200
    assert client.session[SESSION_KEY] == str(user.pk)


def test_without_migrating_switching_logs_out(client, user, settings):
    # The control for the test above: a new engine does not see old sessions.
    settings.SESSION_ENGINE = STOCK_DB
    assert client.login(username="ada", password="pw")
    settings.SESSION_ENGINE = OUR_DB

    assert client.get("/admin/").status_code == 302


# -- idempotency, dry run, expiry, batches ----------------------------------------------


def test_second_run_copies_nothing_and_changes_nothing(db, user):
    for n in range(3):
        create(STOCK_DB, {**login_data(user), "n": n})

    first = run_json("--from", STOCK_DB, "--to", OUR_DB)
    before = list(Session.objects.order_by("pk").values())
    second = run_json("--from", STOCK_DB, "--to", OUR_DB)

    assert (first["copied"], first["existing"]) == (3, 0)
    assert (second["copied"], second["unchanged"], second["existing"]) == (0, 3, 0)
    assert list(Session.objects.order_by("pk").values()) == before


def test_existing_destination_session_is_left_alone(db, redis_sessions):
    key = create(STOCK_DB, {"version": "source"})
    other = create(STOCK_DB, {"version": "other"})
    newer = store_class(STOCK_CACHE)(key)
    newer._session_cache = {"version": "destination"}
    newer.save(must_create=True)

    report = run_json("--from", STOCK_DB, "--to", STOCK_CACHE)

    assert (report["copied"], report["existing"]) == (1, 1)
    assert stored(STOCK_CACHE, key)[0] == {"version": "destination"}
    assert stored(STOCK_CACHE, other)[0] == {"version": "other"}
    again = run_json("--from", STOCK_DB, "--to", STOCK_CACHE)
    assert (again["existing"], again["unchanged"]) == (1, 1)
    assert stored(STOCK_CACHE, key)[0] == {"version": "destination"}


@pytest.mark.parametrize("destination", [OUR_DB, STOCK_CACHE, OUR_REDIS])
def test_dry_run_counts_and_writes_nothing(destination, db, redis_sessions):
    for n in range(4):
        create(STOCK_DB, {"n": n})
    create(STOCK_DB, {"n": "old"}, expires_in=timedelta(seconds=-5))

    report = run_json("--from", STOCK_DB, "--to", destination, "--dry-run")
    text = run("--from", STOCK_DB, "--to", destination, "--dry-run")

    assert report["dry_run"] is True
    assert (report["read"], report["copied"]) == (4, 4)
    assert "Would copy 4 of 4 sessions" in text
    assert "nothing was written" in text
    assert not Session.objects.exists()
    assert redis_keys() == []


def test_a_copy_ended_at_the_destination_is_never_copied_again(db, redis_sessions):
    keys = [create(STOCK_DB, {"n": n}) for n in range(3)]
    run("--from", STOCK_DB, "--to", STOCK_CACHE)
    store_class(STOCK_CACHE)(keys[0]).flush()  # a logout on the new engine

    dry_run = run_json("--from", STOCK_DB, "--to", STOCK_CACHE, "--dry-run")
    report = run_json("--from", STOCK_DB, "--to", STOCK_CACHE)
    again = run_json("--from", STOCK_DB, "--to", STOCK_CACHE)

    assert (dry_run["copied"], dry_run["diverged"], dry_run["unchanged"]) == (0, 1, 2)
    assert (report["copied"], report["diverged"], report["unchanged"]) == (0, 1, 2)
    assert (again["copied"], again["diverged"], again["unchanged"]) == (0, 1, 2)
    assert stored(STOCK_CACHE, keys[0]) is None


def test_expired_sessions_are_skipped(db, redis_sessions):
    live = create(STOCK_DB, {"live": True})
    expired = create(STOCK_DB, {"live": False}, expires_in=timedelta(seconds=-1))

    report = run_json("--from", STOCK_DB, "--to", OUR_DB)

    assert (report["read"], report["copied"]) == (1, 1)
    assert stored(OUR_DB, live) is not None
    assert stored(OUR_DB, expired) is None


def test_session_about_to_expire_is_not_copied_into_a_cache(db, redis_sessions):
    create(STOCK_DB, {"a": 1}, expires_in=timedelta(milliseconds=500))

    report = run_json("--from", STOCK_DB, "--to", STOCK_CACHE)

    assert (report["expired"], report["copied"]) == (1, 0)
    assert redis_keys() == []


@pytest.mark.parametrize(
    ("source", "destination"),
    [(STOCK_DB, STOCK_CACHE), (STOCK_CACHE, OUR_DB), (OUR_DB, OUR_REDIS), (OUR_REDIS, STOCK_DB)],
)
def test_batches(source, destination, db, redis_sessions):
    for n in range(5):
        create(source, {"n": n})

    text = run("--from", source, "--to", destination, "--batch-size", "2", "--dry-run", verbosity=2)
    report = run_json("--from", source, "--to", destination, "--batch-size", "2", verbosity=2)

    assert [line.split(":")[0] for line in text.splitlines() if line.startswith("Batch")] == [
        "Batch 1",
        "Batch 2",
        "Batch 3",
    ]
    assert "Batch 1: 2 read, 2 copied" in text
    assert report["batches"] == 3
    assert [batch["read"] for batch in report["batch_counts"]] == [2, 2, 1]
    assert report["copied"] == 5


def test_default_batch_size_and_quiet_output(db):
    for n in range(3):
        create(STOCK_DB, {"n": n})

    report = run_json("--from", STOCK_DB, "--to", OUR_DB)

    assert (report["batch_size"], report["batches"]) == (1000, 1)
    assert "batch_counts" not in report
    assert run("--from", OUR_DB, "--to", STOCK_DB, verbosity=0) == ""


def test_key_the_destination_refuses_is_not_replaced_by_a_new_session(db):
    # Django accepts keys of 8 characters or more; saving under a refused key
    # would create a session with a fresh random key instead.
    StockSession.objects.create(
        session_key="short",
        session_data=store_class(STOCK_DB)().encode({"a": 1}),
        expire_date=timezone.now() + timedelta(days=1),
    )

    report = run_json("--from", STOCK_DB, "--to", OUR_DB)

    assert (report["invalid"], report["copied"]) == (1, 0)
    assert not Session.objects.exists()


# -- the output never shows a session key -------------------------------------------------


def test_output_contains_no_session_key(db, redis_sessions, user):
    keys = [create(STOCK_DB, {**login_data(user), "n": n}) for n in range(3)]
    create(STOCK_DB, {"n": "old"}, expires_in=timedelta(seconds=-1))

    outputs = [
        run("--from", STOCK_DB, "--to", STOCK_CACHE, "--batch-size", "1", verbosity=3),
        run("--from", STOCK_DB, "--to", STOCK_CACHE, "--batch-size", "1", verbosity=3),
        run("--from", STOCK_DB, "--to", OUR_DB, "--format", "json", "--dry-run", verbosity=3),
    ]

    for output in outputs:
        assert output
        for key in keys:
            assert key not in output


def test_exported_session_repr_hides_key_and_data():
    session = ExportedSession("k" * 32, {"secret": "x"}, timezone.now())

    assert "k" * 32 not in repr(session)
    assert "secret" not in repr(session)


def test_hide_keys_replaces_keys_with_public_ids():
    session = ExportedSession("k" * 32, {}, timezone.now())

    message = hide_keys(f"duplicate key (session_key)=({'k' * 32})", [session])

    assert "k" * 32 not in message
    assert public_id("k" * 32) in message


# -- bad input: a clear CommandError, nothing written ---------------------------------------


def assert_nothing_written() -> None:
    assert not Session.objects.exists()
    assert redis_keys() == []


BAD_ARGUMENTS = [
    pytest.param(["--to", OUR_DB], "the following arguments are required: --from", id="no-from"),
    pytest.param(["--from", "no.such.engine", "--to", OUR_DB], "cannot be imported", id="unknown"),
    pytest.param(
        ["--from", STOCK_DB, "--to", "django.contrib"], "has no SessionStore", id="not-an-engine"
    ),
    pytest.param(["--from", STOCK_DB, "--to", STOCK_DB], "same engine", id="same"),
    pytest.param(["--from", STOCK_DB, "--to", STOCK_CACHED_DB], "same table", id="same-table"),
    pytest.param(["--from", OUR_DB, "--to", OUR_CACHED_DB], "same table", id="same-table-ours"),
    pytest.param(
        ["--from", STOCK_DB, "--to", OUR_DB, "--batch-size", "0"], "positive", id="batch-0"
    ),
    pytest.param(
        ["--from", STOCK_DB, "--to", OUR_DB, "--batch-size", "-3"], "positive", id="batch-negative"
    ),
    pytest.param(
        ["--from", STOCK_DB, "--to", OUR_DB, "--batch-size", "many"],
        "invalid int",
        id="batch-not-a-number",
    ),
    pytest.param(
        ["--from", STOCK_DB, "--to", OUR_DB, "--format", "xml"], "invalid choice", id="format"
    ),
    pytest.param(
        ["--from", SIGNED_COOKIES, "--to", OUR_DB], "browser's cookie", id="from-signed-cookies"
    ),
    pytest.param(
        ["--from", STOCK_DB, "--to", SIGNED_COOKIES], "browser's cookie", id="to-signed-cookies"
    ),
]


@pytest.mark.parametrize(("arguments", "message"), BAD_ARGUMENTS)
def test_bad_input_is_a_command_error_and_writes_nothing(arguments, message, db, redis_sessions):
    create(STOCK_DB, {"a": 1})
    before = set(Session.objects.values_list("pk", flat=True))

    with pytest.raises(CommandError, match=message):
        run(*arguments)

    assert set(Session.objects.values_list("pk", flat=True)) == before
    assert redis_keys() == []


def test_cache_that_cannot_be_listed_is_a_command_error(db, redis_cache, settings):
    settings.SESSION_CACHE_ALIAS = "default"  # LocMemCache
    create(STOCK_CACHE, {"a": 1})

    with pytest.raises(CommandError, match="cannot list its keys"):
        run("--from", STOCK_CACHE, "--to", OUR_DB)
    assert_nothing_written()


def test_process_local_destination_cache_is_a_command_error(db, settings):
    settings.SESSION_CACHE_ALIAS = "default"
    key = create(STOCK_DB, {"a": 1})

    with pytest.raises(CommandError, match="inside one process"):
        run("--from", STOCK_DB, "--to", STOCK_CACHE)
    assert caches["default"].get(CACHE_PREFIX + key) is None


def test_bad_input_exits_non_zero_from_the_command_line(db, capsys):
    command = Command()

    with pytest.raises(SystemExit) as exited:
        command.run_from_argv(
            ["manage.py", "migratesessions", "--from", STOCK_DB, "--to", STOCK_DB]
        )

    assert exited.value.code == 1
    assert "same engine" in capsys.readouterr().err


@pytest.fixture
def redis_down(settings):
    settings.CACHES = {
        **settings.CACHES,
        "down": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens on port 1
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2},
        },
    }
    settings.SESSION_CACHE_ALIAS = "down"


@pytest.mark.parametrize("destination", [STOCK_CACHE, OUR_REDIS])
def test_unreachable_destination_is_a_command_error(destination, db, redis_down):
    keys = [create(STOCK_DB, {"n": n}) for n in range(2)]

    with pytest.raises(CommandError, match="stopped after 0 complete batches") as raised:
        run("--from", STOCK_DB, "--to", destination)

    assert "Run the command again" in str(raised.value)
    for key in keys:
        assert key not in str(raised.value)


@pytest.mark.parametrize("source", [STOCK_CACHE, OUR_REDIS])
def test_unreachable_source_is_a_command_error(source, db, redis_down):
    with pytest.raises(CommandError, match="stopped after 0 complete batches"):
        run("--from", source, "--to", OUR_DB)
    assert not Session.objects.exists()


# -- a rerun brings the copies up to date, and never resurrects a session ----------------

#: (source, destination) pairs the rerun is tested on: database, cache, Redis and file.
PAIRS = [
    (STOCK_DB, OUR_DB),
    (OUR_DB, OUR_REDIS),
    (OUR_REDIS, OUR_CACHED_DB),
    (STOCK_CACHE, STOCK_DB),
    (STOCK_FILE, STOCK_CACHE),
]


@pytest.fixture(
    params=PAIRS,
    ids=[
        "stock db to db",
        "db to redis",
        "redis to cached_db",
        "stock cache to stock db",
        "stock file to stock cache",
    ],
)
def pair(request, db, redis_sessions, file_sessions):
    return request.param


def change(engine: str, key: str, data: dict[str, Any]) -> None:
    """Change a session through *engine*, as a request to a site on it would."""
    session = store_class(engine)(key)
    session.load()
    session.update(data)
    session.save()


def end(engine: str, key: str) -> None:
    """End a session on *engine*, as a logout or a revocation would."""
    store_class(engine)().delete(key)


def test_a_rerun_carries_logouts_and_changes_made_at_the_source(pair):
    source, destination = pair
    gone, changed, same = (create(source, {"n": n}) for n in range(3))
    first = run_json("--from", source, "--to", destination)
    end(source, gone)  # logged out before the switch
    change(source, changed, {"n": "changed"})

    dry_run = run_json("--from", source, "--to", destination, "--dry-run")
    assert stored(destination, gone) is not None  # the dry run wrote nothing
    rerun = run_json("--from", source, "--to", destination)
    again = run_json("--from", source, "--to", destination)

    assert first["copied"] == 3
    for report in (dry_run, rerun):
        assert (report["removed"], report["updated"], report["unchanged"]) == (1, 1, 1)
    assert (again["removed"], again["updated"], again["unchanged"]) == (0, 0, 2)
    assert stored(destination, gone) is None
    assert stored(destination, changed)[0] == {"n": "changed"}
    assert stored(destination, same)[0] == {"n": 2}


def test_a_rerun_never_undoes_what_happened_at_the_destination(pair):
    source, destination = pair
    logged_out, used, renewed = (create(source, {"n": n}) for n in range(3))
    run("--from", source, "--to", destination)
    # After the switch: traffic on the new engine.
    end(destination, logged_out)
    change(destination, used, {"n": "new engine"})
    # Meanwhile the old engine still held its own versions of them.
    change(source, used, {"n": "old engine"})
    end(source, renewed)
    change(destination, renewed, {"n": "renewed on the new engine"})

    report = run_json("--from", source, "--to", destination)

    assert (report["copied"], report["updated"], report["removed"]) == (0, 0, 0)
    assert report["diverged"] == 3
    assert stored(destination, logged_out) is None
    assert stored(destination, used)[0] == {"n": "new engine"}
    assert stored(destination, renewed)[0] == {"n": "renewed on the new engine"}


def test_a_rerun_copies_what_is_new_and_leaves_the_destinations_own_sessions(pair):
    source, destination = pair
    run("--from", source, "--to", destination, "--dry-run")  # nothing copied yet
    first = create(source, {"n": "first"})
    run("--from", source, "--to", destination)
    new = create(source, {"n": "new"})  # a login on the old engine before the switch
    own = create(destination, {"n": "the destination's own"})

    report = run_json("--from", source, "--to", destination)

    assert (report["copied"], report["unchanged"], report["removed"]) == (1, 1, 0)
    assert stored(destination, new)[0] == {"n": "new"}
    assert stored(destination, own)[0] == {"n": "the destination's own"}
    assert stored(destination, first)[0] == {"n": "first"}


def test_a_copy_kept_alive_by_the_destination_outlives_its_source(db, redis_sessions):
    key = create(STOCK_DB, {"n": 1}, expires_in=timedelta(seconds=30))
    run("--from", STOCK_DB, "--to", OUR_DB)
    # The new engine extended the copy (a save with the same data); the old one expired it.
    Session.objects.filter(pk=key).update(expire_date=timezone.now() + timedelta(days=1))
    StockSession.objects.filter(pk=key).update(expire_date=timezone.now() - timedelta(seconds=1))
    from django_sessionkit.models import CopiedSession

    CopiedSession.objects.update(expire_date=timezone.now() + timedelta(seconds=5))

    with_past = timezone.now() + timedelta(seconds=10)
    with time_machine.travel(with_past, tick=False):
        report = run_json("--from", STOCK_DB, "--to", OUR_DB)

    assert report["removed"] == 0
    assert stored(OUR_DB, key)[0] == {"n": 1}


def test_the_record_of_copies_holds_no_session_key(db, redis_sessions):
    from django_sessionkit.models import CopiedSession

    keys = [create(STOCK_DB, {"n": n}) for n in range(2)]

    run("--from", STOCK_DB, "--to", STOCK_CACHE)

    rows = list(CopiedSession.objects.values_list(flat=False))
    assert len(rows) == 2
    assert not any(key in str(row) for row in rows for key in keys)


@pytest.mark.parametrize(
    ("source", "destination"),
    [(OUR_DB, OUR_REDIS), (OUR_REDIS, OUR_DB), (OUR_REDIS, OUR_CACHED_DB)],
)
def test_copies_between_our_engines_keep_ip_user_agent_created_and_activity(
    source, destination, db, redis_sessions, user
):
    from django_sessionkit.backends.base import RequestMetadata
    from django_sessionkit.inventory import get_inventory

    created = timezone.now() - timedelta(days=3)
    with time_machine.travel(created, tick=False):
        store = store_class(source)()
        store.set_request_metadata(RequestMetadata("203.0.113.9", "Firefox/133.0"))
        store.update(login_data(user))
        store.save()
    with time_machine.travel(created + timedelta(days=1), tick=False):
        store = store_class(source)(store.session_key)
        store.load()
        store.touch_activity(timezone.now())
    (original,) = get_inventory(source).page()

    run("--from", source, "--to", destination)

    (copy,) = get_inventory(destination).page()
    assert copy.public_id == original.public_id
    assert (copy.user_id, copy.ip, copy.user_agent) == (
        str(user.pk),
        "203.0.113.9",
        "Firefox/133.0",
    )
    assert abs(copy.created_at - created) < timedelta(milliseconds=1)
    assert abs(copy.last_activity - (created + timedelta(days=1))) < timedelta(milliseconds=1)


def test_an_unreadable_source_session_is_counted_not_copied(db, redis_sessions):
    keys = [create(OUR_REDIS, {"n": n}) for n in range(3)]
    keyspace = Keyspace("redis")
    keyspace.client().hset(keyspace.session(storage_ids(keys[0])[0]), "e", "never")

    report = run_json("--from", OUR_REDIS, "--to", OUR_DB)
    text = run("--from", OUR_REDIS, "--to", STOCK_DB)

    assert (report["copied"], report["unreadable"]) == (2, 1)
    assert stored(OUR_DB, keys[0]) is None
    assert "unreadable (see the log): 1" in text
