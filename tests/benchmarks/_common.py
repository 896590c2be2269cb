"""Shared set-up of the benchmarks: settings, databases, Redis, bulk population, reporting.

A benchmark process calls :func:`setup` once. It configures Django in-process
with a SQLite file in a temporary directory (alias ``default``) and, when
asked, a dedicated PostgreSQL database (alias ``postgres``, created from
``DATABASE_URL`` and dropped at the end); each has a twin (``<alias>_small``)
for a second population. A router sends every query to the alias chosen with
:func:`use_database`, so one process measures them all. Redis is
``REDIS_URL`` (or 127.0.0.1:6379) with the database number forced to a
dedicated one, flushed at the start and at the end.

Population writes rows and keys in bulk (``executemany`` / ``COPY`` in chunks,
Redis pipelines through the redis engine's own save script); the data is
generated deterministically, so stock and sessionkit storage hold the very
same sessions.
"""

from __future__ import annotations

import logging
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
from django.http import HttpRequest, HttpResponse
from django.urls import path

logger = logging.getLogger(__name__)

SQLITE = "default"
POSTGRES = "postgres"
BENCH_DATABASE = "sessionkit_bench"
#: Suffix of the twin of each database (and cache) that holds the small population.
SMALL = "_small"
DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"
REDIS_DB = 14
SESSION_CACHE = "sessions"
SESSION_CACHE_SMALL = SESSION_CACHE + SMALL
#: The cache on a private Redis server, for memory figures no other client disturbs.
MEMORY_CACHE = "sessions_memory"
#: Rows per INSERT/COPY batch and sessions per Redis pipeline.
CHUNK = 10_000
PIPELINE = 1_000

STOCK_DB = "django.contrib.sessions.backends.db"
STOCK_CACHED_DB = "django.contrib.sessions.backends.cached_db"
STOCK_CACHE = "django.contrib.sessions.backends.cache"
OUR_DB = "django_sessionkit.backends.db"
OUR_CACHED_DB = "django_sessionkit.backends.cached_db"
OUR_REDIS = "django_sessionkit.backends.redis"

STOCK_MIDDLEWARE = "django.contrib.sessions.middleware.SessionMiddleware"
OUR_MIDDLEWARE = "django_sessionkit.middleware.SessionKitMiddleware"

USER_AGENTS = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
)


# -- routing every query to the database under test ----------------------------


class BenchRouter:
    """Send every read, write and migration to the alias chosen by :func:`use_database`."""

    alias = SQLITE

    def db_for_read(self, model: Any, **hints: Any) -> str:
        return BenchRouter.alias

    def db_for_write(self, model: Any, **hints: Any) -> str:
        return BenchRouter.alias

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        return True

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return True


@contextmanager
def use_database(alias: str) -> Iterator[str]:
    """Route every query to *alias* inside the block."""
    previous, BenchRouter.alias = BenchRouter.alias, alias
    try:
        yield alias
    finally:
        BenchRouter.alias = previous


# -- counting Redis commands without MONITOR ------------------------------------


@dataclass
class CommandLog:
    """Redis commands sent by this process while :attr:`active`.

    The server's own statistics (INFO commandstats) count every client of a
    shared server; counting on our side sees only the commands of this run.
    """

    active: bool = False
    round_trips: int = 0
    write_round_trips: int = 0
    commands: Counter[str] = field(default_factory=Counter)

    READ_ONLY = frozenset(
        {
            "GET", "MGET", "EXISTS", "TTL", "PTTL", "TYPE", "STRLEN", "SCAN", "ZSCAN",
            "HSCAN", "SSCAN", "ZRANGE", "ZRANGEBYSCORE", "ZREVRANGE", "ZREVRANGEBYSCORE",
            "ZSCORE", "ZMSCORE", "ZCARD", "ZCOUNT", "HGET", "HMGET", "HGETALL", "HEXISTS",
            "HLEN", "SMEMBERS", "SISMEMBER", "SCARD", "PING", "INFO", "SELECT", "CLIENT",
            "HELLO", "AUTH", "MULTI", "EXEC", "WATCH", "UNWATCH", "MEMORY", "DBSIZE",
        }
    )  # fmt: skip

    def record(self, commands: Sequence[Sequence[Any]]) -> None:
        names = [_command_name(args) for args in commands]
        self.round_trips += 1
        self.commands.update(names)
        if any(name not in self.READ_ONLY for name in names):
            self.write_round_trips += 1

    def reset(self) -> None:
        self.round_trips = self.write_round_trips = 0
        self.commands.clear()

    @contextmanager
    def counting(self) -> Iterator[CommandLog]:
        self.reset()
        self.active = True
        try:
            yield self
        finally:
            self.active = False


