from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import types
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from importlib import import_module
from pathlib import Path

import pytest
import time_machine
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.base import SessionBase
from django.contrib.sessions.backends.file import SessionStore as FileStore
from django.contrib.sessions.management.commands.clearsessions import (
    Command as DjangoClearSessions,
)
from django.core.management import call_command, get_commands, load_command_class
from django.core.management.base import CommandError
from django.db import DatabaseError
from django.db.models.signals import post_delete, post_init, pre_delete
from django.utils import timezone

from django_sessionkit.inventory.file import FileInventory
from django_sessionkit.inventory.model import ModelInventory
from django_sessionkit.management import output
from django_sessionkit.management.commands.clearsessions import Command, parse_duration
from django_sessionkit.models import Session
from tests.test_cleanup import FakeClock, every_batch_takes

pytestmark = pytest.mark.django_db

REPO = Path(__file__).resolve().parent.parent
OUR_DB = "django_sessionkit.backends.db"
OUR_CACHED_DB = "django_sessionkit.backends.cached_db"
STOCK_DB = "django.contrib.sessions.backends.db"
STOCK_CACHED_DB = "django.contrib.sessions.backends.cached_db"
STOCK_FILE = "django.contrib.sessions.backends.file"
STOCK_CACHE = "django.contrib.sessions.backends.cache"
SIGNED_COOKIES = "django.contrib.sessions.backends.signed_cookies"
MODEL_ENGINES = [OUR_DB, OUR_CACHED_DB, STOCK_DB, STOCK_CACHED_DB]
BATCHED_ENGINES = [*MODEL_ENGINES, STOCK_FILE]
COOKIE_AGE = 1209600


@pytest.fixture
def engine(request, settings, session_dir):
    """The engine under test, made SESSION_ENGINE."""
    settings.SESSION_ENGINE = request.param
    return request.param


def make(engine, *, expired=False, user=None, idle=None):
    """Store a session through *engine*; return its key."""
    store = import_module(engine).SessionStore()
    store["cart"] = [1, 2]
    if user is not None:
        store[SESSION_KEY] = str(user.pk)
    store.create()
    key = store.session_key
    now = timezone.now()
    if engine == STOCK_FILE:
        age = timedelta(days=15) if expired else (idle or timedelta(0))
        written = (now - age).timestamp()
        os.utime(FileStore(key)._key_to_file(), (written, written))
        return key
    model = store.get_model_class()
    changes = {"expire_date": now + (timedelta(hours=-1) if expired else timedelta(days=1))}
    if idle is not None:
        changes["last_activity"] = now - idle
    model.objects.filter(pk=key).update(**changes)
    return key


def stored(engine, key):
    """Whether *engine* still stores *key* (the row or file, whatever its expiry)."""
    if engine == STOCK_FILE:
        return os.path.exists(FileStore(key)._key_to_file())
    return import_module(engine).SessionStore.get_model_class().objects.filter(pk=key).exists()


