from __future__ import annotations

from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

import pytest
import time_machine
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.utils import timezone
from django_redis import get_redis_connection
from redis import client as redis_client
from redis import connection as redis_connection

from django_sessionkit.backends import redis as backend
from django_sessionkit.backends.base import RequestMetadata
from django_sessionkit.backends.redis import indexes as redis_indexes
from django_sessionkit.backends.redis import keyspace as redis_keyspace
from django_sessionkit.backends.redis.codec import user_digest
from django_sessionkit.inventory import redis as redis_inventory
from django_sessionkit.inventory.base import Count, InventoryUnavailable, Stats
from django_sessionkit.inventory.redis import RedisInventory
from django_sessionkit.public_id import public_id

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=dt_timezone.utc)
UA = "Mozilla/5.0 (Macintosh) Safari/605.1.15"


@pytest.fixture
def ours(redis_cache, settings) -> type[backend.SessionStore]:
    settings.SESSION_ENGINE = "django_sessionkit.backends.redis"
    settings.SESSION_CACHE_ALIAS = "redis"
    return backend.SessionStore


@pytest.fixture
def inventory(ours) -> RedisInventory:
    return RedisInventory("django_sessionkit.backends.redis")


@pytest.fixture
def commands(monkeypatch, redis_cache) -> list[str]:
    """The names of the commands redis-py sends, in order, pipelined ones included
    (a recorder on the real client).

    Every script is loaded on the server first: a script's first call on a
    server that has not seen it is an EVALSHA refused with NOSCRIPT, then a
    SCRIPT LOAD and an EVALSHA again, and counts would depend on which test
    ran first.
    """
    client = redis_cache.client.get_client(write=True)
    for script in backend.Keyspace("redis").scripts.values():
        client.script_load(script.script)
    sent: list[str] = []
    send = redis_connection.AbstractConnection.send_command

    def recording(self: Any, *args: Any, **kwargs: Any) -> None:
        sent.append(str(args[0]).lower())
        send(self, *args, **kwargs)

    monkeypatch.setattr(redis_connection.AbstractConnection, "send_command", recording)
    queue = redis_client.Pipeline.pipeline_execute_command

    def queued(self: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(str(args[0]).lower())
        return queue(self, *args, **kwargs)

    # Pipelined commands are sent packed together, not through send_command.
    monkeypatch.setattr(redis_client.Pipeline, "pipeline_execute_command", queued)
    return sent


def save(
    store: Any,
    data: dict[str, Any],
    *,
    ip: str | None = None,
    expiry: Any = None,
) -> str:
    session = store()
    session.set_request_metadata(RequestMetadata(ip=ip, user_agent=UA))
    session.update(data)
    if expiry is not None:
        session.set_expiry(expiry)
    session.save()
    return str(session.session_key)


def pids(infos: list[Any]) -> list[str]:
    return [info.public_id for info in infos]


# -- RedisInventory ---------------------------------------------------------------


@pytest.fixture
def population(ours) -> dict[str, str]:
    """Sessions saved at NOW: anonymous, of users 1 and 2, and two that expire in a minute."""
    with time_machine.travel(NOW, tick=False):
        return {
            "anon": save(ours, {"cart": 1}, ip="192.0.2.1", expiry=3600),
            "anon2": save(ours, {"cart": 2}, ip="192.0.2.2", expiry=7200),
            "u1a": save(ours, {SESSION_KEY: "1"}, ip="192.0.2.1", expiry=3000),
            "u1b": save(ours, {SESSION_KEY: "1"}, ip="198.51.100.7", expiry=5000),
            "u2": save(ours, {SESSION_KEY: "2"}, ip="192.0.2.1", expiry=4000),
            "short_anon": save(ours, {"cart": 3}, expiry=60),
            "short_u2": save(ours, {SESSION_KEY: "2"}, expiry=61),
        }


def test_count(inventory, population):
    with time_machine.travel(NOW + timedelta(minutes=5), tick=False):
        assert inventory.count().value == 7
        assert inventory.count().exact
        assert inventory.count(status="active").value == 5
        # Expired sessions whose index entries still await pruning.
        assert inventory.count(status="expired").value == 2
        assert inventory.totals() == (Count(7), Count(2))
        assert inventory.totals(estimate=True) == (Count(7), Count(2))
        assert inventory.count(authenticated=True).value == 4
        assert inventory.count(authenticated=True, status="active").value == 3
        assert inventory.count(authenticated=False, status="expired").value == 1
        assert inventory.count(users=["1"]).value == 2
        assert inventory.count(users=["2"], status="active").value == 1
        assert inventory.count(users=["2"], status="expired").value == 1
        assert inventory.count(users=["2"], ip="192.0.2.1").value == 1
        assert inventory.count(ip="192.0.2.1").value == 3
        assert inventory.count(ip="192.0.2.1", authenticated=False).value == 1
        assert inventory.count(users=["404"]).value == 0

        assert sum(inventory.clear_expired()) == 2
        assert inventory.count(status="expired").value == 0
        assert inventory.count().value == 5


def test_count_rejects_an_unknown_status(inventory):
    with pytest.raises(ValueError, match="Unknown status"):
        inventory.count(status="dead")


def test_page_is_ordered_by_expiry(inventory, population):
    by_expiry = ["short_anon", "short_u2", "u1a", "anon", "u2", "u1b", "anon2"]
    expected = [public_id(population[name]) for name in by_expiry]
    with time_machine.travel(NOW, tick=False):
        assert pids(inventory.page(ordering="expire_date")) == expected
        assert pids(inventory.page(ordering="-expire_date")) == expected[::-1]
        # No index orders by activity: those orderings are served by expiry.
        assert pids(inventory.page(ordering="-last_activity")) == expected[::-1]
        assert pids(inventory.page(ordering="last_activity")) == expected
        assert pids(inventory.page(offset=2, limit=3, ordering="expire_date")) == expected[2:5]
        assert inventory.page(limit=0) == []


def test_page_filters(inventory, population):
    with time_machine.travel(NOW + timedelta(minutes=5), tick=False):
        active = inventory.page(status="active", ordering="expire_date")
        assert pids(active) == [
            public_id(population[n]) for n in ("u1a", "anon", "u2", "u1b", "anon2")
        ]
        expired = inventory.page(status="expired", ordering="expire_date")
        assert pids(expired) == [public_id(population[n]) for n in ("short_anon", "short_u2")]
        assert all(info.is_expired for info in expired)

        authenticated = inventory.page(authenticated=True, status="active", ordering="expire_date")
        assert pids(authenticated) == [public_id(population[n]) for n in ("u1a", "u2", "u1b")]
        anonymous = inventory.page(authenticated=False, ordering="-expire_date")
        assert pids(anonymous) == [
            public_id(population[n]) for n in ("anon2", "anon", "short_anon")
        ]
        by_ip = inventory.page(ip="192.0.2.1", ordering="expire_date", offset=1, limit=5)
        assert pids(by_ip) == [public_id(population[n]) for n in ("anon", "u2")]
        by_user = inventory.page(users=["1"], ordering="expire_date")
        assert pids(by_user) == [public_id(population[n]) for n in ("u1a", "u1b")]
        assert inventory.page(users=["2"], status="expired")[0].public_id == public_id(
            population["short_u2"]
        )


def test_page_by_user_orders_by_real_activity(inventory, ours):
    with time_machine.travel(NOW, tick=False) as clock:
        first = save(ours, {SESSION_KEY: "5"}, expiry=9000)
        second = save(ours, {SESSION_KEY: "5"}, expiry=100)
        clock.move_to(NOW + timedelta(seconds=30))
        touched = ours(first)
        touched.load()
        touched.touch_activity(NOW + timedelta(seconds=30))

        assert pids(inventory.page(users=["5"])) == [public_id(first), public_id(second)]
        assert pids(inventory.page(users=["5"], ordering="last_activity")) == [
            public_id(second),
            public_id(first),
        ]
        assert pids(inventory.for_user("5")) == [public_id(first), public_id(second)]


@pytest.mark.parametrize("directory_slice", [500, 2])
def test_pages_across_many_chunks(inventory, ours, monkeypatch, directory_slice):
    """Whole chunks before the offset are skipped, the directory read a slice at a time."""
    monkeypatch.setattr(redis_inventory, "PAGE_SLICE", directory_slice)
    keys = [save(ours, {"n": i}, expiry=1000 + 7 * ((i * 37) % 300)) for i in range(300)]
    expiry = {public_id(k): ours(k).get_expiry_date() for k in keys}
    order = sorted(expiry, key=lambda pid: expiry[pid])

    assert pids(inventory.page(offset=250, limit=20, ordering="expire_date")) == order[250:270]
    assert (
        pids(inventory.page(offset=130, limit=40, ordering="-expire_date"))
        == (order[::-1][130:170])
    )
    assert pids(inventory.page(offset=295, limit=20, ordering="expire_date")) == order[295:]
    assert (
        pids(inventory.page(authenticated=False, offset=200, limit=5, ordering="expire_date"))
        == (order[200:205])
    )
    assert inventory.count().value == 300
    with time_machine.travel(timezone.now() + timedelta(seconds=1000 + 7 * 150), tick=False):
        active = [pid for pid in order if expiry[pid] > timezone.now()]
        assert 0 < len(active) < 300
        assert (
            pids(inventory.page(status="active", offset=30, limit=50, ordering="-expire_date"))
            == active[::-1][30:80]
        )


def test_get_returns_the_metadata_and_data_on_demand(inventory, ours):
    with time_machine.travel(NOW, tick=False) as clock:
        key = save(ours, {SESSION_KEY: "3", "k": "v"}, ip="203.0.113.5", expiry=600)
        clock.move_to(NOW + timedelta(seconds=90))
        later = ours(key)
        later.load()
        later.touch_activity(NOW + timedelta(seconds=90))

        info = inventory.get(public_id(key))

    assert info.public_id == public_id(key)
    assert (info.user_id, info.ip, info.user_agent) == ("3", "203.0.113.5", UA)
    assert info.created_at == NOW
    assert info.last_activity == NOW + timedelta(seconds=90)
    assert info.expire_date == NOW + timedelta(seconds=600)
    assert info.get_decoded() == {SESSION_KEY: "3", "k": "v", "_session_expiry": 600}
    assert key not in repr(info)
    assert inventory.get("0" * 32) is None
    assert inventory.get("not a public id") is None


def test_for_user_lists_only_the_users_live_sessions(inventory, ours):
    with time_machine.travel(NOW, tick=False) as clock:
        mine = [save(ours, {SESSION_KEY: "7"}) for _ in range(3)]
        expiring = save(ours, {SESSION_KEY: "7"}, expiry=60)
        save(ours, {SESSION_KEY: "70"})
        save(ours, {"cart": 1})
        clock.move_to(NOW + timedelta(minutes=2))

        listed = inventory.for_user("7")

    assert sorted(pids(listed)) == sorted(public_id(k) for k in mine)
    assert public_id(expiring) not in pids(listed)
    assert all(info.user_id == "7" for info in listed)
    assert inventory.for_user("404") == []


def test_for_user_prunes_entries_of_vanished_sessions(inventory, ours):
    keys = [save(ours, {SESSION_KEY: "8"}) for _ in range(3)]
    keyspace = backend.Keyspace("redis")
    client = get_redis_connection("redis")
    client.delete(keyspace.session(public_id(keys[0])))  # as if Redis had expired it

    assert sorted(pids(inventory.for_user("8"))) == sorted(public_id(k) for k in keys[1:])
    members = [
        m.decode()
        for chunk in client.zrange(keyspace.directory("u"), 0, -1)
        for m in client.zrange(keyspace.chunk("u", chunk.decode()), 0, -1)
    ]
    assert sorted(members) == sorted(public_id(k) for k in keys[1:])


def test_for_user_with_more_sessions_than_a_chunk_holds(inventory, ours):
    keys = {save(ours, {SESSION_KEY: "9"}, expiry=1000 + i) for i in range(130)}
    others = {save(ours, {SESSION_KEY: str(100 + i)}) for i in range(20)}

    assert set(pids(inventory.for_user("9"))) == {public_id(k) for k in keys}
    assert inventory.revoke_user("9") == 130
    assert inventory.count().value == len(others)


def test_for_user_is_one_round_trip_without_keys_or_scan(inventory, ours, commands):
    for _ in range(10):
        save(ours, {SESSION_KEY: "11"})
    commands.clear()

    assert len(inventory.for_user("11")) == 10
    assert commands == ["evalsha"]

    inventory.count()
    inventory.count(authenticated=True)
    inventory.page(offset=3)
    inventory.get(inventory.for_user("11")[0].public_id)
    inventory.revoke_user("11")
    list(inventory.clear_expired())
    assert not {"keys", "scan"} & set(commands)


def test_revoke(inventory, ours):
    key = save(ours, {SESSION_KEY: "4"})
    other = save(ours, {SESSION_KEY: "4"})

    assert inventory.revoke(public_id(key))
    assert not inventory.revoke(public_id(key))
    assert not inventory.revoke("bad id")
    assert ours(key).load() == {}
    assert pids(inventory.for_user("4")) == [public_id(other)]
    assert inventory.count().value == 1


def test_revoke_user_keeps_the_current_session(inventory, ours):
    current = save(ours, {SESSION_KEY: "6"})
    others = [save(ours, {SESSION_KEY: "6"}) for _ in range(3)]
    bystander = save(ours, {SESSION_KEY: "60"})

    assert inventory.revoke_user("6", keep=public_id(current)) == 3

    assert pids(inventory.for_user("6")) == [public_id(current)]
    assert not any(ours().exists(key) for key in others)
    assert ours().exists(bystander)
    assert inventory.count(authenticated=True).value == 2
    assert inventory.revoke_user("6") == 1
    assert inventory.revoke_user("6") == 0


def test_clear_expired_yields_per_batch(inventory, ours):
    with time_machine.travel(NOW, tick=False) as clock:
        for i in range(12):
            save(ours, {SESSION_KEY: str(i)}, expiry=60)
        live = save(ours, {"k": "v"})
        clock.move_to(NOW + timedelta(minutes=5))

        assert list(inventory.clear_expired(batch_size=5)) == [5, 5, 2]
        assert list(inventory.clear_expired(batch_size=5)) == []

    assert pids(inventory.page()) == [public_id(live)]
    assert inventory.count(authenticated=True).value == 0


def test_our_inventory_needs_django_redis(settings):
    settings.SESSION_CACHE_ALIAS = "default"

    with pytest.raises(InventoryUnavailable, match="cannot list its keys"):
        RedisInventory()


def test_inventory_rejects_an_unknown_ordering(inventory):
    with pytest.raises(ValueError, match="Unknown ordering"):
        inventory.page(ordering="user")


def colliding_user_ids() -> tuple[str, str]:
    """Two user ids with the same 32-bit digest: they share a score in the user index."""
    seen: dict[str, str] = {}
    for n in range(1_000_000):
        user_id = str(n)
        digest = user_digest(user_id)
        if digest in seen:
            return seen[digest], user_id
        seen[digest] = user_id
    raise AssertionError("no collision found")


def test_users_whose_digests_collide_never_see_each_others_sessions(inventory, ours):
    first, second = colliding_user_ids()
    assert user_digest(first) == user_digest(second)
    mine = save(ours, {SESSION_KEY: first})
    theirs = [save(ours, {SESSION_KEY: second}) for _ in range(2)]

    assert pids(inventory.for_user(first)) == [public_id(mine)]
    assert sorted(pids(inventory.for_user(second))) == sorted(public_id(k) for k in theirs)
    assert inventory.count(users=[first]).value == 1
    assert inventory.revoke_user(first) == 1
    assert all(ours().exists(key) for key in theirs)
    assert len(inventory.for_user(second)) == 2


# -- filters by several users and by activity, stats, clear_inactive -------------


def test_count_and_page_by_user_ids(inventory, population):
    with time_machine.travel(NOW + timedelta(minutes=5), tick=False):
        assert inventory.count(users=["1", "2"]).value == 4
        assert inventory.count(users={"1", "2"}, status="active").value == 3
        assert inventory.count(users=["2", "404"]).value == 2
        # An empty collection matches nothing, unlike None.
        assert inventory.count(users=[]).value == 0
        assert inventory.page(users=()) == []
        page = inventory.page(users=["1", "2"], status="active", ordering="expire_date")
        assert pids(page) == [public_id(population[n]) for n in ("u1a", "u2", "u1b")]


def test_count_and_page_by_activity(inventory, ours):
    month = 30 * 24 * 3600
    with time_machine.travel(NOW - timedelta(days=10), tick=False) as clock:
        old = save(ours, {SESSION_KEY: "1"}, expiry=month)
        clock.move_to(NOW - timedelta(days=5))
        middle = save(ours, {}, expiry=month + 1)
        clock.move_to(NOW)
        recent = save(ours, {SESSION_KEY: "1"}, expiry=month + 2)
        cutoff = NOW - timedelta(days=5)

        assert inventory.records_activity
        assert inventory.count(active_before=cutoff).value == 1
        assert inventory.count(active_after=cutoff).value == 2  # at or after
        assert inventory.count(active_after=cutoff, active_before=NOW).value == 1
        assert inventory.count(active_after=cutoff, users=["1"]).value == 1
        assert pids(inventory.page(active_after=cutoff, ordering="expire_date")) == [
            public_id(middle),
            public_id(recent),
        ]
        assert pids(inventory.page(active_before=cutoff)) == [public_id(old)]
        assert pids(inventory.page(users=["1"], active_before=cutoff)) == [public_id(old)]


def test_stats(inventory, population):
    with time_machine.travel(NOW + timedelta(minutes=5), tick=False):
        stats = inventory.stats()

    assert (stats.sessions, stats.active, stats.expired) == (7, 5, 2)
    # The oldest expired session ("short_anon") expired a minute after NOW.
    assert stats.oldest_expired == NOW + timedelta(seconds=60)
    # User 2 holds two sessions, but one has expired.
    assert stats.busiest_user == ("1", 2)

    with time_machine.travel(NOW, tick=False):
        assert inventory.stats().oldest_expired is None
        assert inventory.stats().busiest_user == ("1", 2)  # "1" < "2", both with 2


def test_stats_when_empty(inventory):
    assert inventory.stats() == Stats(0, 0, 0, None, None)


def test_stats_busiest_user_across_chunks_and_colliding_digests(inventory, ours, monkeypatch):
    monkeypatch.setattr(redis_inventory, "CHUNKS_PER_ROUND_TRIP", 1)
    first, second = colliding_user_ids()
    for _ in range(3):
        save(ours, {SESSION_KEY: first})
    for _ in range(2):
        save(ours, {SESSION_KEY: second})
    for i in range(130):  # more than a chunk holds, over several chunks
        save(ours, {SESSION_KEY: str(1000 + i % 65)})

    # first and second share a score in the user index: counted apart.
    assert inventory.stats().busiest_user == (first, 3)
    assert inventory.stats().sessions == 135


def test_stats_reads_the_indexes_without_scan(inventory, population, commands):
    commands.clear()
    inventory.stats()
    assert "scan" not in commands
    assert "keys" not in commands


def test_clear_inactive_in_batches(inventory, ours, monkeypatch):
    monkeypatch.setattr(redis_keyspace, "DELETE_SLICE", 1)
    month = 30 * 24 * 3600
    with time_machine.travel(NOW - timedelta(days=10), tick=False) as clock:
        idle = [save(ours, {SESSION_KEY: "3"}, expiry=month) for _ in range(3)]
        idle.append(save(ours, {}, expiry=month))
        clock.move_to(NOW)
        kept = [save(ours, {SESSION_KEY: "3"}), save(ours, {})]

        batches = list(inventory.clear_inactive(before=NOW - timedelta(days=1), batch_size=3))

        assert batches == [3, 1]
        assert not any(ours().exists(key) for key in idle)
        assert all(ours().exists(key) for key in kept)
        # The indexes follow.
        assert inventory.count().value == 2
        assert inventory.count(authenticated=True).value == 1
        assert pids(inventory.for_user("3")) == [public_id(kept[0])]
        assert list(inventory.clear_inactive(before=NOW - timedelta(days=1))) == []
    with pytest.raises(ValueError, match="batch_size"):
        inventory.clear_inactive(before=NOW, batch_size=0)


def test_clear_inactive_keeps_a_session_active_meanwhile(inventory, ours):
    with time_machine.travel(NOW - timedelta(days=10), tick=False) as clock:
        first, second = save(ours, {}, expiry=10**6), save(ours, {}, expiry=10**6)
        clock.move_to(NOW)
        batches = inventory.clear_inactive(before=NOW - timedelta(days=1), batch_size=1)

        assert next(batches) == 1
        survivor = first if ours().exists(first) else second
        # The other session is used before the next batch.
        store = ours(survivor)
        store.load()
        store.touch_activity(NOW)
        assert list(batches) == []

    assert ours().exists(survivor)
    assert inventory.count().value == 1


def test_clear_expired_keeps_each_script_call_short(inventory, ours, commands, monkeypatch):
    """A batch is several script calls of at most PRUNE_SLICE entries: Redis never blocks long."""
    monkeypatch.setattr(redis_indexes, "PRUNE_SLICE", 2)
    with time_machine.travel(NOW, tick=False) as clock:
        for i in range(12):
            save(ours, {SESSION_KEY: str(i)}, expiry=60)
        clock.move_to(NOW + timedelta(minutes=5))
        commands.clear()

        assert list(inventory.clear_expired(batch_size=5)) == [5, 5, 2]

    # 2 + 2 + 1 per batch, each batch's calls in one pipeline (the last batch's
    # find 2, then nothing), and one sweep of the user index's only chunk.
    assert commands.count("evalsha") == 9 + 1
    assert inventory.count().value == 0


def test_counting_reads_the_expiry_index_in_short_slices(inventory, ours, commands, monkeypatch):
    """A backlog of millions is counted a slice of chunks per script call, exactly."""
    monkeypatch.setattr(redis_indexes, "COUNT_CHUNKS", 3)
    monkeypatch.setattr(redis_indexes, "COUNT_CHUNKS_AUTHENTICATED", 2)
    with time_machine.travel(NOW, tick=False) as clock:
        # 1000 sessions in expiry order over ~10 chunks; 3 of every 4 are logged in.
        for i in range(1000):
            data = {SESSION_KEY: str(i % 7)} if i % 4 else {"cart": i}
            save(ours, data, expiry=60 + i)
        clock.move_to(NOW + timedelta(seconds=60 + 700))
        keyspace = inventory.keyspace
        chunks = keyspace.client().zcount(keyspace.directory("x"), "-inf", "+inf")
        assert chunks >= 8
        commands.clear()
        # Sessions 0..700 expired (expiry <= now), 701..999 active.
        assert inventory.count(status="expired").value == 701
        scripts = commands.count("evalsha") + commands.count("eval")
        assert scripts >= 3  # one call per 3 expired chunks, never one over them all
        assert inventory.count(status="active").value == 299
        assert inventory.count().value == 1000
        commands.clear()
        expired_auth = sum(1 for i in range(701) if i % 4)
        assert inventory.count(status="expired", authenticated=True).value == expired_auth
        assert inventory.count(status="expired", authenticated=False).value == 701 - expired_auth
        assert inventory.count(authenticated=True).value == sum(1 for i in range(1000) if i % 4)
        assert commands.count("evalsha") + commands.count("eval") >= 3 * 4


def test_estimated_totals_sample_the_expired_chunks(inventory, ours, commands, monkeypatch):
    """The admin's summary: one short script call however long the backlog."""
    monkeypatch.setattr(redis_inventory, "ESTIMATE_SAMPLES", 4)
    with time_machine.travel(NOW, tick=False) as clock:
        for i in range(1000):
            save(ours, {"cart": i}, expiry=60 + i)
        clock.move_to(NOW + timedelta(seconds=60 + 700))
        commands.clear()
        everything, expired = inventory.totals(estimate=True)
        assert commands.count("evalsha") + commands.count("eval") == 1
        assert everything == Count(1000)
        assert not expired.exact
        assert abs(expired.value - 701) <= 701 * 0.25
        # Exact when few chunks hold expired entries.
        clock.move_to(NOW + timedelta(seconds=61))
        assert inventory.totals(estimate=True) == (Count(1000), Count(2))
        assert inventory.totals() == (Count(1000), Count(2))


def test_pruning_keeps_the_user_index_consistent(inventory, ours):
    """Pruning settles each user index chunk once per call: chunks merge and empty correctly."""
    with time_machine.travel(NOW, tick=False) as clock:
        doomed = [save(ours, {SESSION_KEY: str(500 + i)}, expiry=60) for i in range(400)]
        kept = {str(500 + i): save(ours, {SESSION_KEY: str(500 + i)}) for i in range(0, 400, 7)}
        clock.move_to(NOW + timedelta(minutes=5))

        assert sum(inventory.clear_expired(batch_size=150)) == len(doomed)

        keyspace = inventory.keyspace
        client = keyspace.client()
        chunks = client.zrange(keyspace.directory("u"), 0, -1, withscores=True)
        sizes = [client.zcard(keyspace.chunk("u", chunk.decode())) for chunk, _ in chunks]
        assert all(sizes)  # no empty chunk left in the directory
        assert sum(sizes) == int(client.get(keyspace.size("u"))) == len(kept)
        for chunk, lowest in chunks:
            first = client.zrange(keyspace.chunk("u", chunk.decode()), 0, 0, withscores=True)
            assert first[0][1] == lowest  # the directory knows each chunk's minimum
        for user_id, key in kept.items():
            assert pids(inventory.for_user(user_id)) == [public_id(key)]
        assert inventory.count(authenticated=True).value == len(kept)


def test_clear_expired_sweeps_user_entries_of_sessions_redis_expired(inventory, ours, commands):
    """Redis drops a session at its TTL; its user index entry goes with the next clearing."""
    keyspace = inventory.keyspace
    client = keyspace.client()
    with time_machine.travel(NOW, tick=False) as clock:
        gone = save(ours, {SESSION_KEY: "77"}, expiry=60)
        live = save(ours, {SESSION_KEY: "77"})
        # What Redis does when the TTL runs out: the hash vanishes, the indexes stay.
        client.delete(keyspace.session(public_id(gone)))
        clock.move_to(NOW + timedelta(minutes=5))
        assert int(client.get(keyspace.size("u"))) == 2

        assert list(inventory.clear_expired()) == [1]

    assert int(client.get(keyspace.size("u"))) == 1
    [chunk] = client.zrange(keyspace.directory("u"), 0, -1)
    assert client.zrange(keyspace.chunk("u", chunk.decode()), 0, -1) == [public_id(live).encode()]
    assert pids(inventory.for_user("77")) == [public_id(live)]


def test_sweeping_reads_the_user_index_directory_in_pages(inventory, ours, commands, monkeypatch):
    """No single command returns the whole directory; every chunk is still swept.

    Each chunk keeps only its lowest entry, so that a swept chunk merges into
    the next one and passes its score on: a page starting above the last
    page's highest score would skip that next chunk.
    """
    monkeypatch.setattr(redis_indexes, "SWEEP_PAGE", 2)
    keyspace = inventory.keyspace
    client = keyspace.client()
    directory = keyspace.directory("u")
    with time_machine.travel(NOW, tick=False) as clock:
        users = {public_id(save(ours, {SESSION_KEY: str(i)})): str(i) for i in range(600)}
        chunks = client.zrange(directory, 0, -1)
        assert len(chunks) >= 5
        lowest = {
            client.zrange(keyspace.chunk("u", chunk.decode()), 0, 0)[0].decode() for chunk in chunks
        }
        # What Redis does when the TTL runs out: the hash vanishes, the indexes stay.
        for pid in set(users) - lowest:
            client.delete(keyspace.session(pid))
        save(ours, {"cart": 1}, expiry=60)  # something to prune, so that the sweep runs
        clock.move_to(NOW + timedelta(minutes=5))
        commands.clear()

        assert list(inventory.clear_expired()) == [1]

    assert "zrange" not in commands
    assert commands.count("zrangebyscore") >= 3
    assert client.zcard(directory) < len(chunks)  # swept chunks merged
    assert int(client.get(keyspace.size("u"))) == len(lowest)
    for pid in lowest:
        assert pids(inventory.for_user(users[pid])) == [pid]


def test_clear_expired_sweeps_only_when_it_pruned(inventory, ours, commands):
    save(ours, {SESSION_KEY: "78"})
    commands.clear()
    assert list(inventory.clear_expired()) == []
    # One round trip of PRUNE calls that find nothing (redis-py first checks that
    # the pipeline's script is loaded); no sweep of the user index.
    assert set(commands) == {"script exists", "evalsha"}
    assert "zrange" not in commands


# -- corrupt entries -------------------------------------------------------------------

from tests.test_backends_redis import CORRUPTIONS  # noqa: E402


@pytest.fixture
def corrupt(ours, request):
    """Alice's healthy session, and one of hers broken in the way the test names."""
    from django.contrib.auth.models import User

    alice = User.objects.create_user("alice", password="alice-pass")
    logged_in = {
        SESSION_KEY: str(alice.pk),
        BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend",
        HASH_SESSION_KEY: alice.get_session_auth_hash(),
    }
    healthy = save(ours, logged_in, ip="192.0.2.1")
    broken = save(ours, logged_in, ip="192.0.2.2")
    keyspace = backend.Keyspace("redis")
    CORRUPTIONS[request.param](keyspace.client(), keyspace.session(public_id(broken)))
    return {"alice": alice, "healthy": healthy, "broken": broken, "kind": request.param}


@pytest.mark.django_db
@pytest.mark.parametrize("corrupt", CORRUPTIONS, indirect=True)
def test_a_corrupt_session_is_left_out_of_every_listing(inventory, corrupt):
    healthy, broken = public_id(corrupt["healthy"]), public_id(corrupt["broken"])
    user_id = str(corrupt["alice"].pk)
    now = timezone.now()

    listings = {
        "page": inventory.page(),
        "page by status": inventory.page(status="active"),
        "page by ip": inventory.page(ip="192.0.2.2"),
        "page by activity": inventory.page(active_before=now + timedelta(hours=1)),
        "page by user": inventory.page(users=[user_id]),
        "for_user": inventory.for_user(user_id),
    }
    found = inventory.get(broken)
    stats = inventory.stats()
    inventory.count(ip="192.0.2.2")

    for name, infos in listings.items():
        assert broken not in pids(infos), name
        if name != "page by ip":
            assert healthy in pids(infos), name
    assert found is None
    assert stats.busiest_user in ((user_id, 1), (user_id, 2))
    assert inventory.unreadable > 0


@pytest.mark.django_db
@pytest.mark.parametrize("corrupt", CORRUPTIONS, indirect=True)
def test_clear_inactive_and_revoking_get_past_a_corrupt_session(inventory, corrupt):
    user_id = str(corrupt["alice"].pk)

    cleared = sum(inventory.clear_inactive(before=timezone.now() + timedelta(hours=1)))
    saved_again = save(backend.SessionStore, {SESSION_KEY: user_id})
    revoked = inventory.revoke_user(user_id)

    assert cleared >= 1  # the healthy one, at least
    assert revoked >= 1
    assert backend.SessionStore(saved_again).load() == {}


@pytest.mark.django_db
@pytest.mark.parametrize("corrupt", CORRUPTIONS, indirect=True)
def test_admin_and_your_sessions_pages_get_past_a_corrupt_session(corrupt, settings):
    from django.contrib.auth.models import User
    from django.test import Client

    User.objects.create_superuser("root", password="root-pass")
    admin = Client(raise_request_exception=False)
    admin.login(username="root", password="root-pass")
    alice = Client(raise_request_exception=False)
    alice.cookies[settings.SESSION_COOKIE_NAME] = corrupt["healthy"]
    broken = public_id(corrupt["broken"])
    alice_id = corrupt["alice"].pk

    pages = {
        "list": admin.get("/admin/django_sessionkit/session/"),
        "list of alice": admin.get(f"/admin/django_sessionkit/session/?user={alice_id}"),
        "search": admin.get("/admin/django_sessionkit/session/?q=192.0.2.2"),
        "detail": admin.get(f"/admin/django_sessionkit/session/{broken}/change/"),
        "revoke alice": admin.get(f"/admin/django_sessionkit/session/user/{alice_id}/revoke/"),
        "your sessions": alice.get("/sessions/"),
    }

    assert {name: page.status_code for name, page in pages.items()} == {
        "list": 200,
        "list of alice": 200,
        "search": 200,
        "detail": 302,  # back to the list: no such session
        "revoke alice": 200,
        "your sessions": 200,
    }
    assert broken.encode() not in pages["list"].content