def _command_name(args: Sequence[Any]) -> str:
    name = args[0] if args else b"?"
    if isinstance(name, bytes):
        name = name.decode()
    return str(name).split(" ", 1)[0].upper()


REDIS_COMMANDS = CommandLog()


class CountingConnection(redis.connection.Connection):
    """A redis-py connection that reports what it sends to :data:`REDIS_COMMANDS`."""

    def send_command(self, *args: Any, **kwargs: Any) -> None:
        if REDIS_COMMANDS.active:
            REDIS_COMMANDS.record([args])
        super().send_command(*args, **kwargs)

    def pack_commands(self, commands: Iterable[Sequence[Any]]) -> Any:
        commands = list(commands)
        if REDIS_COMMANDS.active:
            REDIS_COMMANDS.record(commands)
        return super().pack_commands(commands)


# -- the run's environment ---------------------------------------------------------


@dataclass
class BenchEnv:
    """What :func:`setup` configured for this run."""

    databases: list[str]
    workdir: str
    redis_url: str | None
    postgres_admin_url: str | None = None
    private_redis: Any = None
    #: A private redis-server started for the memory figures, if one could be.
    memory_redis: Any = None

    @property
    def has_redis(self) -> bool:
        return self.redis_url is not None

    @property
    def memory_cache(self) -> str:
        """The cache alias to measure memory on: the private server's, else the shared one."""
        return MEMORY_CACHE if self.memory_redis is not None else SESSION_CACHE


def _with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


def _redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


def _locate_redis(redis_db: int) -> tuple[str | None, Any]:
    """Return the Redis URL to use and the private server started for it, if any."""
    url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    if _redis_answers(url):
        return _with_db(url, redis_db), None
    if os.environ.get("REDIS_URL"):
        print(f"REDIS_URL={url} does not answer; the Redis benchmarks are skipped.")
        return None, None
    from tests.redis_server import private_server

    try:
        server = private_server()
        server.start()
    except RuntimeError as error:
        print(f"No Redis server ({error}); the Redis benchmarks are skipped.")
        return None, None
    return _with_db(server.url, redis_db), server


def small(alias: str) -> str:
    """Return the twin of database or cache *alias* that holds the small population."""
    return alias + SMALL


def _postgres_settings(url: str) -> tuple[dict[str, Any], str]:
    """Return the Django settings of the benchmark database and the admin connection URL."""
    import dj_database_url

    parsed = dj_database_url.parse(url)
    bench = {**parsed, "NAME": BENCH_DATABASE, "CONN_MAX_AGE": None}
    admin_url = urlunsplit(urlsplit(url)._replace(path="/postgres"))
    return bench, admin_url


def _recreate_postgres_databases(admin_url: str, drop_only: bool = False) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as connection:
        for name in (BENCH_DATABASE, small(BENCH_DATABASE)):
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if not drop_only:
                connection.execute(f'CREATE DATABASE "{name}"')


def bench_view(request: HttpRequest) -> HttpResponse:
    """An authenticated, read-only page: it reads the session and the user, writes nothing."""
    if not request.user.is_authenticated:
        return HttpResponse("login required", status=403)
    return HttpResponse(f"Hello {request.user.get_username()}", content_type="text/plain")


#: ROOT_URLCONF of the benchmark settings is this module.
urlpatterns = [path("whoami/", bench_view)]


def _start_memory_server() -> Any:
    """Start a private redis-server for memory figures; None when there is no binary."""
    from tests.redis_server import private_server

    try:
        server = private_server()
        server.start()
    except RuntimeError as error:
        print(f"No private redis-server ({error}); memory is measured on the shared one.")
        return None
    return server


