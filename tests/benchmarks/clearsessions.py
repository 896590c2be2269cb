"""Benchmark ``clearsessions``: stock Django's command against sessionkit's, on identical data.

Run from the project root::

    python -m tests.benchmarks.clearsessions [--sessions N] [--db sqlite|postgres|both]
                                             [--only clear,receiver,writer,redis]

*N* sessions (default 2,000,000), half of them expired, are written once per
database into sessionkit's table; every measured run gets its own identical
copy (a file copy on SQLite, ``CREATE DATABASE ... TEMPLATE`` on PostgreSQL)
and runs in a process of its own, whose peak RSS the kernel reports
(``wait4``). Both commands run with ``SESSION_ENGINE`` set to
sessionkit's db engine, so they clear the very same table: stock Django's
command calls ``SessionStore.clear_expired()`` (one ``QuerySet.delete()``),
ours deletes through the inventory in batches.

clear
    Total time, the longest single DELETE transaction (stock Django's is the
    whole statement; ours is the longest batch, timed around each batch),
    peak RSS, and unexpired sessions removed (must be zero). Our RSS is also
    measured on a table of *N*/2 sessions: it must not grow with *N*.
receiver
    The same with a ``post_delete`` receiver connected to the session model,
    which makes Django's ``QuerySet.delete()`` load every row.
writer
    A second process updates the ``last_activity`` of random unexpired
    sessions, one autocommitted UPDATE every 10 ms, while each command runs;
    its longest wait for one UPDATE is printed, for stock Django's command,
    ours, and ours with ``--sleep 0.1`` (SQLite's lock is not fair: a writer
    backing off in its busy handler can miss the gaps between batches run
    back to back).
redis
    *N* sessions in sessionkit's redis engine, half of them expired (written
    by the engine's own save script, with expiry dates in the past), whose
    *N*/2 expired index entries ``clearsessions`` prunes; the longest single
    Redis command comes from SLOWLOG. Beside it, a sweep with django-redis's
    ``iter_keys("*")`` at its default settings over the same keyspace. Run
    twice: with the expired sessions' hashes already gone, as Redis expires
    them itself when their TTL (the session's age) is reached, and with the
    hashes still there, which pruning then deletes too (the worst case: a
    Django clock ahead of Redis's).

PostgreSQL comes from ``DATABASE_URL`` (default
``postgres://postgres@127.0.0.1:5432/test``): only its server is used, with
dedicated databases named ``sessionkit_bench_clear*`` that are dropped at the
end. Redis is a private ``redis-server`` started for the run (its SLOWLOG and
configuration are ours alone), or ``--redis-url``, whose database is flushed.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tests.benchmarks._common import USER_AGENTS, Report, duration, mib, ms, progress

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
PARTS = ("clear", "receiver", "writer", "redis")
BENCH_DATABASE = "sessionkit_bench_clear"
DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/test"
OUR_DB = "django_sessionkit.backends.db"
OUR_REDIS = "django_sessionkit.backends.redis"
SESSIONS_PER_USER = 20
ANONYMOUS_SHARE = 0.1
AGE = timedelta(days=14)
ROWS_PER_INSERT = 20_000
#: Seconds between two UPDATEs of the concurrent writer.
WRITER_PAUSE = 0.01
#: --sleep of the second run of ours with the concurrent writer.
PAUSE = 0.1
SLOWLOG_THRESHOLD_US = 1000
STALL_PROBE_SECONDS = 5.0

TIME_TARGET = 1.3
TRANSACTION_TARGET = 0.100
RSS_MARGIN = 30 * 1024 * 1024
RSS_GROWTH = 10 * 1024 * 1024
RECEIVER_TIME_TARGET = 0.25
RECEIVER_RSS_TARGET = 100 * 1024 * 1024
WRITER_TARGET = 0.200
SLOWLOG_TARGET = 0.010
SWEEP_TARGET = 0.5


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.clearsessions",
        description="Compare django_sessionkit's clearsessions with stock Django's.",
    )
    parser.add_argument(
        "--sessions",
        type=int,
        default=2_000_000,
        help="sessions per table and in Redis, half of them expired (default 2,000,000)",
    )
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument(
        "--only", default=",".join(PARTS), help=f"comma-separated parts among {', '.join(PARTS)}"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=10_000,
        help="our --batch-size: the most rows per batch (default 10,000, the command's)",
    )
    parser.add_argument(
        "--batch-time",
        type=float,
        help="our --batch-time: seconds a batch should take (default: the command's, 0.05; "
        "0 for batches of --batch-size)",
    )
    parser.add_argument("--redis-url", help="use this Redis (its database is flushed)")
    parser.add_argument(
        "--database-name",
        default=BENCH_DATABASE,
        help=f"name of the PostgreSQL databases (and suffixes) of the run (default "
        f"{BENCH_DATABASE}): another name lets two runs share a server",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    # Internal: the processes this script starts.
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--receiver", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--hashes", choices=tuple(REDIS_STATES), help=argparse.SUPPRESS)
    parser.add_argument(
        "--sleep",
        type=float,
        help="our --sleep (default: none given, so the engine's own pause: on SQLite, half "
        "a batch's time)",
    )
    args = parser.parse_args(argv)
    args.parts = [part for part in args.only.split(",") if part]
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    if args.sessions < 10:
        parser.error("--sessions must be at least 10")
    return args


# -- databases ----------------------------------------------------------------------------


@dataclass
class Target:
    """One database server, on which source tables are written once and copied per run."""

    vendor: str
    workdir: str
    url: str = ""

    @property
    def label(self) -> str:
        return "SQLite" if self.vendor == "sqlite" else "PostgreSQL"

    def settings(self, name: str) -> dict[str, Any]:
        """Return the Django DATABASES entry of database *name*."""
        if self.vendor == "sqlite":
            return {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": os.path.join(self.workdir, f"{name}.sqlite3"),
                # The concurrent writer waits for the lock instead of failing.
                "OPTIONS": {"timeout": 600},
            }
        import dj_database_url

        return {**dj_database_url.parse(self.url), "NAME": name}

    def _admin(self) -> Any:
        import psycopg

        admin_url = urlunsplit(urlsplit(self.url)._replace(path="/postgres"))
        return psycopg.connect(admin_url, autocommit=True)

    def create(self, name: str) -> None:
        self.drop(name)
        if self.vendor == "postgresql":
            with self._admin() as connection:
                connection.execute(f'CREATE DATABASE "{name}"')

    def copy(self, source: str, name: str) -> None:
        self.drop(name)
        if self.vendor == "sqlite":
            copied = self.settings(name)["NAME"]
            shutil.copyfile(self.settings(source)["NAME"], copied)
            # On disk before the run: else the first commit's fsync writes the
            # whole copy, and a run's first transaction looks like a stall.
            with open(copied, "rb") as file:
                os.fsync(file.fileno())
        else:
            with self._admin() as connection:
                connection.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')

    def drop(self, name: str) -> None:
        if self.vendor == "sqlite":
            for suffix in ("", "-journal", "-wal", "-shm"):
                path = self.settings(name)["NAME"] + suffix
                if os.path.exists(path):
                    os.unlink(path)
        else:
            with self._admin() as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- worker processes -----------------------------------------------------------------------


@dataclass
class Result:
    """What a worker printed (its last stdout line, JSON) and its peak RSS in bytes."""

    data: dict[str, Any]
    peak_rss: int


def _command(role: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "tests.benchmarks.clearsessions", "--worker", role, *args]


def _environment(database: dict[str, Any] | None, **extra: str) -> dict[str, str]:
    env = {**os.environ, **extra}
    if database is not None:
        env["BENCH_DATABASE"] = json.dumps(database)
    return env


def run_worker(role: str, database: dict[str, Any] | None, *args: str, **extra: str) -> Result:
    """Run a worker to its end; return its result and the peak RSS the kernel saw."""
    process = subprocess.Popen(
        _command(role, *args),
        cwd=REPO,
        env=_environment(database, **extra),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"worker {role} failed with exit status {process.returncode}")
    last = output.strip().splitlines()[-1]
    return Result(json.loads(last), usage.ru_maxrss * 1024)


class Writer:
    """The concurrent writer process: started, then stopped with SIGTERM, then read."""

    def __init__(self, database: dict[str, Any]) -> None:
        self.process = subprocess.Popen(
            _command("writer"),
            cwd=REPO,
            env=_environment(database),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError("the concurrent writer did not start")

    def stop(self) -> dict[str, Any]:
        self.process.send_signal(signal.SIGTERM)
        output, _ = self.process.communicate(timeout=600)
        return dict(json.loads(output.strip().splitlines()[-1]))


def configure(**overrides: Any) -> None:
    """Configure Django in a worker; the database comes from BENCH_DATABASE."""
    import django
    from django.conf import settings

    options: dict[str, Any] = {
        "SECRET_KEY": "sessionkit-benchmark-not-secret",
        "USE_TZ": True,
        "TIME_ZONE": "UTC",
        "INSTALLED_APPS": [
            "django_sessionkit",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
        ],
        "DEFAULT_AUTO_FIELD": "django.db.models.BigAutoField",
        "SESSION_ENGINE": OUR_DB,
        "CACHES": {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
    }
    if "BENCH_DATABASE" in os.environ:
        options["DATABASES"] = {"default": json.loads(os.environ["BENCH_DATABASE"])}
    options.update(overrides)
    settings.configure(**options)
    django.setup()


def _insert(table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
    """Insert *rows* the fastest way the database has: COPY, else executemany."""
    from django.db import connection

    names = ", ".join(connection.ops.quote_name(column) for column in columns)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            placeholders = ", ".join(["%s"] * len(columns))
            sql = f"INSERT INTO {table} ({names}) VALUES ({placeholders})"  # noqa: S608
            cursor.executemany(sql, rows)


def _db_value(value: Any) -> Any:
    from django.db import connection

    if isinstance(value, datetime) and connection.vendor != "postgresql":
        return connection.ops.adapt_datetimefield_value(value)
    return value


def worker_populate(sessions: int) -> dict[str, Any]:
    """Create the schema and write *sessions* sessions, every other one expired."""
    from django.core.management import call_command
    from django.db import connection, transaction

    from django_sessionkit.backends.db import SessionStore
    from django_sessionkit.public_id import public_id

    call_command("migrate", verbosity=0)
    now = datetime.now(dt_timezone.utc)
    users = max(1, sessions // SESSIONS_PER_USER)
    user_rows = [
        (pk, "!", False, f"user-{pk}", "", "", "", False, True, _db_value(now))
        for pk in range(1, users + 1)
    ]
    user_columns = (
        "id", "password", "is_superuser", "username", "first_name", "last_name", "email",
        "is_staff", "is_active", "date_joined",
    )  # fmt: skip
    with transaction.atomic():
        for start in range(0, users, ROWS_PER_INSERT):
            _insert("auth_user", user_columns, user_rows[start : start + ROWS_PER_INSERT])
    del user_rows

    store = SessionStore()
    encoded: dict[int | None, str] = {}
    rng = random.Random(2024)
    columns = (
        "session_key", "session_data", "expire_date", "public_id", "user_id", "ip",
        "user_agent", "created_at", "last_activity",
    )  # fmt: skip
    rows: list[tuple[Any, ...]] = []
    started = time.perf_counter()
    for number in range(sessions):
        key = f"{rng.getrandbits(128):032x}"
        user_id = None if rng.random() < ANONYMOUS_SHARE else rng.randrange(1, users + 1)
        if user_id not in encoded:
            data: dict[str, Any] = {"cart": [1, 2, 3]}
            if user_id is not None:
                data = {
                    "_auth_user_id": str(user_id),
                    "_auth_user_backend": "django.contrib.auth.backends.ModelBackend",
                    "_auth_user_hash": f"{user_id:064x}",
                }
            encoded[user_id] = store.encode(data)
        if number % 2:
            expire_date = now - timedelta(seconds=rng.randrange(60, int(AGE.total_seconds())))
        else:
            expire_date = now + timedelta(seconds=rng.randrange(86400, int(AGE.total_seconds())))
        last_activity = expire_date - AGE
        rows.append(
            (
                key,
                encoded[user_id],
                _db_value(expire_date),
                public_id(key),
                user_id,
                f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                rng.choice(USER_AGENTS),
                _db_value(last_activity - timedelta(seconds=rng.randrange(3600))),
                _db_value(last_activity),
            )
        )
        if len(rows) == ROWS_PER_INSERT or number == sessions - 1:
            with transaction.atomic():
                _insert("sessionkit_session", columns, rows)
            rows = []
            if (number + 1) % 200_000 == 0:
                progress(f"  {number + 1:,} sessions written")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # The steady state of a live table: autovacuum has run.
            cursor.execute("VACUUM ANALYZE")
    return {"sessions": sessions, "users": users, "seconds": time.perf_counter() - started}


def _counts(now: datetime) -> dict[str, int]:
    from django_sessionkit.models import Session

    return {
        "unexpired": Session.objects.filter(expire_date__gt=now).count(),
        "expired": Session.objects.filter(expire_date__lt=now).count(),
    }


def worker_clear(
    mode: str, receiver: bool, batch_size: int, sleep: float | None, batch_time: float | None
) -> dict[str, Any]:
    """Run stock Django's or our clearsessions once, timing it and each of our batches."""
    from django.contrib.sessions.management.commands.clearsessions import (
        Command as DjangoClearSessions,
    )
    from django.core.management import call_command
    from django.db.models.signals import post_delete
    from django.utils import timezone

    from django_sessionkit.inventory.model import ModelInventory
    from django_sessionkit.models import Session

    now = timezone.now()
    before = _counts(now)
    heard = [0]
    if receiver:

        def audit(sender: Any, instance: Any, **kwargs: Any) -> None:
            heard[0] += 1

        post_delete.connect(audit, sender=Session, weak=False)

    batches: list[float] = []
    original = ModelInventory.clear_expired

    def timed(self: ModelInventory, *, batch_size: Any = 1000) -> Iterator[int]:
        inner = original(self, batch_size=batch_size)
        while True:
            started = time.perf_counter()
            try:
                deleted = next(inner)
            except StopIteration:
                return
            batches.append(time.perf_counter() - started)
            yield deleted

    ModelInventory.clear_expired = timed  # type: ignore[method-assign]
    started = time.perf_counter()
    if mode == "stock":
        call_command(DjangoClearSessions())
    else:
        options: dict[str, Any] = {} if sleep is None else {"sleep": sleep}
        if batch_time is not None:
            options["batch_time"] = batch_time
        call_command("clearsessions", batch_size=batch_size, stdout=io.StringIO(), **options)
    seconds = time.perf_counter() - started
    after = _counts(now)
    return {
        "seconds": seconds,
        # Stock Django's job is one statement (one transaction with a receiver).
        "longest_transaction": max(batches) if batches else seconds,
        "batches": len(batches),
        "median_batch": statistics.median(batches) if batches else seconds,
        # Which batches were slowest (1-based), to tell a slow start from a stall.
        "slowest_batches": sorted(range(1, len(batches) + 1), key=lambda n: -batches[n - 1])[:3],
        "before": before,
        "after": after,
        "receiver_calls": heard[0],
    }