def run(*args, **options):
    """Call the command; return (stdout, stderr)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    call_command("clearsessions", *args, stdout=stdout, stderr=stderr, **options)
    return stdout.getvalue(), stderr.getvalue()


def populate(engine, expired=5, live=3, **kwargs):
    return (
        [make(engine, expired=True, **kwargs) for _ in range(expired)],
        [make(engine, **kwargs) for _ in range(live)],
    )


@pytest.fixture
def users(django_user_model):
    return [django_user_model.objects.create_user(username=f"user{n}") for n in range(3)]


class TTY(io.StringIO):
    def isatty(self):
        return True


def test_ours_replaces_djangos_command():
    assert get_commands()["clearsessions"] == "django_sessionkit"
    command = load_command_class("django_sessionkit", "clearsessions")
    assert isinstance(command, DjangoClearSessions)


@pytest.mark.parametrize("engine", BATCHED_ENGINES, indirect=True)
def test_clears_expired_in_batches(engine):
    expired, live = populate(engine)

    out, err = run(batch_size=2)

    assert not any(stored(engine, key) for key in expired)
    assert all(stored(engine, key) for key in live)
    assert "Deleted 5 expired sessions in 3 batches" in out
    assert err == ""
    for key in expired + live:
        assert key not in out
    # Running again finds nothing.
    assert "Deleted 0 expired sessions in 0 batches" in run()[0]


@pytest.mark.parametrize("engine", [STOCK_DB], indirect=True)
def test_engine_option_overrides_session_engine(engine):
    ours, _ = populate(OUR_DB, live=0)
    stock, _ = populate(STOCK_DB, live=0)

    out, _ = run("--engine", OUR_DB)

    assert OUR_DB in json.loads(run("--engine", OUR_DB, "--format", "json")[0])["engine"]
    assert "Deleted 5 expired" in out
    assert not any(stored(OUR_DB, key) for key in ours)
    assert all(stored(STOCK_DB, key) for key in stock)


@pytest.mark.parametrize("engine", BATCHED_ENGINES, indirect=True)
def test_dry_run_deletes_nothing(engine):
    expired, live = populate(engine)

    out, _ = run("--dry-run")
    report = json.loads(run("--dry-run", "--format", "json")[0])

    assert "Would delete 5 expired sessions." in out
    assert "nothing was deleted" in out
    assert report["expired"] == 5
    assert report["dry_run"] is True
    assert all(stored(engine, key) for key in expired + live)


@pytest.mark.parametrize("engine", [OUR_DB, STOCK_FILE], indirect=True)
def test_json_output_is_one_object(engine):
    expired, live = populate(engine)

    out, err = run("--format", "json", "--batch-size", "2", "-v", "2")

    report = json.loads(out)
    assert report == {
        "engine": engine,
        "action": "clear",
        "dry_run": False,
        "batch_size": 2,
        "batch_time": 0.05,
        "expired": 5,
        "inactive": None,
        "batches": 3,
        "seconds": report["seconds"],
        "stopped": "done",
        "unreadable": 0,
    }
    assert out.count("\n") == 1
    assert err == ""
    assert not any(key in out for key in expired + live)


@pytest.mark.parametrize("engine", [OUR_DB], indirect=True)
def test_verbosity(engine):
    populate(engine)
    assert run("-v", "0", "--batch-size", "2")[0] == ""
    populate(engine, live=0)
    out = run("-v", "2", "--batch-size", "2")[0]
    assert out.splitlines()[:3] == [
        "Batch 1: deleted 2 expired sessions.",
        "Batch 2: deleted 2 expired sessions.",
        "Batch 3: deleted 1 expired session.",
    ]


@pytest.mark.parametrize("engine", [OUR_DB], indirect=True)
def test_never_deletes_an_unexpired_session(engine, users):
    live = [make(engine, user=users[0], idle=timedelta(days=300)) for _ in range(3)]
    run(batch_size=1)
    assert all(stored(engine, key) for key in live)


# -- bad input: a CommandError, and nothing deleted ------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-size", "0"], "--batch-size must be a positive number, at most 9,223,"),
        (["--batch-size", "-5"], "--batch-size must be a positive number"),
        (["--engine", "no.such.engine"], "Unknown session engine 'no.such.engine'"),
        (["--engine", "django.contrib.sessions"], "is not a session engine"),
        (["--inactive-for", "30x"], "is not a duration"),
        (["--inactive-for", "0d"], "longer than zero"),
        (["--inactive-for", "thirty days"], "is not a duration"),
        (["--inactive-for", "99999999999999w"], "too long"),
        (["--sleep", "-1"], "--sleep must be from 0 to 3,600 seconds, not -1.0"),
        (["--batch-time", "-0.5"], "--batch-time must be from 0 to 3,600 seconds, not -0.5"),
        (["--batch-time", "nan"], "--batch-time must be from 0 to 3,600 seconds, not nan"),
        (["--stats", "--batch-time", "1"], "--stats cannot be combined with --batch-time"),
        (
            ["--max-runtime", "0"],
            "--max-runtime must be a finite number of seconds, more than zero",
        ),
        (["--fail-if-expired-over", "-1"], "zero or more"),
        (["--user", "nobody-at-all"], "No user has the username or id 'nobody-at-all'"),
        (["--user", "987654"], "No user has the username or id '987654'"),
        (["--stats", "--user", "user0"], "--stats and --user cannot be combined"),
        (["--stats", "--inactive-for", "3d"], "--stats cannot be combined with --inactive-for"),
        (["--stats", "--batch-size", "5"], "--stats cannot be combined with --batch-size"),
        (["--user", "user0", "--sleep", "1"], "--user cannot be combined with --sleep"),
        (
            ["--user", "user0", "--max-runtime", "3", "--batch-size", "2"],
            "--user cannot be combined with --batch-size, --max-runtime",
        ),
        (["--user", "user0", "--fail-if-expired-over", "3"], "--fail-if-expired-over"),
        (["--engine", STOCK_DB, "--inactive-for", "30d"], "does not record when a session"),
        # Beyond what a timestamp can be idle for: today an overflow when subtracted from now.
        (["--inactive-for", "999999w"], "'999999w' is too long: it reaches back before 1970"),
        # Activity is written once per SESSIONKIT_ACTIVITY_INTERVAL (60 s here).
        (["--inactive-for", "30s"], "not longer than SESSIONKIT_ACTIVITY_INTERVAL (60 s)"),
        (["--inactive-for", "1m"], "not longer than SESSIONKIT_ACTIVITY_INTERVAL"),
        # Every float option refuses inf and nan alike.
        (["--sleep", "inf"], "--sleep must be from 0 to 3,600 seconds, not inf"),
        (["--sleep", "nan"], "--sleep must be from 0 to 3,600 seconds, not nan"),
        (["--sleep", "3601"], "--sleep must be from 0 to 3,600 seconds, not 3601.0"),
        (["--batch-time", "inf"], "--batch-time must be from 0 to 3,600 seconds, not inf"),
        # Finite, but the batch sizing would overflow after the first batch.
        (["--batch-time", "1e308"], "--batch-time must be from 0 to 3,600 seconds, not 1e+308"),
        (["--max-runtime", "inf"], "--max-runtime must be a finite number of seconds"),
        (["--max-runtime", "nan"], "--max-runtime must be a finite number of seconds"),
        # More than a database's LIMIT takes.
        (
            ["--batch-size", str(2**63), "--batch-time", "0"],
            "--batch-size must be a positive number, at most 9,223,372,036,854,775,807, "
            "not 9223372036854775808",
        ),
        # A NUL, which PostgreSQL refuses in a query (no username holds one).
        (["--user", "bad\x00name"], "No user has the username or id 'bad"),
        (
            ["--engine", STOCK_DB, "--inactive-for", "30d", "--dry-run"],
            "does not record when a session",
        ),
    ],
)
@pytest.mark.parametrize("engine", [OUR_DB], indirect=True)
def test_bad_input_deletes_nothing(engine, users, args, message):
    expired, live = populate(engine, user=users[0])
    stock_expired, _ = populate(STOCK_DB, live=0)

    with pytest.raises(CommandError, match=re.escape(message)) as raised:
        run(*args)

    assert raised.value.returncode == 1
    assert all(stored(engine, key) for key in expired + live)
    assert all(stored(STOCK_DB, key) for key in stock_expired)


def test_bad_input_exits_non_zero_from_the_shell(tmp_path):
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "example_project")]),
        # A database of its own: this process must not touch the test database.
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    base = [sys.executable, "-m", "django", "clearsessions", "--settings=tests.settings"]

    for args, message in (
        (["--engine", "no.such.engine"], "Unknown session engine"),
        (["--batch-size", "0"], "--batch-size must be a positive number"),
        (["--inactive-for", "soon"], "is not a duration"),
        (["--inactive-for", "999999w"], "is too long"),
        (["--sleep", "inf"], "--sleep must be from 0 to 3,600 seconds, not inf"),
    ):
        result = subprocess.run(
            [*base, *args], env=environment, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 1, result.stderr
        assert "CommandError: " in result.stderr
        assert message in result.stderr
        assert result.stdout == ""


def test_parse_duration():
    assert parse_duration("30d") == timedelta(days=30)
    assert parse_duration("12h") == timedelta(hours=12)
    assert parse_duration("45m") == timedelta(minutes=45)
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("2w") == timedelta(weeks=2)
    assert parse_duration(" 1D12h ") == timedelta(days=1, hours=12)
    for bad in ("", "30", "d", "-3d", "1.5d", "3 d", "3y", "0s"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)


@pytest.mark.parametrize("engine", [OUR_DB, STOCK_FILE], indirect=True)
def test_inactive_for_is_longer_than_the_activity_interval(engine, settings, users):
    """Activity is written at most once per interval: a shorter idle time logs out users."""
    settings.SESSIONKIT_ACTIVITY_INTERVAL = 3600
    idle = make(engine, user=users[0], idle=timedelta(hours=3))
    in_use = make(engine, user=users[0], idle=timedelta(minutes=50))

    for duration in ("30m", "1h", "59m60s"):
        with pytest.raises(CommandError, match=r"SESSIONKIT_ACTIVITY_INTERVAL \(3,600 s\)"):
            run("--inactive-for", duration)
    assert stored(engine, idle)
    assert stored(engine, in_use)

    run("--inactive-for", "2h")
    assert not stored(engine, idle)
    assert stored(engine, in_use)


# -- --stats ---------------------------------------------------------------------------


@pytest.mark.parametrize("engine", [OUR_DB, STOCK_DB, STOCK_FILE], indirect=True)
def test_stats(engine, users):
    alice, bob, _ = users
    expired = [make(engine, expired=True, user=alice) for _ in range(2)]
    live = [make(engine, user=bob) for _ in range(3)] + [make(engine, user=alice), make(engine)]

    out, _ = run("--stats")
    report = json.loads(run("--stats", "--format", "json")[0])

    assert report["action"] == "stats"
    assert (report["sessions"], report["active"], report["expired"]) == (7, 5, 2)
    assert report["busiest_user"] == {"user_id": str(bob.pk), "username": "user1", "sessions": 3}
    assert "exact" not in report
    assert timezone.datetime.fromisoformat(report["oldest_expired"]) < timezone.now()
    assert "  sessions: 7" in out
    assert "  active: 5" in out
    assert "  expired, waiting to be cleared: 2 (the oldest expired at " in out
    assert f"  most unexpired sessions held by one user: 3 (user 'user1', id {bob.pk})" in out
    assert all(stored(engine, key) for key in expired + live)


@pytest.mark.parametrize("engine", [OUR_DB], indirect=True)
def test_stats_of_an_empty_engine(engine):
    report = json.loads(run("--stats", "--format", "json")[0])
    assert report["busiest_user"] is None
    assert report["oldest_expired"] is None
    assert "most unexpired sessions held by one user: none" in run("--stats")[0]


@pytest.mark.parametrize("engine", [STOCK_DB, STOCK_FILE], indirect=True)
def test_stats_names_the_busiest_user_even_when_deleted(engine, users):
    alice, bob, _ = users
    bob_id = bob.pk
    for _ in range(2):
        make(engine, user=bob)
    make(engine, user=alice)
    bob.delete()  # the engine keeps his sessions

    out, _ = run("--stats")
    report = json.loads(run("--stats", "--format", "json")[0])

    assert f"  most unexpired sessions held by one user: 2 (deleted user, id {bob_id})" in out
    assert report["busiest_user"] == {"user_id": str(bob_id), "username": None, "sessions": 2}


# -- --user ----------------------------------------------------------------------------


@pytest.mark.parametrize("engine", [OUR_DB, OUR_CACHED_DB, STOCK_DB, STOCK_FILE], indirect=True)
@pytest.mark.parametrize("by", ["username", "id"])
def test_revoke_user(engine, users, by):
    alice, bob, _ = users
    alices = [make(engine, user=alice) for _ in range(3)]
    bobs = [make(engine, user=bob)]
    anonymous = make(engine)
    expired = make(engine, user=bob, expired=True)
    value = bob.username if by == "username" else str(bob.pk)

    out, _ = run("--user", alice.username if by == "username" else str(alice.pk), "--dry-run")
    assert f"Would revoke 3 sessions of user 'user0' (id {alice.pk})." in out
    assert "Dry run: nothing was revoked." in out
    assert all(stored(engine, key) for key in alices)

    out, _ = run("--user", value)
    assert f"Revoked 1 session of user 'user1' (id {bob.pk})." in out
    report = json.loads(run("--user", str(alice.pk), "--format", "json")[0])
    assert report == {
        "engine": engine,
        "action": "revoke-user",
        "dry_run": False,
        "user_id": str(alice.pk),
        "username": "user0",
        "revoked": 3,
        "unreadable": 0,
    }
    assert not any(stored(engine, key) for key in alices + bobs)
    # Expired sessions are left to the regular clearing.
    assert stored(engine, anonymous)
    assert stored(engine, expired)


@pytest.mark.parametrize("engine", [OUR_DB], indirect=True)
def test_user_by_username_first(engine, django_user_model):
    first = django_user_model.objects.create_user(username="first")
    # A user whose username is the id of another user.
    named = django_user_model.objects.create_user(username=str(first.pk))
    key_of_first, key_of_named = make(engine, user=first), make(engine, user=named)

    out, _ = run("--user", str(first.pk))

    assert f"(id {named.pk})" in out
    assert stored(engine, key_of_first)
    assert not stored(engine, key_of_named)


@pytest.mark.parametrize("engine", [STOCK_DB, STOCK_CACHED_DB, STOCK_FILE], indirect=True)
def test_revoke_the_sessions_of_a_deleted_user(engine, users):
    """Django's engines keep a deleted user's sessions: their data still names the user."""
    alice, bob, _ = users
    bob_id = bob.pk
    bobs = [make(engine, user=bob) for _ in range(2)]
    alices = make(engine, user=alice)
    bob.delete()
    assert all(stored(engine, key) for key in bobs)

    out, _ = run("--user", str(bob_id), "--dry-run")
    assert out == (
        f"Would revoke 2 sessions of a deleted user (id {bob_id}).\nDry run: nothing was revoked.\n"
    )
    report = json.loads(run("--user", str(bob_id), "--format", "json")[0])

    assert report == {
        "engine": engine,
        "action": "revoke-user",
        "dry_run": False,
        "user_id": str(bob_id),
        "username": None,
        "revoked": 2,
        "unreadable": 0,
    }
    assert not any(stored(engine, key) for key in bobs)
    assert stored(engine, alices)
    # No user and no sessions left: a clear error.
    with pytest.raises(CommandError, match=f"No user has the username or id '{bob_id}'"):
        run("--user", str(bob_id))


@pytest.mark.parametrize("engine", [OUR_DB], indirect=True)
def test_a_deleted_user_without_sessions_is_an_error(engine, users):
    """Our database engine's sessions go with their user: there is nothing to revoke."""
    alice, bob, _ = users
    bob_id = bob.pk
    make(engine, user=bob)
    alices = make(engine, user=alice)
    bob.delete()

    with pytest.raises(CommandError, match=f"No user has the username or id '{bob_id}'"):
        run("--user", str(bob_id))
    assert stored(engine, alices)