def setup(
    databases: Sequence[str], *, redis_db: int = REDIS_DB, memory_server: bool = False
) -> BenchEnv:
    """Configure Django for a benchmark run and create every table.

    *databases* holds ``"sqlite"`` and/or ``"postgres"``. SQLite always backs
    the ``default`` alias (a file in a temporary directory) so that Django has
    a default database even when only PostgreSQL is measured. With
    *memory_server*, a private redis-server is started too (cache alias
    ``MEMORY_CACHE``): INFO memory of a shared server moves with every client.
    """
    import django
    from django.conf import settings

    workdir = tempfile.mkdtemp(prefix="sessionkit-bench-")
    sqlite = {"ENGINE": "django.db.backends.sqlite3", "CONN_MAX_AGE": None}
    database_settings: dict[str, Any] = {
        SQLITE: {**sqlite, "NAME": os.path.join(workdir, "bench.sqlite3")},
        small(SQLITE): {**sqlite, "NAME": os.path.join(workdir, "bench-small.sqlite3")},
    }
    aliases = [SQLITE] if "sqlite" in databases else []
    admin_url = None
    if "postgres" in databases:
        bench, admin_url = _postgres_settings(
            os.environ.get("DATABASE_URL") or DEFAULT_POSTGRES_URL
        )
        _recreate_postgres_databases(admin_url)
        database_settings[POSTGRES] = bench
        database_settings[small(POSTGRES)] = {**bench, "NAME": small(BENCH_DATABASE)}
        aliases.append(POSTGRES)

    redis_url, private = _locate_redis(redis_db)
    caches: dict[str, Any] = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    }
    memory_redis = _start_memory_server() if redis_url and memory_server else None
    locations = [
        (SESSION_CACHE, redis_url, "bench"),
        (SESSION_CACHE_SMALL, redis_url, "bench-small"),
    ]
    if memory_redis is not None:
        locations.append((MEMORY_CACHE, memory_redis.url, "bench"))
    if redis_url is not None:
        for alias, location, prefix in locations:
            caches[alias] = {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": location,
                "KEY_PREFIX": prefix,
                "OPTIONS": {
                    "CONNECTION_POOL_KWARGS": {"connection_class": CountingConnection},
                },
            }

    settings.configure(
        SECRET_KEY="sessionkit-benchmarks-not-secret",
        DEBUG=False,
        ALLOWED_HOSTS=["testserver"],
        USE_TZ=True,
        TIME_ZONE="UTC",
        DATABASES=database_settings,
        DATABASE_ROUTERS=[f"{__name__}.BenchRouter"],
        CACHES=caches,
        SESSION_CACHE_ALIAS=SESSION_CACHE if redis_url else "default",
        INSTALLED_APPS=[
            "django_sessionkit",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
        ],
        MIDDLEWARE=middleware(STOCK_MIDDLEWARE),
        ROOT_URLCONF=__name__,
        TEMPLATES=[
            {"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}
        ],
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        SESSIONKIT_ACTIVITY_INTERVAL=60,
        LOGGING_CONFIG=None,
    )
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    django.setup()

    from django.core.management import call_command

    for alias in database_settings:
        with use_database(alias):
            # run_syncdb: also create tables of apps that have no migrations yet.
            call_command("migrate", database=alias, run_syncdb=True, verbosity=0)
    env = BenchEnv(
        databases=aliases,
        workdir=workdir,
        redis_url=redis_url,
        postgres_admin_url=admin_url,
        private_redis=private,
        memory_redis=memory_redis,
    )
    if env.has_redis:
        flush_redis()
    return env


#: Set when the run is asked to stop; loading threads check it between batches.
STOPPING = threading.Event()


def stop_cleanly() -> None:
    """Make SIGTERM and SIGINT unwind the run, so that :func:`teardown` still runs.

    Python dies on SIGTERM without running ``finally`` blocks, and a shell
    starts background jobs with SIGINT ignored: either way the benchmark
    databases and Redis data would be left behind.
    """
    import signal

    def unwind(signum: int, frame: Any) -> None:
        STOPPING.set()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, unwind)
    signal.signal(signal.SIGINT, unwind)