def worker_writer() -> None:
    """Update random unexpired sessions until SIGTERM; print the waits."""
    from django.db import connection
    from django.utils import timezone

    from django_sessionkit.models import Session

    keys = list(
        Session.objects.filter(expire_date__gt=timezone.now() + timedelta(hours=1))
        .order_by()
        .values_list("pk", flat=True)[:5000]
    )
    stopping = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
    rng = random.Random(7)
    waits: list[float] = []
    table = Session._meta.db_table
    sql = f"UPDATE {table} SET last_activity = %s WHERE session_key = %s"  # noqa: S608
    with connection.cursor() as cursor:
        while not stopping:
            started = time.perf_counter()
            cursor.execute(sql, [_db_value(timezone.now()), rng.choice(keys)])
            waits.append(time.perf_counter() - started)
            if len(waits) == 1:
                print("ready", flush=True)
            time.sleep(WRITER_PAUSE)
    ordered = sorted(waits)
    print(
        json.dumps(
            {
                "updates": len(waits),
                "longest": ordered[-1],
                "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
                "median": statistics.median(ordered),
            }
        ),
        flush=True,
    )


def _write_redis_sessions(sessions: int, hashes: str) -> tuple[list[str], list[str], float]:
    """Write *sessions* sessions, every other one expired by the index.

    Return the hash names of the live and of the expired sessions, and the
    seconds the writes took.
    Sessions are written by the engine's own save script. The live ones go
    first, saved "now" with a TTL of their remaining age, as the engine saves
    them. The expired ones are saved "a day before" their expiry, so that no
    save prunes another, with a TTL Redis has not reached. With *hashes*
    ``"expired"`` their hashes are then deleted, as Redis does once a
    session's TTL (its expiry age) has passed: what ``clearsessions`` meets
    in the normal case, index entries of sessions that are gone. With
    ``"present"`` they stay: Django's clock ahead of Redis's, the worst case,
    in which pruning deletes the sessions too.
    """
    from django_sessionkit.backends import redis as engine
    from django_sessionkit.backends.redis.scripts import Save
    from django_sessionkit.public_id import public_id

    keyspace = engine.Keyspace("sessions")
    client = keyspace.client()
    client.flushdb()
    rng = random.Random(99)
    now_ms = int(time.time() * 1000)
    encoder = engine.SessionStore()
    encoded: dict[int | None, bytes] = {}
    names: tuple[list[str], list[str]] = ([], [])
    started = time.perf_counter()
    order = [*range(0, sessions, 2), *range(1, sessions, 2)]
    saves: list[Save] = []
    for written, number in enumerate(order, 1):
        key = f"{rng.getrandbits(128):032x}"
        user_id = None if rng.random() < ANONYMOUS_SHARE else rng.randrange(1, 100_000)
        if user_id not in encoded:
            data = {} if user_id is None else {"_auth_user_id": str(user_id)}
            encoded[user_id] = encoder.serialize_data(data)
        if number % 2:
            expiry = now_ms - rng.randrange(60_000, 86_400_000)
            saved, ttl = expiry - 86_400_000, 3600
        else:
            expiry = now_ms + rng.randrange(86_400_000, int(AGE.total_seconds()) * 1000)
            saved, ttl = now_ms, (expiry - now_ms) // 1000
        names[number % 2].append(keyspace.session(public_id(key)))
        saves.append(
            Save(
                pid=public_id(key),
                session_key=key,
                data=encoded[user_id],
                now=saved,
                ttl=ttl,
                expiry=expiry,
                user_id=None if user_id is None else str(user_id),
                metadata=("10.0.0.1", USER_AGENTS[number % len(USER_AGENTS)]),
            )
        )
        if len(saves) == 1000 or written == sessions:
            keyspace.create_many(saves)
            saves = []
            if written % 200_000 == 0:
                progress(f"  {written:,} Redis sessions written")
    live, expired = names
    if hashes == "expired":
        for start in range(0, len(expired), 1000):
            client.delete(*expired[start : start + 1000])
    return live, expired, time.perf_counter() - started