# -- --inactive-for --------------------------------------------------------------------


@pytest.mark.parametrize("engine", [OUR_DB, OUR_CACHED_DB, STOCK_FILE], indirect=True)
def test_inactive_for(engine, users):
    idle = [make(engine, user=users[0], idle=timedelta(days=10)) for _ in range(3)]
    expired = [make(engine, expired=True) for _ in range(2)]
    recent = [make(engine, user=users[0], idle=timedelta(days=1)), make(engine)]

    dry = json.loads(run("--inactive-for", "1w", "--dry-run", "--format", "json")[0])
    assert (dry["expired"], dry["inactive"]) == (2, 3)
    assert all(stored(engine, key) for key in idle + expired + recent)

    out, _ = run("--inactive-for", "7d", "--batch-size", "2")

    assert "Deleted 2 expired sessions and 3 inactive sessions (idle since before " in out
    assert "in 3 batches" in out
    assert not any(stored(engine, key) for key in idle + expired)
    assert all(stored(engine, key) for key in recent)


@pytest.mark.parametrize("engine", [OUR_CACHED_DB], indirect=True)
def test_inactive_for_evicts_cached_db_copies(engine, settings, users, redis_cache):
    settings.SESSION_CACHE_ALIAS = "redis"
    idle = make(engine, user=users[0], idle=timedelta(days=10))
    store_class = import_module(engine).SessionStore
    assert store_class(idle).load()["cart"] == [1, 2]
    assert redis_cache.get(store_class.cache_key_prefix + idle) is not None

    run("--inactive-for", "2d")

    assert store_class(idle).load() == {}