def teardown(env: BenchEnv, *, keep: bool = False) -> None:
    """Drop what :func:`setup` created: the PostgreSQL database, the Redis db, the files."""
    from django.db import connections

    connections.close_all()
    if keep:
        print(f"Kept: {env.workdir}, databases {BENCH_DATABASE}*, Redis {env.redis_url}")
        return
    if env.has_redis:
        flush_redis()
    for server in (env.private_redis, env.memory_redis):
        if server is not None:
            server.stop()
    if env.postgres_admin_url:
        _recreate_postgres_databases(env.postgres_admin_url, drop_only=True)
    shutil.rmtree(env.workdir, ignore_errors=True)


def middleware(session_middleware: str) -> list[str]:
    """Return a typical MIDDLEWARE list with *session_middleware* in its place."""
    return [
        "django.middleware.security.SecurityMiddleware",
        session_middleware,
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
    ]


def raw_redis(cache_alias: str = SESSION_CACHE) -> Any:
    """Return the redis-py client behind the cache *cache_alias*."""
    from django.core.cache import caches

    return caches[cache_alias].client.get_client(write=True)


def flush_redis(timeout: float = 300.0, cache_alias: str = SESSION_CACHE) -> None:
    """Empty the benchmark's Redis database without blocking the server.

    A synchronous FLUSHDB of a million hashes blocks Redis (and everyone else
    on a shared server) for seconds and outlasts the client's socket timeout;
    FLUSHDB ASYNC frees the memory in the background. Wait until it is done,
    so that memory figures taken afterwards are not inflated.
    """
    client = raw_redis(cache_alias)
    client.flushdb(asynchronous=True)
    deadline = time.monotonic() + timeout
    while int(client.info("memory").get("lazyfree_pending_objects", 0)) > 0:
        if time.monotonic() > deadline:
            raise RuntimeError("Redis is still freeing the flushed database")
        time.sleep(0.1)


def describe_environment(env: BenchEnv) -> list[str]:
    """Return the lines that say what this run measured on."""
    import django
    from django.db import connections

    lines = [
        "Command: " + command_line(),
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"Django {django.get_version()}, {platform.machine()} {platform.system()}, "
        f"{os.cpu_count()} CPUs",
    ]
    for alias in env.databases:
        connection = connections[alias]
        with use_database(alias):
            connection.ensure_connection()
            if connection.vendor == "sqlite":
                import sqlite3

                lines.append(f"SQLite {sqlite3.sqlite_version} (file in {env.workdir})")
            else:
                with connection.cursor() as cursor:
                    cursor.execute("SHOW server_version")
                    version = cursor.fetchone()[0]
                names = f"{BENCH_DATABASE}, {small(BENCH_DATABASE)}"
                lines.append(f"PostgreSQL {version} (databases {names})")
    if env.has_redis:
        info = raw_redis().info("server")
        lines.append(
            f"Redis {info['redis_version']} ({env.redis_url}), redis-py {redis.__version__}"
        )
        if env.memory_redis is not None:
            info = raw_redis(MEMORY_CACHE).info("server")
            lines.append(
                f"Redis {info['redis_version']} (private, {env.memory_redis.url}) "
                "for the memory figures"
            )
    else:
        lines.append("Redis: none")
    return lines


def command_line() -> str:
    """Return the command that started this run, with the environment it read."""
    variables = [
        f"{name}={os.environ[name]}"
        for name in ("DATABASE_URL", "REDIS_URL")
        if os.environ.get(name)
    ]
    module = sys.modules["__main__"].__spec__
    name = module.name if module is not None else sys.argv[0]
    return " ".join([*variables, "python", "-m", name, *sys.argv[1:]])


# -- deterministic session data ----------------------------------------------------


@dataclass(frozen=True)
class SessionRow:
    """One generated session, as every engine will store it."""

    session_key: str
    user_id: int | None
    data: dict[str, Any]
    expire_date: datetime
    created_at: datetime
    last_activity: datetime
    ip: str
    user_agent: str


