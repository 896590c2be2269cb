from __future__ import annotations

import os
from dataclasses import astuple
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import pytest
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.file import SessionStore as FileStore
from django.utils import timezone

from django_sessionkit.inventory import Count
from django_sessionkit.inventory.base import Stats
from django_sessionkit.inventory.file import FileInventory
from django_sessionkit.public_id import public_id

ENGINE = "django.contrib.sessions.backends.file"
COOKIE_AGE = 1209600  # Django's default SESSION_COOKIE_AGE, two weeks


@pytest.fixture
def inventory(session_dir):
    return FileInventory(ENGINE)


@pytest.fixture
def make(session_dir, settings):
    def make(*, user_id=None, data=None, idle=timedelta(0), expiry=None):
        """Store a session through Django's file engine, last written *idle* ago."""
        store = FileStore()
        store.update(data or {})
        if user_id is not None:
            store[SESSION_KEY] = user_id
        if expiry is not None:
            store.set_expiry(expiry)
        store.create()
        path = session_dir / (settings.SESSION_COOKIE_NAME + store.session_key)
        written = (timezone.now() - idle).timestamp()
        os.utime(path, (written, written))
        return store.session_key

    return make


def ids(infos):
    return [info.public_id for info in infos]


def test_count(inventory, make):
    make(user_id="1")
    make(user_id="1", idle=timedelta(days=15))
    make(user_id="2")
    make()
    make(idle=timedelta(days=20))

    assert inventory.count() == Count(5)
    assert inventory.count(estimate=True) == Count(5)
    assert inventory.count(status="active") == Count(3)
    assert inventory.count(status="expired") == Count(2)
    assert inventory.count(users=["1"]) == Count(2)
    assert inventory.count(users=["1"], status="active") == Count(1)
    assert inventory.count(authenticated=True) == Count(3)
    assert inventory.count(authenticated=False, status="active") == Count(1)
    # The file engine records no address.
    assert inventory.count(ip="127.0.0.1") == Count(0)


@pytest.mark.parametrize(
    ("expiry", "idle", "expected_expired"),
    [
        (None, timedelta(days=13), False),
        (None, timedelta(days=15), True),
        # 0 is "at browser close": the server keeps it for SESSION_COOKIE_AGE.
        (0, timedelta(days=13), False),
        (0, timedelta(days=15), True),
        # An integer is seconds of inactivity, counted from the last write.
        (300, timedelta(minutes=4), False),
        (300, timedelta(minutes=6), True),
    ],
)
def test_expiry_follows_the_last_write(
    inventory, make, session_dir, settings, expiry, idle, expected_expired
):
    key = make(expiry=expiry, idle=idle)
    age = expiry or COOKIE_AGE
    path = session_dir / (settings.SESSION_COOKIE_NAME + key)
    written = datetime.fromtimestamp(path.stat().st_mtime, tz=dt_timezone.utc)

    info = inventory.get(public_id(key))

    assert info.expire_date == written + timedelta(seconds=age)
    assert info.is_expired is expected_expired
    assert info.last_activity == written


def test_expiry_date_wins_over_the_file_time(inventory, make):
    at = timezone.now() + timedelta(days=30)
    fresh = make(expiry=at, idle=timedelta(days=20))
    past = make(expiry=timezone.now() - timedelta(minutes=1))

    assert inventory.get(public_id(fresh)).expire_date == at
    assert not inventory.get(public_id(fresh)).is_expired
    assert inventory.get(public_id(past)).is_expired


def test_naive_datetimes_without_time_zone_support(inventory, make, settings):
    settings.USE_TZ = False
    key = make(expiry=timedelta(days=1))
    other = make(idle=timedelta(days=20))

    info = inventory.get(public_id(key))
    assert timezone.is_naive(info.expire_date)
    assert timezone.is_naive(info.last_activity)
    assert not info.is_expired
    assert inventory.get(public_id(other)).is_expired


def test_ignores_files_that_are_not_sessions(inventory, make, session_dir, settings):
    key = make(user_id="1")
    prefix = settings.SESSION_COOKIE_NAME
    (session_dir / "notes.txt").write_text("hello")
    (session_dir / (prefix + "short")).write_text("x")
    (session_dir / (prefix + "NOTAVALIDKEY123")).write_text("x")
    # The engine's temporary file while it writes a session.
    (session_dir / (prefix + key + "_out_k2j3h4")).write_text("x")
    (session_dir / (prefix + "a" * 32)).mkdir()

    assert ids(inventory.page()) == [public_id(key)]
    assert inventory.count() == Count(1)
    assert list(inventory.clear_expired()) == []
    assert len(os.listdir(session_dir)) == 6


def test_empty_placeholder_and_undecodable_files(inventory, session_dir, settings):
    placeholder = "p" * 32
    broken = "b" * 32
    (session_dir / (settings.SESSION_COOKIE_NAME + placeholder)).write_text("")
    (session_dir / (settings.SESSION_COOKIE_NAME + broken)).write_text("garbage:data")

    for key in (placeholder, broken):
        info = inventory.get(public_id(key))
        assert info.get_decoded() == {}
        assert info.user_id is None
        assert not info.is_expired