# -- interruption, time limit, sleep ---------------------------------------------------


def deliver_after_first_batch(monkeypatch, inventory_class, *signals):
    """Make the inventory's clear_expired deliver *signals* to this process after batch 1."""
    original = inventory_class.clear_expired

    def clear_expired(self, *, batch_size=1000):
        for number, deleted in enumerate(original(self, batch_size=batch_size), start=1):
            if number == 1:
                for signum in signals:
                    os.kill(os.getpid(), signum)
            yield deleted

    monkeypatch.setattr(inventory_class, "clear_expired", clear_expired)
    return original


@pytest.mark.parametrize("engine", [OUR_DB, STOCK_FILE], indirect=True)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_after_the_batch_in_progress(engine, monkeypatch, signum):
    inventory_class = FileInventory if engine == STOCK_FILE else ModelInventory
    original = deliver_after_first_batch(monkeypatch, inventory_class, signum)
    expired, live = populate(engine)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    stdout = io.StringIO()
    with pytest.raises(CommandError, match="run the command again to carry on") as raised:
        call_command("clearsessions", "--batch-size", "2", "--format", "json", stdout=stdout)

    assert raised.value.returncode == 128 + signum
    assert signal.Signals(signum).name in str(raised.value)
    report = json.loads(stdout.getvalue())
    assert (report["expired"], report["batches"]) == (2, 1)
    assert report["stopped"] == signal.Signals(signum).name
    assert sum(stored(engine, key) for key in expired) == 3
    assert all(stored(engine, key) for key in live)
    assert {s: signal.getsignal(s) for s in handlers} == handlers

    # Running again carries on.
    monkeypatch.setattr(inventory_class, "clear_expired", original)
    assert "Deleted 3 expired sessions" in run()[0]
    assert not any(stored(engine, key) for key in expired)


@pytest.mark.parametrize("engine", [OUR_DB], indirect=True)
def test_an_interruption_is_reported_once(engine, monkeypatch):
    """The summary says what was done; the error alone says that a signal stopped it."""
    deliver_after_first_batch(monkeypatch, ModelInventory, signal.SIGINT)
    populate(engine)
    stdout, stderr = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("clearsessions", "--batch-size", "2", stdout=stdout, stderr=stderr)

    assert re.fullmatch(
        r"Deleted 2 expired sessions in 1 batch \([\d.]+ s\)\.\n", stdout.getvalue()
    )
    assert stderr.getvalue() == ""
    assert str(raised.value) == (
        "Stopped by SIGINT after 1 batch; run the command again to carry on."
    )
    assert raised.value.returncode == 130