def _existing(client: Any, names: list[str]) -> int:
    """Return how many of the keys *names* exist."""
    found = 0
    for start in range(0, len(names), 10_000):
        found += client.exists(*names[start : start + 10_000])
    return found


def worker_redis(sessions: int, batch_size: int, hashes: str) -> dict[str, Any]:
    """Write sessions (_write_redis_sessions), sweep with iter_keys, prune with clearsessions."""
    from django.core.cache import caches
    from django.core.management import call_command

    from django_sessionkit.backends import redis as engine
    from django_sessionkit.inventory.redis import RedisInventory

    live, expired, written = _write_redis_sessions(sessions, hashes)
    client = engine.Keyspace("sessions").client()
    keys = client.dbsize()

    cache = caches["sessions"]
    started = time.perf_counter()
    swept = 0
    for _ in cache.iter_keys("*"):
        swept += 1
    sweep = time.perf_counter() - started

    stall = machine_stall()
    previous = client.config_get("slowlog-*")
    client.config_set("slowlog-log-slower-than", SLOWLOG_THRESHOLD_US)
    client.config_set("slowlog-max-len", 100_000)
    inventory = RedisInventory(OUR_REDIS, "sessions")
    entries_before = inventory.count().value
    last = client.slowlog_get(1)
    last_id = last[0]["id"] if last else -1
    client.config_resetstat()
    steal_before = cpu_steal()
    started = time.perf_counter()
    call_command("clearsessions", batch_size=batch_size, stdout=io.StringIO())
    prune = time.perf_counter() - started
    steal_after = cpu_steal()
    scripts = client.info("commandstats").get("cmdstat_evalsha", {})
    slow = [entry for entry in client.slowlog_get(100_000) if entry["id"] > last_id]
    for name, value in previous.items():
        client.config_set(name, value)
    entries_after = inventory.count().value
    remaining = client.dbsize()
    live_left = _existing(client, live)
    expired_left = _existing(client, expired)
    # In the background: freeing a million hashes outlasts a socket timeout.
    client.flushdb(asynchronous=True)
    return {
        "written_seconds": written,
        "keys": keys,
        "swept_keys": swept,
        "sweep": sweep,
        "prune": prune,
        "entries_before": entries_before,
        "entries_after": entries_after,
        "remaining_keys": remaining,
        "live_sessions": len(live),
        "live_sessions_left": live_left,
        "expired_sessions_left": expired_left,
        "slowest_command": max((entry["duration"] for entry in slow), default=0) / 1e6,
        "slowest_name": _command_name(max(slow, key=lambda entry: entry["duration"]))
        if slow
        else "",
        "slow_commands": len(slow),
        "over_target_by_command": dict(
            Counter(
                _command_name(entry) for entry in slow if entry["duration"] / 1e6 > SLOWLOG_TARGET
            )
        ),
        "machine_stall": stall,
        "script_calls": scripts.get("calls", 0),
        "script_mean": scripts.get("usec_per_call", 0.0) / 1e6,
        "steal": None
        if steal_before is None or steal_after is None
        else (steal_after[0] - steal_before[0]) / max(1, steal_after[1] - steal_before[1]),
        "redis_version": client.info("server")["redis_version"],
    }