def test_page_orders_and_pages(inventory, make):
    oldest = make(idle=timedelta(hours=3), expiry=timedelta(days=2))
    middle = make(idle=timedelta(hours=2), expiry=timedelta(days=3))
    newest = make(idle=timedelta(hours=1), expiry=timedelta(days=1))
    by_activity = [public_id(key) for key in (oldest, middle, newest)]
    by_expiry = [public_id(key) for key in (newest, oldest, middle)]

    assert ids(inventory.page(ordering="last_activity")) == by_activity
    assert ids(inventory.page()) == by_activity[::-1]
    assert ids(inventory.page(ordering="expire_date")) == by_expiry
    assert ids(inventory.page(ordering="-expire_date")) == by_expiry[::-1]
    assert ids(inventory.page(ordering="last_activity", offset=1, limit=1)) == by_activity[1:2]
    assert ids(inventory.page(ordering="last_activity", offset=2, limit=5)) == by_activity[2:]
    assert inventory.page(offset=3) == []
    assert inventory.page(limit=0) == []
    with pytest.raises(ValueError, match="ordering"):
        inventory.page(ordering="size")


def test_page_filters(inventory, make):
    a1 = make(user_id="7", idle=timedelta(minutes=1))
    a2 = make(user_id="7", idle=timedelta(minutes=2))
    a_old = make(user_id="7", idle=timedelta(days=15))
    make(user_id="8")
    anon = make(idle=timedelta(minutes=5))

    assert ids(inventory.page(users=["7"])) == [public_id(k) for k in (a1, a2, a_old)]
    assert ids(inventory.page(users=["7"], status="active")) == [public_id(k) for k in (a1, a2)]
    assert ids(inventory.page(status="expired")) == [public_id(a_old)]
    assert ids(inventory.page(authenticated=False)) == [public_id(anon)]
    assert len(inventory.page(authenticated=True)) == 4
    assert inventory.page(ip="10.0.0.1") == []


def test_get_and_info(inventory, make):
    key = make(user_id="3", data={"cart": [1]})

    info = inventory.get(public_id(key))

    assert info.public_id == public_id(key)
    assert info.user_id == "3"
    assert info.is_authenticated
    assert (info.ip, info.user_agent, info.created_at) == (None, "", None)
    assert info.get_decoded() == {"cart": [1], SESSION_KEY: "3"}
    assert key not in repr(info)
    assert key not in str(astuple(info))
    assert inventory.get(public_id("x" * 32)) is None
    assert inventory.get(key) is None  # a raw key is not a public id
    assert inventory.get("../../etc/passwd") is None


def test_for_user(inventory, make):
    older = make(user_id="5", idle=timedelta(hours=2))
    newer = make(user_id="5", idle=timedelta(minutes=2))
    make(user_id="5", idle=timedelta(days=15))
    make(user_id="6")

    assert ids(inventory.for_user("5")) == [public_id(newer), public_id(older)]
    assert inventory.for_user("9") == []


def test_revoke(inventory, make, session_dir, settings):
    key = make(user_id="1")
    other = make(user_id="1")

    assert inventory.revoke(public_id(key)) is True

    assert not (session_dir / (settings.SESSION_COOKIE_NAME + key)).exists()
    assert FileStore(other).load() == {SESSION_KEY: "1"}
    assert inventory.revoke(public_id(key)) is False
    assert inventory.revoke(public_id("unknown1")) is False
    assert inventory.count() == Count(1)


def test_revoke_user_keeps_current(inventory, make):
    current = make(user_id="1")
    others = [make(user_id="1") for _ in range(2)]
    expired = make(user_id="1", idle=timedelta(days=15))
    bobs = make(user_id="2")

    assert inventory.revoke_user("1", keep=public_id(current)) == 2

    remaining = {info.public_id for info in inventory.page()}
    assert remaining == {public_id(k) for k in (current, expired, bobs)}
    assert not remaining & {public_id(k) for k in others}
    assert inventory.revoke_user("1") == 1
    assert inventory.for_user("1") == []
    assert ids(inventory.for_user("2")) == [public_id(bobs)]


def test_clear_expired_in_batches(inventory, make, session_dir):
    expired = [make(idle=timedelta(days=15 + n)) for n in range(4)]
    expired.append(make(expiry=60, idle=timedelta(minutes=2)))
    live = [make(), make(expiry=600, idle=timedelta(minutes=2)), make(idle=timedelta(days=13))]

    assert list(inventory.clear_expired(batch_size=2)) == [2, 2, 1]

    assert {info.public_id for info in inventory.page()} == {public_id(k) for k in live}
    for key in live:
        assert FileStore(key).exists(key)
    for key in expired:
        assert not FileStore(key).exists(key)
    assert list(inventory.clear_expired(batch_size=2)) == []