@pytest.mark.parametrize("engine", [OUR_DB], indirect=True)
def test_a_second_signal_aborts_at_once(engine, monkeypatch):
    deliver_after_first_batch(monkeypatch, ModelInventory, signal.SIGINT, signal.SIGINT)
    expired, _ = populate(engine)
    handler = signal.getsignal(signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        run("--batch-size", "2")

    assert signal.getsignal(signal.SIGINT) is handler
    assert sum(stored(engine, key) for key in expired) == 3


@pytest.mark.parametrize("engine", [OUR_DB], indirect=True)
def test_handlers_are_restored_after_a_run(engine):
    populate(engine)
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    run()
    assert {s: signal.getsignal(s) for s in before} == before


@pytest.fixture
def clock(monkeypatch):
    return FakeClock().install(monkeypatch)


@pytest.mark.parametrize("engine", [OUR_DB], indirect=True)
def test_max_runtime_stops_cleanly(engine, monkeypatch, clock):
    original = ModelInventory.clear_expired

    def slow_batches(self, *, batch_size=1000):
        for deleted in original(self, batch_size=batch_size):
            clock.now += 40  # each batch takes 40 s
            yield deleted

    monkeypatch.setattr(ModelInventory, "clear_expired", slow_batches)
    expired, _ = populate(engine)

    out, _ = run("--batch-size", "2", "--max-runtime", "60")

    # The second batch ends past the limit: it completes, then the run stops.
    assert "Deleted 4 expired sessions in 2 batches" in out
    assert "Stopped at the time limit" in out
    assert sum(stored(engine, key) for key in expired) == 1
    report = json.loads(run("--max-runtime", "60", "--format", "json")[0])
    assert (report["expired"], report["stopped"]) == (1, "done")


@pytest.mark.parametrize("engine", [OUR_DB, STOCK_DB], indirect=True)
@pytest.mark.parametrize(
    ("args", "sizes"),
    [
        # The default target (50 ms): a batch that took a second shrinks the next ones.
        ((), [3, 1, 1, 1]),
        # A target of two seconds: they may grow, up to --batch-size.
        (("--batch-time", "2"), [3, 3]),
        # No target: every batch is --batch-size, however long it takes.
        (("--batch-time", "0"), [3, 3]),
    ],
)
def test_batches_are_sized_to_a_time_per_transaction(engine, monkeypatch, args, sizes):
    every_batch_takes(monkeypatch, 1.0)
    expired, live = populate(engine, expired=6)

    out, _ = run("--batch-size", "3", "-v", "2", *args)

    batches = re.findall(r"Batch \d+: deleted (\d+) expired sessions?\.", out)
    assert [int(n) for n in batches] == sizes
    assert not any(stored(engine, key) for key in expired)
    assert all(stored(engine, key) for key in live)


@pytest.mark.parametrize("engine", [OUR_DB], indirect=True)
def test_sleep_stops_at_the_time_limit(engine, clock):
    populate(engine)

    out, _ = run("--batch-size", "2", "--sleep", "30", "--max-runtime", "10")

    assert sum(clock.slept) == pytest.approx(10)
    assert "Deleted 2 expired sessions in 1 batch " in out
    assert "Stopped at the time limit" in out


# -- progress ---------------------------------------------------------------------------


@pytest.mark.parametrize("engine", [OUR_DB], indirect=True)
def test_progress_bar_on_a_terminal_for_long_runs(engine, monkeypatch):
    monkeypatch.setattr(output, "PROGRESS_AFTER", 0)
    expired, _ = populate(engine)
    stdout, stderr = io.StringIO(), TTY()

    call_command("clearsessions", "--batch-size", "2", stdout=stdout, stderr=stderr)

    bar = stderr.getvalue()
    assert "\rDeleting expired sessions: [" in bar
    assert "100% 5/5" in bar
    assert bar.endswith("\n")
    assert "[" not in stdout.getvalue()
    assert not any(key in bar for key in expired)


@pytest.mark.parametrize("engine", [OUR_DB], indirect=True)
@pytest.mark.parametrize(
    ("stream", "args", "after"),
    [
        (io.StringIO, [], 0),  # not a terminal
        (TTY, ["--format", "json"], 0),
        (TTY, ["-v", "0"], 0),
        (TTY, [], 3600),  # a short run
    ],
)
def test_no_progress_bar(engine, monkeypatch, stream, args, after):
    monkeypatch.setattr(output, "PROGRESS_AFTER", after)
    populate(engine)
    stderr = stream()
    call_command("clearsessions", "--batch-size", "2", *args, stdout=io.StringIO(), stderr=stderr)
    assert stderr.getvalue() == ""


@pytest.mark.parametrize("engine", [OUR_DB], indirect=True)
def test_progress_bar_is_not_drawn_as_an_error(engine, monkeypatch):
    monkeypatch.setattr(output, "PROGRESS_AFTER", 0)
    populate(engine)
    stderr = TTY()
    # As on a colour terminal, where Django draws what goes to stderr in its error style.
    command = Command(stdout=io.StringIO(), stderr=stderr, force_color=True)
    assert command.stderr.style_func("text") != "text"

    call_command(command, "--batch-size", "2")

    assert "\rDeleting expired sessions: [" in stderr.getvalue()
    assert "\x1b[" not in stderr.getvalue()


# -- output ---------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", [STOCK_DB], indirect=True)
def test_numbers_have_thousands_separators(engine, monkeypatch):
    from django.contrib.sessions.models import Session as StockSession

    data = import_module(engine).SessionStore().encode({"cart": [1]})
    past = timezone.now() - timedelta(hours=1)
    StockSession.objects.bulk_create(
        StockSession(session_key=f"{n:032d}", session_data=data, expire_date=past)
        for n in range(1001)
    )

    stats, _ = run("--stats")
    assert "  sessions: 1,001\n" in stats
    assert "  expired, waiting to be cleared: 1,001 (" in stats
    stdout = io.StringIO()
    with pytest.raises(
        CommandError,
        match=r"^1,001 expired sessions were waiting to be cleared, "
        r"more than --fail-if-expired-over 1,000:",
    ):
        call_command("clearsessions", "--dry-run", "--fail-if-expired-over", "1000", stdout=stdout)
    assert "Would delete 1,001 expired sessions.\n" in stdout.getvalue()
    # JSON keeps numbers as numbers.
    assert json.loads(run("--dry-run", "--format", "json")[0])["expired"] == 1001

    monkeypatch.setattr(output, "PROGRESS_AFTER", 0)
    stdout, stderr = io.StringIO(), TTY()
    call_command(
        "clearsessions", "--batch-size", "2000", "--batch-time", "0", stdout=stdout, stderr=stderr
    )
    assert "Deleted 1,001 expired sessions in 1 batch (" in stdout.getvalue()
    assert " 1,001/1,001" in stderr.getvalue()


@pytest.mark.parametrize("engine", [OUR_DB, STOCK_FILE], indirect=True)
def test_one_of_a_kind_is_singular(engine, users):
    make(engine, expired=True)
    make(engine, user=users[0], idle=timedelta(days=10))

    out, _ = run("--dry-run", "--inactive-for", "7d")
    assert "Would delete 1 expired session.\n" in out
    assert "Would delete 1 unexpired session idle since before " in out
    with pytest.raises(CommandError, match=r"^1 expired session was waiting to be cleared"):
        run("--dry-run", "--fail-if-expired-over", "0")
    out, _ = run("--user", "user0", "--dry-run")
    assert f"Would revoke 1 session of user 'user0' (id {users[0].pk}).\n" in out

    out, _ = run("--inactive-for", "7d", "-v", "2")
    assert "Batch 1: deleted 1 expired session.\n" in out
    assert "Batch 2: deleted 1 inactive session.\n" in out
    assert "Deleted 1 expired session and 1 inactive session (idle since before " in out
    assert " in 2 batches (" in out
    make(engine, expired=True)
    assert "Deleted 1 expired session in 1 batch (" in run()[0]


@pytest.mark.parametrize("engine", [OUR_DB], indirect=True)
def test_every_dry_run_says_that_nothing_changed(engine, settings, users, redis_cache):
    populate(engine, user=users[0])

    for args in ([], ["--inactive-for", "7d"], ["-v", "2"]):
        assert run("--dry-run", *args)[0].endswith("\nDry run: nothing was deleted.\n")
    assert run("--dry-run", "--user", "user0")[0].endswith("\nDry run: nothing was revoked.\n")
    stdout = io.StringIO()
    with pytest.raises(CommandError, match="were waiting"):
        call_command("clearsessions", "--dry-run", "--fail-if-expired-over", "0", stdout=stdout)
    assert stdout.getvalue().endswith("\nDry run: nothing was deleted.\n")
    # Engines with nothing to clear say so too.
    settings.SESSION_CACHE_ALIAS = "redis"
    for nothing_to_clear in (SIGNED_COOKIES, STOCK_CACHE):
        settings.SESSION_ENGINE = nothing_to_clear
        out, _ = run("--dry-run")
        assert "nothing to clear" in out
        assert out.endswith("\nDry run: nothing was deleted.\n")


@pytest.mark.parametrize("engine", [OUR_DB, STOCK_FILE], indirect=True)
@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--dry-run"],
        ["--stats"],
        ["--user", "user0"],
        ["--user", "user0", "--dry-run"],
        ["--inactive-for", "7d"],
        ["--inactive-for", "7d", "--dry-run"],
    ],
)
def test_json_always_counts_unreadable_sessions(engine, users, args):
    populate(engine, user=users[0])
    report = json.loads(run("--format", "json", *args)[0])
    assert report["unreadable"] == 0