def _command_name(entry: dict[str, Any]) -> str:
    """Name a SLOWLOG entry's command; our scripts by their names (EVALSHA PRUNE)."""
    from django_sessionkit.backends import redis as engine

    command = entry["command"]
    if isinstance(command, bytes):
        command = command.decode(errors="replace")
    words = str(command).split(" ", 2)
    keyspace = engine.Keyspace("sessions")
    scripts = {script.sha: name.upper() for name, script in keyspace.scripts.items()}
    if words[0].upper() == "EVALSHA" and len(words) > 1 and words[1] in scripts:
        return f"EVALSHA {scripts[words[1]]}"
    return words[0]


def machine_stall(seconds: float = STALL_PROBE_SECONDS) -> float:
    """Return the longest gap a busy loop saw in *seconds*: the machine's own stalls.

    As ``redis-cli --intrinsic-latency`` measures them: on a virtual machine
    whose host takes the CPU away now and then, a command Redis runs in
    microseconds can last that long in SLOWLOG.
    """
    clock = time.perf_counter
    end = clock() + seconds
    last = clock()
    longest = 0.0
    while last < end:
        now = clock()
        longest = max(longest, now - last)
        last = now
    return longest


def cpu_steal() -> tuple[int, int] | None:
    """Return the CPU time stolen by the host and the CPU time in all (jiffies), if known."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    values = [int(value) for value in fields[1:]]
    return (values[7] if len(values) > 7 else 0), sum(values)


def worker_main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING)
    role = args.worker
    if role == "redis":
        redis_url = os.environ["BENCH_REDIS_URL"]
        configure(
            CACHES={
                "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
                "sessions": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": redis_url},
            },
            SESSION_CACHE_ALIAS="sessions",
            SESSION_ENGINE=OUR_REDIS,
        )
        result = worker_redis(args.sessions, args.batch_size, args.hashes)
    else:
        configure()
        if role == "populate":
            result = worker_populate(args.sessions)
        elif role == "clear":
            result = worker_clear(
                args.mode, args.receiver, args.batch_size, args.sleep, args.batch_time
            )
        elif role == "writer":
            worker_writer()
            return
        else:
            raise SystemExit(f"unknown worker {role}")
    print(json.dumps(result), flush=True)


# -- the run ---------------------------------------------------------------------------------


def verdict(value: float, target: float) -> bool:
    return value <= target


def batching(args: argparse.Namespace, sleep: float | None = None) -> list[str]:
    """Return the batch options of our command, as a worker's arguments.

    *sleep*, when given, stands for the ``--sleep`` the benchmark was given.
    """
    options = ["--batch-size", str(args.batch_size)]
    if args.batch_time is not None:
        options += ["--batch-time", str(args.batch_time)]
    if sleep is None:
        sleep = args.sleep
    if sleep is not None:
        options += ["--sleep", str(sleep)]
    return options


def sizing(args: argparse.Namespace) -> str:
    """Say how our batches were sized."""
    from django_sessionkit.cleanup import BATCH_SECONDS

    seconds = BATCH_SECONDS if args.batch_time is None else args.batch_time
    sized = f"sized to about {ms(seconds)} each" if seconds else "none sized to a time"
    pauses = "the engine's own pauses" if args.sleep is None else f"--sleep {args.sleep}"
    return f"{sized}, {pauses}"


def clear_run(
    target: Target, source: str, mode: str, batching: list[str], *, receiver: bool = False
) -> Result:
    name = f"{BENCH_DATABASE}_run"
    target.copy(source, name)
    try:
        args = ["--mode", mode, *batching]
        if receiver:
            args.append("--receiver")
        return run_worker("clear", target.settings(name), *args)
    finally:
        target.drop(name)


def writer_run(target: Target, source: str, mode: str, batching: list[str]) -> dict[str, Any]:
    name = f"{BENCH_DATABASE}_run"
    target.copy(source, name)
    try:
        database = target.settings(name)
        writer = Writer(database)
        try:
            result = run_worker("clear", database, "--mode", mode, *batching)
        finally:
            waits = writer.stop()
        return {**waits, "seconds": result.data["seconds"]}
    finally:
        target.drop(name)


def removed_unexpired(result: Result) -> int:
    return int(result.data["before"]["unexpired"] - result.data["after"]["unexpired"])


def measure_database(target: Target, args: argparse.Namespace) -> list[Report]:
    sessions, batch_size = args.sessions, args.batch_size
    ours_batching = batching(args)
    source = BENCH_DATABASE
    reports = []
    progress(f"{target.label}: writing {sessions:,} sessions (half expired)")
    target.create(source)
    populated = run_worker("populate", target.settings(source), "--sessions", str(sessions))
    progress(f"{target.label}: written in {duration(populated.data['seconds'])}")

    if "clear" in args.parts:
        report = Report(f"{target.label}: {sessions:,} sessions, {sessions // 2:,} expired")
        progress(f"{target.label}: stock clearsessions")
        stock = clear_run(target, source, "stock", ours_batching)
        progress(f"{target.label}: our clearsessions")
        ours = clear_run(target, source, "ours", ours_batching)
        half = f"{source}_half"
        progress(f"{target.label}: {sessions // 2:,} sessions, for our RSS at N/2")
        target.create(half)
        run_worker("populate", target.settings(half), "--sessions", str(sessions // 2))
        ours_half = clear_run(target, half, "ours", ours_batching)
        target.drop(half)
        ratio = ours.data["seconds"] / stock.data["seconds"]
        report.add(
            "total time",
            duration(ours.data["seconds"]),
            duration(stock.data["seconds"]),
            f"{ratio:.2f}x",
            f"<= {TIME_TARGET}x",
            verdict(ratio, TIME_TARGET),
        )
        longest = ours.data["longest_transaction"]
        report.add(
            "longest DELETE transaction",
            ms(longest),
            ms(stock.data["longest_transaction"]),
            "",
            f"<= {ms(TRANSACTION_TARGET)}",
            verdict(longest, TRANSACTION_TARGET),
        )
        report.add(
            "peak RSS",
            mib(ours.peak_rss),
            mib(stock.peak_rss),
            f"+{mib(ours.peak_rss - stock.peak_rss)}",
            f"<= stock + {mib(RSS_MARGIN)}",
            verdict(ours.peak_rss, stock.peak_rss + RSS_MARGIN),
        )
        report.add(
            f"peak RSS at N/2 = {sessions // 2:,}",
            mib(ours_half.peak_rss),
            "",
            f"N/2 -> N: +{mib(ours.peak_rss - ours_half.peak_rss)}",
            f"flat (<= +{mib(RSS_GROWTH)})",
            verdict(ours.peak_rss, ours_half.peak_rss + RSS_GROWTH),
        )
        for label, result in (("sessionkit", ours), ("stock Django", stock)):
            removed = removed_unexpired(result)
            report.add(
                f"unexpired removed ({label})",
                str(removed),
                "",
                "",
                "0",
                removed == 0,
            )
        report.note(
            f"ours: {ours.data['batches']} batches of at most {batch_size:,}, "
            f"{sizing(args)} (median {ms(ours.data['median_batch'])}; slowest: "
            f"{', '.join(f'#{n}' for n in ours.data['slowest_batches'])}); "
            f"expired left: ours {ours.data['after']['expired']}, "
            f"stock {stock.data['after']['expired']}"
        )
        reports.append(report)

    if "receiver" in args.parts:
        report = Report(f"{target.label}: with a post_delete receiver connected")
        progress(f"{target.label}: stock clearsessions with a post_delete receiver")
        stock = clear_run(target, source, "stock", ours_batching, receiver=True)
        progress(f"{target.label}: our clearsessions with a post_delete receiver")
        ours = clear_run(target, source, "ours", ours_batching, receiver=True)
        ratio = ours.data["seconds"] / stock.data["seconds"]
        report.add(
            "total time",
            duration(ours.data["seconds"]),
            duration(stock.data["seconds"]),
            f"{ratio:.2f}x",
            f"<= {RECEIVER_TIME_TARGET}x",
            verdict(ratio, RECEIVER_TIME_TARGET),
        )
        report.add(
            "peak RSS",
            mib(ours.peak_rss),
            mib(stock.peak_rss),
            "",
            f"<= {mib(RECEIVER_RSS_TARGET)}",
            verdict(ours.peak_rss, RECEIVER_RSS_TARGET),
        )
        report.add(
            "longest DELETE transaction",
            ms(ours.data["longest_transaction"]),
            ms(stock.data["longest_transaction"]),
        )
        report.add(
            "receiver calls",
            str(ours.data["receiver_calls"]),
            str(stock.data["receiver_calls"]),
        )
        report.add("unexpired removed", str(removed_unexpired(ours)), str(removed_unexpired(stock)))
        report.note("sessionkit deletes with raw DELETEs: delete receivers are not called")
        reports.append(report)

    if "writer" in args.parts:
        report = Report(f"{target.label}: a concurrent writer updating active sessions")
        progress(f"{target.label}: stock clearsessions with a concurrent writer")
        stock_waits = writer_run(target, source, "stock", ours_batching)
        progress(f"{target.label}: our clearsessions with a concurrent writer")
        our_waits = writer_run(target, source, "ours", ours_batching)
        progress(f"{target.label}: our clearsessions --sleep {PAUSE} with a concurrent writer")
        paused = writer_run(target, source, "ours", batching(args, sleep=PAUSE))
        for label, waits in (("", our_waits), (f" (ours with --sleep {PAUSE})", paused)):
            report.add(
                f"writer's longest wait{label}",
                ms(waits["longest"]),
                ms(stock_waits["longest"]),
                "",
                f"<= {ms(WRITER_TARGET)}",
                verdict(waits["longest"], WRITER_TARGET),
            )
            report.add(f"writer's p99 wait{label}", ms(waits["p99"]), ms(stock_waits["p99"]))
            report.add(
                f"clearsessions time{label}",
                duration(waits["seconds"]),
                duration(stock_waits["seconds"]),
            )
        report.note(
            f"writer's updates: ours {our_waits['updates']}, ours with --sleep "
            f"{paused['updates']}, stock {stock_waits['updates']}"
        )
        reports.append(report)

    target.drop(source)
    return reports


#: The two states of the expired sessions' hashes the Redis part prunes, and
#: how its reports name them (see _write_redis_sessions()).
REDIS_STATES = {
    "expired": "hashes already expired by Redis (the normal case)",
    "present": "hashes still present (Redis's TTL not reached: the worst case)",
}


def measure_redis(args: argparse.Namespace) -> list[Report]:
    server = None
    url = args.redis_url
    if url is None:
        from tests.redis_server import private_server

        server = private_server()
        server.start()
        url = server.url
    results = {}
    try:
        for hashes in REDIS_STATES:
            progress(f"Redis: writing {args.sessions:,} sessions, half expired, {hashes} hashes")
            results[hashes] = run_worker(
                "redis",
                None,
                "--sessions",
                str(args.sessions),
                "--batch-size",
                str(args.batch_size),
                "--hashes",
                hashes,
                BENCH_REDIS_URL=url,
            ).data
    finally:
        if server is not None:
            server.stop()
    return [redis_report(hashes, result) for hashes, result in results.items()]


def redis_report(hashes: str, result: dict[str, Any]) -> Report:
    stale = result["entries_before"] - result["live_sessions"]
    report = Report(
        f"Redis {result['redis_version']}: pruning {stale:,} index entries of expired "
        f"sessions among {result['entries_before']:,}, {REDIS_STATES[hashes]}"
    )
    ratio = result["prune"] / result["sweep"]
    report.add(
        "time (ours: clearsessions; stock: iter_keys sweep)",
        duration(result["prune"]),
        duration(result["sweep"]),
        f"{ratio:.2f}x",
        f"<= {SWEEP_TARGET}x",
        verdict(ratio, SWEEP_TARGET),
    )
    report.add(
        "slowest single command (SLOWLOG)",
        ms(result["slowest_command"]),
        "",
        "",
        f"<= {ms(SLOWLOG_TARGET)}",
        verdict(result["slowest_command"], SLOWLOG_TARGET),
    )
    over = result["over_target_by_command"]
    report.add("commands over 10 ms", str(sum(over.values())), "", "", "0")
    if result["slowest_name"]:
        report.note(
            f"slowest command: {result['slowest_name']}; over 10 ms: "
            + (", ".join(f"{name} {count}" for name, count in sorted(over.items())) or "none")
        )
    steal = result["steal"]
    report.note(
        f"{result['script_calls']:,} script calls (EVALSHA), {ms(result['script_mean'])} "
        f"each on average (INFO commandstats)"
    )
    report.note(
        f"the machine's own longest stall (a {STALL_PROBE_SECONDS:g} s busy loop just before "
        f"pruning, as redis-cli --intrinsic-latency): {ms(result['machine_stall'])}"
        + ("" if steal is None else f"; CPU time taken by the host while pruning: {steal:.1%}")
    )
    report.add(
        "expired index entries left",
        str(result["entries_after"] - result["live_sessions"]),
        "",
        "",
        "0",
    )
    report.add("expired sessions left", str(result["expired_sessions_left"]), "", "", "0")
    report.add(
        "live sessions lost",
        str(result["live_sessions"] - result["live_sessions_left"]),
        "",
        "",
        "0",
    )
    report.note(
        f"keyspace: {result['keys']:,} keys (sessions and index chunks), "
        f"{result['swept_keys']:,} swept; {result['remaining_keys']:,} keys left after "
        f"pruning; SLOWLOG threshold {SLOWLOG_THRESHOLD_US} us, "
        f"{result['slow_commands']} commands logged"
    )
    return report


def describe(args: argparse.Namespace, targets: list[Target]) -> list[str]:
    import platform
    import sqlite3

    import django

    from tests.benchmarks._common import command_line

    lines = [
        "Command: " + command_line(),
        f"Python {platform.python_version()}, Django {django.get_version()}, "
        f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs",
    ]
    for target in targets:
        if target.vendor == "sqlite":
            lines.append(f"SQLite {sqlite3.sqlite_version} (files in {target.workdir})")
        else:
            with target._admin() as connection:
                version = connection.execute("SHOW server_version").fetchone()[0]
            lines.append(f"PostgreSQL {version} (databases {BENCH_DATABASE}*)")
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    global BENCH_DATABASE
    args = parse_args(argv)
    if args.worker:
        worker_main(args)
        return
    BENCH_DATABASE = args.database_name
    workdir = tempfile.mkdtemp(prefix="sessionkit-bench-clear-")
    targets = []
    if args.db in ("sqlite", "both"):
        targets.append(Target("sqlite", workdir))
    if args.db in ("postgres", "both"):
        url = os.environ.get("DATABASE_URL") or DEFAULT_POSTGRES_URL
        targets.append(Target("postgresql", workdir, url))
    db_parts = {"clear", "receiver", "writer"} & set(args.parts)
    print("\n".join(describe(args, targets if db_parts else [])), flush=True)
    try:
        for target in targets if db_parts else []:
            for report in measure_database(target, args):
                print("\n" + report.render(), flush=True)
        if "redis" in args.parts:
            for report in measure_redis(args):
                print("\n" + report.render(), flush=True)
    finally:
        if not args.keep:
            for target in targets:
                if target.vendor == "postgresql":
                    for name in (BENCH_DATABASE, f"{BENCH_DATABASE}_half", f"{BENCH_DATABASE}_run"):
                        target.drop(name)
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