def generate_sessions(
    start: int,
    stop: int,
    *,
    user_ids: Sequence[int],
    now: datetime,
    expired_share: float = 0.1,
    anonymous_share: float = 0.1,
    seed: int = 1,
) -> Iterator[SessionRow]:
    """Yield sessions number *start* to *stop* - 1 spread at random over *user_ids*.

    The same arguments always yield the same sessions. Some sessions are
    anonymous and some expired, as in a live table; all last a fortnight.
    """
    rng = random.Random(f"{seed}:{start}:{stop}")
    age = timedelta(days=14)
    for _ in range(start, stop):
        key = f"{rng.getrandbits(160):040x}"[:32]
        user_id = None if rng.random() < anonymous_share else rng.choice(user_ids)
        expired = rng.random() < expired_share
        last_activity = now - timedelta(seconds=rng.randrange(14 * 24 * 3600))
        if expired:
            last_activity -= age
        yield SessionRow(
            session_key=key,
            user_id=user_id,
            data=session_data(user_id),
            expire_date=last_activity + age,
            created_at=last_activity - timedelta(seconds=rng.randrange(3600)),
            last_activity=last_activity,
            ip=f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            user_agent=rng.choice(USER_AGENTS),
        )


def user_sessions(user_id: int, count: int, *, now: datetime) -> list[SessionRow]:
    """Return *count* unexpired sessions of *user_id*, one an hour back from *now*."""
    rows = []
    for number in range(count):
        last_activity = now - timedelta(hours=number + 1)
        rows.append(
            SessionRow(
                session_key=f"{user_id:08x}{b'target'.hex()}{number:012x}"[:32],
                user_id=user_id,
                data=session_data(user_id),
                expire_date=last_activity + timedelta(days=14),
                created_at=last_activity - timedelta(minutes=5),
                last_activity=last_activity,
                ip="192.0.2.10",
                user_agent=USER_AGENTS[number % len(USER_AGENTS)],
            )
        )
    return rows


def session_data(user_id: int | None) -> dict[str, Any]:
    """Return what a session of *user_id* holds after ``login()`` (or a visitor's)."""
    if user_id is None:
        return {"django_language": "en", "cart": [1, 2, 3]}
    return {
        "_auth_user_id": str(user_id),
        "_auth_user_backend": "django.contrib.auth.backends.ModelBackend",
        "_auth_user_hash": f"{user_id:064x}",
        "django_language": "en",
    }


class Encoder:
    """Encode session data as an engine stores it, once per distinct dict.

    Every generated session of a user holds the same data, so the encoding
    (signed and compressed by ``SessionBase.encode()``; our redis engine's
    ``serialize_data()``, unsigned) is computed once per user instead of once
    per row.
    """

    def __init__(self, store_class: Any = None) -> None:
        if store_class is None:
            from django.contrib.sessions.backends.db import SessionStore as store_class
        store = store_class()
        self._encode = getattr(store, "serialize_data", store.encode)
        self._cache: dict[int | None, Any] = {}

    def __call__(self, row: SessionRow) -> Any:
        encoded = self._cache.get(row.user_id)
        if encoded is None:
            encoded = self._cache[row.user_id] = self._encode(row.data)
        return encoded