# -- signal receivers ----------------------------------------------------------------------


@pytest.mark.parametrize("engine", [OUR_DB], indirect=True)
def test_delete_receivers_do_not_fire_and_no_row_is_loaded(engine):
    heard, loaded = [], []

    def receiver(sender, **kwargs):
        heard.append(kwargs["signal"])

    def count_instances(sender, **kwargs):
        loaded.append(sender)

    pre_delete.connect(receiver, sender=Session, weak=False)
    post_delete.connect(receiver, sender=Session, weak=False)
    post_init.connect(count_instances, sender=Session, weak=False)
    try:
        expired, live = populate(engine)
        loaded.clear()

        run("--batch-size", "2")

        assert heard == []
        assert loaded == []
        assert not any(stored(engine, key) for key in expired)

        # Django's own command, on the same engine, loads every row to send the signals.
        populate(engine, live=0)
        loaded.clear()
        call_command(DjangoClearSessions())
        assert len(loaded) == 5
        assert len(heard) == 10
    finally:
        pre_delete.disconnect(receiver, sender=Session)
        post_delete.disconnect(receiver, sender=Session)
        post_init.disconnect(count_instances, sender=Session)
    assert all(stored(engine, key) for key in live)


# -- health --------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", [OUR_DB, STOCK_FILE], indirect=True)
def test_fail_if_expired_over(engine):
    expired, live = populate(engine)

    run("--dry-run", "--fail-if-expired-over", "5")
    run("--stats", "--fail-if-expired-over", "5")
    with pytest.raises(CommandError, match="5 expired sessions were waiting") as raised:
        run("--dry-run", "--fail-if-expired-over", "4")
    assert raised.value.returncode == 1
    with pytest.raises(CommandError, match="more than --fail-if-expired-over 4"):
        run("--stats", "--fail-if-expired-over", "4")
    assert all(stored(engine, key) for key in expired)

    # A real run still clears, then reports the backlog it found.
    stdout = io.StringIO()
    with pytest.raises(CommandError, match="5 expired sessions were waiting"):
        call_command(
            "clearsessions", "--fail-if-expired-over", "4", "--format", "json", stdout=stdout
        )
    assert json.loads(stdout.getvalue())["expired_waiting"] == 5
    assert not any(stored(engine, key) for key in expired)
    assert all(stored(engine, key) for key in live)
    run("--fail-if-expired-over", "0")