def test_clear_expired_keeps_a_session_written_meanwhile(inventory, make, session_dir, settings):
    keys = [make(idle=timedelta(days=15)) for _ in range(3)]
    batches = inventory.clear_expired(batch_size=1)

    assert next(batches) == 1
    # A request saves the remaining sessions: their files are new again.
    for key in keys:
        path = session_dir / (settings.SESSION_COOKIE_NAME + key)
        if path.exists():
            os.utime(path)

    assert list(batches) == []
    assert inventory.count(status="active") == Count(2)


def test_streams_the_directory(inventory, make, monkeypatch):
    key = make(user_id="1")
    make(idle=timedelta(days=15))

    def no_listing(*args, **kwargs):
        raise AssertionError("the directory must be streamed, not listed")

    monkeypatch.setattr(os, "listdir", no_listing)

    assert inventory.count() == Count(2)
    assert len(inventory.page()) == 2
    assert inventory.get(public_id(key)).user_id == "1"
    assert len(inventory.for_user("1")) == 1
    assert list(inventory.clear_expired()) == [1]
    assert inventory.revoke_user("1") == 1


def test_clear_expired_rejects_empty_batches(inventory):
    with pytest.raises(ValueError, match="batch_size"):
        next(inventory.clear_expired(batch_size=0))


@pytest.mark.parametrize("method", ["count", "page"])
def test_rejects_unknown_status(inventory, method):
    with pytest.raises(ValueError, match="status"):
        getattr(inventory, method)(status="stale")


# -- filters by several users and by activity, stats, clear_inactive -------------


def test_count_and_page_by_user_ids(inventory, make):
    make(user_id="1")
    make(user_id="1", idle=timedelta(days=15))
    make(user_id="2")
    make(user_id="3")
    make()

    assert inventory.count(users=["1", "2"]) == Count(3)
    assert inventory.count(users={"2", "9"}, status="active") == Count(1)
    assert inventory.count(users=[]) == Count(0)
    assert inventory.page(users=[]) == []
    assert len(inventory.page(users=("1", "3"), status="active")) == 2


def test_count_and_page_by_activity(inventory, make):
    """The file's modification time is the session's last activity."""
    now = timezone.now()
    old = make(idle=timedelta(days=10))
    middle = make(idle=timedelta(days=5))
    recent = make(idle=timedelta(minutes=1))
    cutoff = now - timedelta(days=6)

    assert inventory.records_activity
    assert inventory.count(active_before=cutoff) == Count(1)
    assert inventory.count(active_after=cutoff) == Count(2)
    assert inventory.count(active_after=cutoff, active_before=now - timedelta(hours=1)) == Count(1)
    assert ids(inventory.page(active_after=cutoff, ordering="last_activity")) == [
        public_id(middle),
        public_id(recent),
    ]
    assert ids(inventory.page(active_before=cutoff)) == [public_id(old)]


def test_stats(inventory, make):
    now = timezone.now()
    for _ in range(3):
        make(user_id="2")
    make(user_id="2", idle=timedelta(days=20))
    make(user_id="1")
    make()
    make(idle=timedelta(days=16))

    stats = inventory.stats()

    assert (stats.sessions, stats.active, stats.expired) == (7, 5, 2)
    assert stats.busiest_user == ("2", 3)
    # The oldest expired: last written 20 days ago, so expired 6 days ago.
    expected = now - timedelta(days=20) + timedelta(seconds=COOKIE_AGE)
    assert abs(stats.oldest_expired - expected) < timedelta(seconds=5)


def test_stats_empty(inventory):
    assert inventory.stats() == Stats(0, 0, 0, None, None)


def test_clear_inactive(inventory, make, session_dir, settings):
    idle = [make(user_id="1", idle=timedelta(days=40 + n)) for n in range(3)]
    kept = [make(user_id="1", idle=timedelta(days=5)), make()]

    batches = list(
        inventory.clear_inactive(before=timezone.now() - timedelta(days=30), batch_size=2)
    )

    assert batches == [2, 1]
    names = {path.name for path in session_dir.iterdir()}
    assert names == {settings.SESSION_COOKIE_NAME + key for key in kept}
    assert not names & {settings.SESSION_COOKIE_NAME + key for key in idle}
    with pytest.raises(ValueError, match="batch_size"):
        inventory.clear_inactive(before=timezone.now(), batch_size=0)


def test_clear_inactive_keeps_a_session_saved_meanwhile(inventory, make, session_dir, settings):
    key = make(idle=timedelta(days=40))
    other = make(idle=timedelta(days=41))
    path = session_dir / (settings.SESSION_COOKIE_NAME + key)
    real_entries = inventory._entries

    def entries():
        for entry in real_entries():
            # A request saves the session after the scan saw it idle.
            os.utime(path)
            yield entry

    inventory._entries = entries
    assert list(inventory.clear_inactive(before=timezone.now() - timedelta(days=1))) == [1]
    assert path.exists()
    assert not (session_dir / (settings.SESSION_COOKIE_NAME + other)).exists()