def chunked(rows: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# -- bulk population ----------------------------------------------------------------


def create_users(count: int, *, prefix: str = "user") -> list[int]:
    """Bulk-create *count* users in the routed database; return their primary keys."""
    from django.contrib.auth.models import User

    existing = User.objects.filter(username__startswith=f"{prefix}-").count()
    new = [
        User(username=f"{prefix}-{number}", password="!", is_active=True)
        for number in range(existing, count)
    ]
    for chunk in chunked(new, CHUNK):
        User.objects.bulk_create(chunk)
    return list(
        User.objects.filter(username__startswith=f"{prefix}-")
        .order_by("pk")
        .values_list("pk", flat=True)[:count]
    )


STOCK_FIELDS = ("session_key", "session_data", "expire_date")
OUR_FIELDS = (
    *STOCK_FIELDS,
    "public_id",
    "user",
    "ip",
    "user_agent",
    "created_at",
    "last_activity",
)


def populate_models(rows: Iterable[SessionRow], *, stock: bool, ours: bool) -> int:
    """Insert *rows* into Django's ``django_session`` and/or sessionkit's table.

    In chunks of ``CHUNK`` rows, with the values Django would write but
    without the ORM: ``bulk_create`` spends about 150 µs of Python per row
    (a million rows would take minutes), so SQLite gets ``executemany`` and
    PostgreSQL ``COPY``. As ``pg_restore`` does, secondary indexes are
    dropped for the load and built again from their own definitions after it.
    """
    from django.contrib.sessions.models import Session as StockSession
    from django.db import connections

    from django_sessionkit.models import Session

    encode = Encoder()
    connection = connections[BenchRouter.alias]
    tables = [
        model._meta.db_table for model, wanted in ((StockSession, stock), (Session, ours)) if wanted
    ]
    if connection.vendor == "postgresql":
        insert = _copy
        page_cache: Any = nullcontext()
    else:
        insert = _executemany
        page_cache = _sqlite_page_cache(connection)
    with page_cache, _without_secondary_indexes(connection, tables):
        return _insert_sessions(rows, insert, encode, stock=stock, ours=ours)


@contextmanager
def _without_secondary_indexes(connection: Any, tables: Sequence[str]) -> Iterator[None]:
    """Drop the indexes of *tables* that back no constraint; create them again at the end.

    Building an index once over sorted keys is much faster than growing it
    one random key at a time. Primary keys and unique constraints stay, so
    the load is checked as before.
    """
    if connection.vendor == "postgresql":
        query = (
            "SELECT indexname, indexdef FROM pg_indexes "
            "WHERE schemaname = current_schema() AND tablename = %s AND indexname NOT IN "
            "(SELECT conname FROM pg_constraint)"
        )
    else:
        query = (
            "SELECT name, sql FROM sqlite_master "
            "WHERE type = 'index' AND tbl_name = %s AND sql IS NOT NULL"
        )
    with connection.cursor() as cursor:
        indexes = []
        for table in tables:
            cursor.execute(query, [table])
            indexes.extend(cursor.fetchall())
        for name, _ in indexes:
            cursor.execute(f"DROP INDEX {connection.ops.quote_name(name)}")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            for _, definition in indexes:
                cursor.execute(definition)


@contextmanager
def _sqlite_page_cache(connection: Any, kib: int = 1024 * 1024) -> Iterator[None]:
    """Give SQLite a large page cache while loading, then its default back.

    With the default 2 MiB, inserts in random key order make SQLite go to the
    file for index pages all the time: loading takes three times as long.
    The lookups are then timed with the default cache.
    """
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA cache_size")
        (previous,) = cursor.fetchone()
        cursor.execute(f"PRAGMA cache_size = -{int(kib)}")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"PRAGMA cache_size = {int(previous)}")


def _insert_sessions(
    rows: Iterable[SessionRow],
    insert: Callable[[Any, Sequence[str], list[tuple[Any, ...]]], None],
    encode: Encoder,
    *,
    stock: bool,
    ours: bool,
) -> int:
    from django.contrib.sessions.models import Session as StockSession

    from django_sessionkit.models import Session
    from django_sessionkit.public_id import public_id

    written = 0
    for chunk in chunked(rows, CHUNK):
        if stock:
            insert(
                StockSession,
                STOCK_FIELDS,
                [(row.session_key, encode(row), row.expire_date) for row in chunk],
            )
        if ours:
            insert(
                Session,
                OUR_FIELDS,
                [
                    (
                        row.session_key,
                        encode(row),
                        row.expire_date,
                        public_id(row.session_key),
                        row.user_id,
                        row.ip,
                        row.user_agent,
                        row.created_at,
                        row.last_activity,
                    )
                    for row in chunk
                ],
            )
        written += len(chunk)
    return written


def _columns(model: Any, fields: Sequence[str]) -> str:
    return ", ".join(f'"{model._meta.get_field(name).column}"' for name in fields)


def _sqlite_value(value: Any) -> Any:
    # What DatabaseOperations.adapt_datetimefield_value() writes with USE_TZ: naive UTC text.
    if isinstance(value, datetime):
        return str(value.astimezone(dt_timezone.utc).replace(tzinfo=None))
    return value