# -- other engines --------------------------------------------------------------------------


@pytest.mark.parametrize("engine", [SIGNED_COOKIES], indirect=True)
def test_signed_cookies(engine):
    out, _ = run()
    # The inventory says why: the command knows only that there is nothing to clear.
    assert "stores each session in the browser's cookie" in out
    assert "There is nothing to clear on the server." in out
    report = json.loads(run("--dry-run", "--format", "json")[0])
    assert (report["expired"], report["dry_run"], report["unreadable"]) == (0, True, 0)
    run("--fail-if-expired-over", "0")
    for args in (["--stats"], ["--inactive-for", "1d"]):
        with pytest.raises(CommandError, match="browser's cookie"):
            run(*args)


@pytest.mark.parametrize("engine", [STOCK_CACHE], indirect=True)
def test_cache_that_cannot_list_falls_back_to_the_engine(engine, monkeypatch):
    """On a cache other than django-redis, do what Django's command does."""
    calls = []
    store_class = import_module(engine).SessionStore
    monkeypatch.setattr(store_class, "clear_expired", classmethod(lambda cls: calls.append(cls)))

    out, _ = run()

    assert calls == [store_class]
    assert "cannot list its keys" in out
    assert "Ran the engine's own clear_expired() instead" in out
    for args in (["--dry-run"], ["--stats"], ["--inactive-for", "1d"]):
        with pytest.raises(CommandError, match="cannot list its keys"):
            run(*args)


def test_engine_that_cannot_clear(settings, monkeypatch):
    module = types.ModuleType("tests.registered_engines.bare")
    module.SessionStore = type("SessionStore", (SessionBase,), {})
    monkeypatch.setitem(sys.modules, "tests.registered_engines.bare", module)

    with pytest.raises(CommandError, match="doesn't support clearing expired sessions"):
        run("--engine", "tests.registered_engines.bare")


def test_engine_whose_storage_fails(settings, monkeypatch):
    """A custom engine's own clear_expired() failing is a clear error too."""

    def clear_expired(cls):
        raise DatabaseError("server closed the connection unexpectedly")

    module = types.ModuleType("tests.registered_engines.failing")
    module.SessionStore = type(
        "SessionStore", (SessionBase,), {"clear_expired": classmethod(clear_expired)}
    )
    monkeypatch.setitem(sys.modules, "tests.registered_engines.failing", module)

    with pytest.raises(CommandError, match="server closed the connection") as raised:
        run("--engine", "tests.registered_engines.failing")
    assert raised.value.returncode == 1


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--format", "json"],
        ["--dry-run"],
        ["--stats"],
        ["--user", "user0"],
        ["--inactive-for", "2d"],
        ["--fail-if-expired-over", "0"],
    ],
)
def test_our_redis_engine_on_a_cache_that_is_not_django_redis(settings, users, args):
    settings.SESSION_ENGINE = OUR_REDIS
    settings.SESSION_CACHE_ALIAS = "default"  # locmem

    stdout = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("clearsessions", *args, stdout=stdout)

    assert raised.value.returncode == 1
    message = str(raised.value)
    assert "'default'" in message
    assert "LocMemCache" in message
    assert "django-redis" in message
    assert stdout.getvalue() == ""


def test_our_redis_engine_on_a_cache_that_does_not_exist(settings):
    settings.SESSION_ENGINE = OUR_REDIS
    settings.SESSION_CACHE_ALIAS = "no-such-cache"

    with pytest.raises(CommandError, match=r"cannot be used: .*'no-such-cache'"):
        run()


@pytest.mark.parametrize("engine", [OUR_DB], indirect=True)
def test_storage_error_is_a_command_error_without_keys(engine, monkeypatch):
    expired, _ = populate(engine)
    secret = expired[0]

    def broken(self, *, batch_size=1000):
        yield 2
        raise DatabaseError(f'deadlock detected on "{secret}"')

    monkeypatch.setattr(ModelInventory, "clear_expired", broken)
    stdout = io.StringIO()
    with pytest.raises(CommandError, match="run the command again to carry on") as raised:
        call_command("clearsessions", stdout=stdout)

    assert secret not in str(raised.value)
    assert "<redacted>" in str(raised.value)
    assert "Deleted 2 expired sessions in 1 batch " in stdout.getvalue()


def test_command_has_help():
    assert "batches" in Command.help


# -- Redis ----------------------------------------------------------------------------------

OUR_REDIS = "django_sessionkit.backends.redis"
NOW = datetime(2030, 6, 1, 12, 0, tzinfo=dt_timezone.utc)


@pytest.fixture
def redis_engine(request, settings, redis_cache):
    settings.SESSION_ENGINE = request.param
    settings.SESSION_CACHE_ALIAS = "redis"
    return import_module(request.param).SessionStore


def redis_save(store_class, *, user=None, expiry=3600):
    store = store_class()
    store["cart"] = [1]
    if user is not None:
        store[SESSION_KEY] = str(user.pk)
    store.set_expiry(expiry)
    store.save()
    return store.session_key