def _executemany(model: Any, fields: Sequence[str], values: list[tuple[Any, ...]]) -> None:
    from django.db import connections, transaction

    alias = BenchRouter.alias
    placeholders = ", ".join(["%s"] * len(fields))
    # Table and column names come from the models, never from input.
    table, columns = model._meta.db_table, _columns(model, fields)
    sql = f'INSERT INTO "{table}" ({columns}) VALUES ({placeholders})'  # noqa: S608
    rows = [tuple(map(_sqlite_value, row)) for row in values]
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        cursor.executemany(sql, rows)


def _copy(model: Any, fields: Sequence[str], values: list[tuple[Any, ...]]) -> None:
    from django.db import connections

    with connections[BenchRouter.alias].cursor() as cursor:
        sql = f'COPY "{model._meta.db_table}" ({_columns(model, fields)}) FROM STDIN'
        with cursor.cursor.copy(sql) as copy:
            for row in values:
                copy.write_row(row)


def analyze(alias: str) -> None:
    """Refresh the planner's statistics after a bulk load, as autovacuum would."""
    from django.db import connections

    connection = connections[alias]
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def populate_our_redis(
    rows: Iterable[SessionRow], *, now: datetime, cache_alias: str = SESSION_CACHE
) -> int:
    """Write *rows* through our redis engine's own save script, in pipelines.

    The writes are those ``SessionStore.save()`` makes for a new session of a
    request, except that the session's "now" is its generated
    ``last_activity``, so creation and activity times are spread as in a
    live store. Each pipeline carries ``PIPELINE`` saves in one round trip.
    The script costs Redis far more than the packing costs us, so more
    client threads would not help.
    """
    from django_sessionkit.backends import redis as engine
    from django_sessionkit.backends.base import to_ms
    from django_sessionkit.backends.redis.scripts import Save
    from django_sessionkit.public_id import public_id

    keyspace = engine.Keyspace(cache_alias)
    encode = Encoder(engine.SessionStore)

    def write(row: SessionRow) -> Save | None:
        ttl = int((row.expire_date - now).total_seconds())
        if ttl <= 0:
            return None
        return Save(
            pid=public_id(row.session_key),
            session_key=row.session_key,
            data=encode(row),
            now=to_ms(row.last_activity),
            ttl=ttl,
            expiry=to_ms(row.expire_date),
            user_id=None if row.user_id is None else str(row.user_id),
            metadata=(row.ip, row.user_agent),
        )

    written = 0
    for chunk in chunked(rows, PIPELINE):
        if STOPPING.is_set():
            raise SystemExit("stopped while loading Redis")
        results = keyspace.create_many(filter(None, map(write, chunk)))
        if any(result != 1 for result in results):
            raise RuntimeError("the redis engine refused a generated session (key collision?)")
        written += len(results)
    return written


def glob_escape(text: str) -> str:
    """Escape *text* for a Redis MATCH pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def our_redis_index_keys(cache_alias: str = SESSION_CACHE) -> list[bytes]:
    """Return the names of the redis engine's index keys (a SCAN: benchmarks only)."""
    from django_sessionkit.backends import redis as engine

    pattern = engine.Keyspace(cache_alias).index_pattern()
    return list(raw_redis(cache_alias).scan_iter(match=pattern, count=PIPELINE))


def our_redis_session_keys(cache_alias: str = SESSION_CACHE) -> list[bytes]:
    """Return the names of the redis engine's session hashes (a SCAN: benchmarks only)."""
    from django_sessionkit.backends import redis as engine

    pattern = engine.Keyspace(cache_alias).session_pattern()
    return list(raw_redis(cache_alias).scan_iter(match=pattern, count=PIPELINE))


def stock_cache_keys(cache_alias: str = SESSION_CACHE) -> list[bytes]:
    """Return the names of the stock cache engine's session keys (a SCAN: benchmarks only)."""
    from django.contrib.sessions.backends.cache import KEY_PREFIX
    from django.core.cache import caches

    pattern = glob_escape(caches[cache_alias].make_key(KEY_PREFIX)) + "*"
    return list(raw_redis(cache_alias).scan_iter(match=pattern, count=PIPELINE))