@pytest.mark.parametrize("redis_engine", [OUR_REDIS], indirect=True)
def test_our_redis_engine_prunes_expired_index_entries(redis_engine, users):
    with time_machine.travel(NOW, tick=False) as clock:
        expired = [redis_save(redis_engine, user=users[0], expiry=60) for _ in range(3)]
        expired.append(redis_save(redis_engine, expiry=60))
        live = [redis_save(redis_engine, user=users[1]) for _ in range(2)]
        clock.move_to(NOW + timedelta(minutes=5))

        stats = json.loads(run("--stats", "--format", "json")[0])
        assert (stats["sessions"], stats["active"], stats["expired"]) == (6, 2, 4)
        assert stats["busiest_user"] == {
            "user_id": str(users[1].pk),
            "username": "user1",
            "sessions": 2,
        }
        assert json.loads(run("--dry-run", "--format", "json")[0])["expired"] == 4
        with pytest.raises(CommandError, match="4 expired sessions were waiting"):
            run("--dry-run", "--fail-if-expired-over", "3")

        out, _ = run("--batch-size", "3")

        assert "Deleted 4 expired sessions in 2 batches" in out
        assert not any(key in out for key in expired + live)
        after = json.loads(run("--stats", "--format", "json")[0])
        assert (after["sessions"], after["expired"]) == (2, 0)
        assert all(redis_engine().exists(key) for key in live)


@pytest.mark.parametrize("redis_engine", [OUR_REDIS], indirect=True)
def test_our_redis_engine_inactive_for_and_user(redis_engine, users):
    month = 30 * 24 * 3600
    with time_machine.travel(NOW - timedelta(days=20), tick=False) as clock:
        idle = [redis_save(redis_engine, user=users[0], expiry=month) for _ in range(2)]
        clock.move_to(NOW)
        recent = [redis_save(redis_engine, user=users[0]), redis_save(redis_engine)]
        bobs = redis_save(redis_engine, user=users[1])

        dry = json.loads(run("--inactive-for", "2w", "--dry-run", "--format", "json")[0])
        assert (dry["expired"], dry["inactive"]) == (0, 2)

        out, _ = run("--inactive-for", "2w")
        assert "Deleted 0 expired sessions and 2 inactive sessions" in out
        assert not any(redis_engine().exists(key) for key in idle)
        assert all(redis_engine().exists(key) for key in recent)

        assert "Revoked 1 session of user 'user1'" in run("--user", "user1")[0]
        assert not redis_engine().exists(bobs)
        assert redis_engine().exists(recent[0])


@pytest.mark.parametrize("redis_engine", [STOCK_CACHE], indirect=True)
def test_stock_cache_on_django_redis(redis_engine, users):
    keys = [redis_save(redis_engine, user=users[0]) for _ in range(2)] + [redis_save(redis_engine)]

    out, _ = run()
    assert "Redis deletes the expired sessions of" in out
    assert "nothing to clear" in out
    report = json.loads(run("--format", "json")[0])
    assert (report["expired"], report["note"].startswith("Redis")) == (0, True)
    run("--fail-if-expired-over", "0")

    stats = json.loads(run("--stats", "--format", "json")[0])
    assert (stats["sessions"], stats["active"], stats["expired"]) == (3, 3, 0)
    assert stats["busiest_user"] is None
    assert "Redis deletes expired sessions itself" in run("--stats")[0]

    with pytest.raises(CommandError, match="does not record when a session was last active"):
        run("--inactive-for", "1d")
    assert all(redis_engine().exists(key) for key in keys)

    assert "Revoked 2 sessions of user 'user0'" in run("--user", "user0")[0]
    assert [redis_engine().exists(key) for key in keys] == [False, False, True]


@pytest.mark.parametrize("redis_engine", [OUR_REDIS, STOCK_CACHE], indirect=True)
def test_redis_revokes_the_sessions_of_a_deleted_user(redis_engine, settings, users):
    alice, bob, _ = users
    bob_id = bob.pk
    bobs = [redis_save(redis_engine, user=bob) for _ in range(2)]
    alices = redis_save(redis_engine, user=alice)
    bob.delete()
    assert all(redis_engine().exists(key) for key in bobs)

    stats = json.loads(run("--stats", "--format", "json")[0])
    if settings.SESSION_ENGINE == OUR_REDIS:
        assert stats["busiest_user"] == {"user_id": str(bob_id), "username": None, "sessions": 2}
    else:
        assert stats["busiest_user"] is None  # not computed on the stock cache engine
    out, _ = run("--user", str(bob_id))

    assert out == f"Revoked 2 sessions of a deleted user (id {bob_id}).\n"
    assert not any(redis_engine().exists(key) for key in bobs)
    assert redis_engine().exists(alices)
    with pytest.raises(CommandError, match=f"No user has the username or id '{bob_id}'"):
        run("--user", str(bob_id))


@pytest.mark.parametrize(
    "args",
    [
        ["--stats"],
        ["--inactive-for", "7d"],
        ["--inactive-for", "7d", "--dry-run"],
        ["--user", "user0", "--dry-run"],
    ],
)
def test_unreadable_redis_sessions_are_skipped_and_reported(settings, redis_cache, users, args):
    from django_sessionkit.backends import redis as redis_backend
    from django_sessionkit.public_id import public_id

    settings.SESSION_ENGINE = "django_sessionkit.backends.redis"
    settings.SESSION_CACHE_ALIAS = "redis"
    keys = []
    for _ in range(3):
        store = redis_backend.SessionStore()
        store[SESSION_KEY] = str(users[0].pk)
        store.save()
        keys.append(store.session_key)
    keyspace = redis_backend.Keyspace("redis")
    keyspace.client().hset(
        keyspace.session(public_id(keys[0])), mapping={"a": "soon", "e": "never"}
    )

    report = json.loads(run("--format", "json", *args)[0])
    out, err = run(*args)

    assert report["unreadable"] == 1
    assert "Skipped 1 unreadable session; see the log." in out
    assert keys[0] not in out + err