def memory_usage(keys: Sequence[bytes], cache_alias: str = SESSION_CACHE) -> int:
    """Return the sum of MEMORY USAGE (every element counted) of *keys*, in bytes."""
    client = raw_redis(cache_alias)
    total = 0
    for batch in chunked(keys, PIPELINE):
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.memory_usage(key, samples=0)
        total += sum(size or 0 for size in pipe.execute())
    return total


def used_memory(cache_alias: str = SESSION_CACHE) -> int:
    """Return the server's INFO memory used_memory, in bytes."""
    return int(raw_redis(cache_alias).info("memory")["used_memory"])


def populate_stock_cache(
    rows: Iterable[SessionRow], *, now: datetime, cache_alias: str = SESSION_CACHE
) -> int:
    """Write *rows* as Django's ``cache`` engine writes them on django-redis."""
    from django.contrib.sessions.backends.cache import KEY_PREFIX
    from django.core.cache import caches

    cache = caches[cache_alias]
    client = raw_redis(cache_alias)
    written = 0
    for chunk in chunked(rows, PIPELINE):
        pipe = client.pipeline(transaction=False)
        for row in chunk:
            ttl = int((row.expire_date - now).total_seconds())
            if ttl <= 0:
                continue
            pipe.set(
                cache.make_key(KEY_PREFIX + row.session_key), cache.client.encode(row.data), ex=ttl
            )
            written += 1
        pipe.execute()
    return written


# -- timing and reporting -------------------------------------------------------------


def utcnow() -> datetime:
    return datetime.now(dt_timezone.utc)


@dataclass(frozen=True)
class Timing:
    """Repeated wall-clock measurements of one operation, in seconds."""

    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p95(self) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def repeat(operation: Callable[[], Any], *, runs: int, warmup: int = 3) -> Timing:
    """Time *operation* *runs* times after *warmup* untimed calls."""
    for _ in range(warmup):
        operation()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        operation()
        samples.append(time.perf_counter() - started)
    return Timing(tuple(samples))


def repeat_interleaved(
    operations: dict[str, Callable[[], Any]], *, runs: int, warmup: int = 3
) -> dict[str, Timing]:
    """Time each of *operations* *runs* times, taking turns, so that they share the load.

    On a shared machine, the load of other processes comes and goes; calls
    that alternate see the same load, so their ratio stays meaningful.
    """
    for operation in operations.values():
        for _ in range(warmup):
            operation()
    samples: dict[str, list[float]] = {name: [] for name in operations}
    for _ in range(runs):
        for name, operation in operations.items():
            started = time.perf_counter()
            operation()
            samples[name].append(time.perf_counter() - started)
    return {name: Timing(tuple(values)) for name, values in samples.items()}


def once(operation: Callable[[], Any]) -> tuple[float, Any]:
    """Return the wall-clock seconds of one call of *operation* and its result."""
    started = time.perf_counter()
    result = operation()
    return time.perf_counter() - started, result


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds >= 1 else ms(seconds)


def mib(size: float) -> str:
    return f"{size / 1024 / 1024:.1f} MiB"


@dataclass
class Report:
    """One table of results: a figure for sessionkit and stock Django, a ratio, a target."""

    title: str
    rows: list[tuple[str, str, str, str, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    HEADER = ("measurement", "sessionkit", "stock Django", "ratio", "target", "")

    def add(
        self,
        name: str,
        ours: str,
        stock: str = "",
        ratio: str = "",
        target: str = "",
        met: bool | None = None,
    ) -> None:
        verdict = "" if met is None else ("ok" if met else "MISSED")
        self.rows.append((name, ours, stock, ratio, target, verdict))

    def note(self, text: str) -> None:
        self.notes.append(text)

    def render(self) -> str:
        table = [self.HEADER, *self.rows]
        widths = [max(len(row[column]) for row in table) for column in range(len(self.HEADER))]
        lines = [self.title, "=" * len(self.title)]
        for number, row in enumerate(table):
            lines.append(
                "  ".join(
                    cell.ljust(width) for cell, width in zip(row, widths, strict=True)
                ).rstrip()
            )
            if number == 0:
                lines.append("  ".join("-" * width for width in widths))
        lines.extend(f"  * {text}" for text in self.notes)
        return "\n".join(lines)


def progress(message: str) -> None:
    """Say on stderr what the run is doing, so stdout holds only the results."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
