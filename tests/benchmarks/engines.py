"""Benchmark sessionkit's engines against stock Django's, on the same data, in one run.

Run from the project root::

    python -m tests.benchmarks.engines [--sessions N] [--db sqlite|postgres|both]
                                       [--only lookup,requests,memory]

It prints, for each measurement, sessionkit's figure, stock Django's figure,
their ratio and the issue's target:

lookup
    Listing the sessions of one user (who has exactly 10) among 10,000 and
    *N* sessions (default 1,000,000), through ``get_inventory().for_user()``:
    median of ``--runs`` calls, for our db engine on each database and for
    our redis engine. Beside it, stock Django's way, timed once: decode every
    unexpired session (``Session.get_decoded()`` over ``django_session``;
    SCAN and MGET over the stock cache engine's keys).
requests
    ``--requests`` authenticated read-only requests through Django's
    ``WSGIHandler``: our engines with ``SessionKitMiddleware`` against the
    stock engine of the same kind with ``SessionMiddleware``, in alternating
    rounds; then the queries / Redis commands per request, and the writes
    made with activity tracking on while a simulated clock runs.
memory
    ``--memory-sessions`` sessions in our redis engine: ``INFO memory``
    used_memory with and without the indexes, and the stock cache engine's
    memory for the same sessions.
"""

from __future__ import annotations

import argparse
import io
import logging
import math
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from tests.benchmarks import _common as common
from tests.benchmarks._common import Report, progress

if TYPE_CHECKING:
    from django_sessionkit.inventory import SessionInventory

logger = logging.getLogger(__name__)

PARTS = ("lookup", "requests", "memory")
SMALL = 10_000
USER_SESSIONS = 10
SESSIONS_PER_USER = 10
LOOKUP_TARGET = 0.005
GROWTH_TARGET = 2.0
THROUGHPUT_TARGET = 0.9
MEMORY_TARGET = 0.15
ACTIVITY_SESSIONS = 50
#: Simulated seconds between two requests of the activity run.
ACTIVITY_STEP = 1
ROUNDS = 10
WARMUP_REQUESTS = 200
REMOTE_ADDR = "203.0.113.7"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.engines",
        description="Compare django_sessionkit's engines with stock Django's on the same data.",
    )
    parser.add_argument(
        "--sessions",
        type=int,
        default=1_000_000,
        help="sessions in the large lookup run (default 1,000,000; the small run has 10,000)",
    )
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument(
        "--only",
        default=",".join(PARTS),
        help=f"comma-separated parts to run, among {', '.join(PARTS)} (default: all)",
    )
    parser.add_argument("--runs", type=int, default=50, help="timed lookups per figure")
    parser.add_argument("--requests", type=int, default=5_000, help="requests per engine")
    parser.add_argument(
        "--memory-sessions", type=int, default=100_000, help="sessions in the memory run"
    )
    parser.add_argument(
        "--cached-db",
        action="store_true",
        help="also compare the cached_db engines in the requests part (about 1.5 min more)",
    )
    parser.add_argument("--redis-db", type=int, default=common.REDIS_DB)
    parser.add_argument(
        "--keep", action="store_true", help="keep the databases and Redis data afterwards"
    )
    args = parser.parse_args(argv)
    args.parts = [part.strip() for part in args.only.split(",") if part.strip()]
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s) {', '.join(sorted(unknown))}; choose among {PARTS}")
    if args.sessions < SMALL:
        parser.error(f"--sessions must be at least {SMALL}")
    args.databases = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    return args


def label(alias: str) -> str:
    return {common.SQLITE: "SQLite", common.POSTGRES: "PostgreSQL"}[alias]


def count_label(count: int) -> str:
    if count >= 1_000_000 and count % 1_000_000 == 0:
        return f"{count // 1_000_000}M"
    if count >= 1000 and count % 1000 == 0:
        return f"{count // 1000}k"
    return f"{count:,}"


def faster(stock: float, ours: float) -> str:
    return f"{stock / ours:,.0f}x faster" if ours > 0 else ""


# -- 1. per-user lookup ---------------------------------------------------------------


def stock_db_user_sessions(user_id: str) -> list[str]:
    """Find a user's sessions the way stock Django allows: decode every live session."""
    from django.contrib.auth import SESSION_KEY
    from django.contrib.sessions.models import Session
    from django.utils import timezone

    live = Session.objects.filter(expire_date__gt=timezone.now())
    return [
        session.session_key
        for session in live.iterator(chunk_size=2000)
        if session.get_decoded().get(SESSION_KEY) == user_id
    ]


def stock_cache_user_sessions(user_id: str) -> list[str]:
    """Find a user's sessions in the stock cache engine: SCAN its keys, MGET, unpickle."""
    from django.contrib.auth import SESSION_KEY
    from django.contrib.sessions.backends.cache import KEY_PREFIX
    from django.core.cache import caches

    cache = caches[common.SESSION_CACHE]
    found = []
    keys = cache.iter_keys(KEY_PREFIX + "*", itersize=common.PIPELINE)
    for batch in common.chunked(keys, common.PIPELINE):
        for key, data in cache.get_many(batch).items():
            if isinstance(data, dict) and data.get(SESSION_KEY) == user_id:
                found.append(key)
    return found


def checked(found: Sequence[Any], what: str) -> Sequence[Any]:
    if len(found) != USER_SESSIONS:
        raise RuntimeError(f"{what} found {len(found)} sessions instead of {USER_SESSIONS}")
    return found


@dataclass
class Population:
    """*size* sessions over one user per ``SESSIONS_PER_USER``; the first user has exactly 10."""

    size: int
    now: datetime = field(default_factory=common.utcnow)
    user_ids: list[int] = field(default_factory=list)

    @property
    def users(self) -> int:
        return max(self.size // SESSIONS_PER_USER, 2)

    @property
    def target(self) -> str:
        return str(self.user_ids[0])

    def create_users(self) -> None:
        """Create the users in the routed database (the db engines' foreign key needs them)."""
        self.user_ids = common.create_users(self.users)

    def number_users(self) -> None:
        """Number the users without rows: the redis engine stores only their ids."""
        self.user_ids = list(range(1, self.users + 1))

    def rows(self) -> Iterator[common.SessionRow]:
        yield from common.user_sessions(self.user_ids[0], USER_SESSIONS, now=self.now)
        yield from common.generate_sessions(
            0, self.size - USER_SESSIONS, user_ids=self.user_ids[1:], now=self.now
        )


def user_lookup(
    inventory: SessionInventory, user_id: str, what: str
) -> Callable[[], Sequence[Any]]:
    """Return a call of ``inventory.for_user(user_id)`` that checks how many sessions it finds."""

    def call() -> Sequence[Any]:
        return checked(inventory.for_user(user_id), what)

    return call


def routed(alias: str, operation: Callable[[], Any]) -> Callable[[], Any]:
    def call() -> Any:
        with common.use_database(alias):
            return operation()

    return call


def populate_db(alias: str, sizes: dict[str, int]) -> dict[str, Population]:
    """Fill both session tables of the small twin and of the large database *alias*."""
    populations = {name: Population(size) for name, size in sizes.items()}
    for name, population in populations.items():
        with common.use_database(name):
            progress(f"lookup on {label(alias)}: {population.size:,} sessions into both tables")
            started = time.perf_counter()
            population.create_users()
            common.populate_models(population.rows(), stock=True, ours=True)
            if alias == common.POSTGRES:
                common.analyze(name)
            progress(f"  {label(alias)}: populated in {time.perf_counter() - started:.1f} s")
    return populations


def lookup_db(
    report: Report, alias: str, populations: dict[str, Population], runs: int
) -> dict[str, common.Timing]:
    """Time ``for_user`` on the small twin and the large database in turns, then stock's way."""
    from django_sessionkit.inventory import get_inventory

    inventory = get_inventory(common.OUR_DB)
    operations = {
        name: routed(name, user_lookup(inventory, population.target, "for_user"))
        for name, population in populations.items()
    }
    progress(f"lookup on {label(alias)}: timing")
    timings = common.repeat_interleaved(operations, runs=runs)
    for name, population in populations.items():
        with common.use_database(name):
            stock_seconds, found = common.once(partial(stock_db_user_sessions, population.target))
        checked(found, "stock decode")
        add_lookup_row(
            report,
            f"{label(alias)}, db engine",
            population.size,
            timings[name],
            f"{common.duration(stock_seconds)} (decode all)",
            stock_seconds,
        )
    return timings


def populate_redis(sizes: dict[str, int]) -> dict[str, Population]:
    """Write both populations with our redis engine, each under its own cache key prefix.

    Runs in a thread while the databases are filled: Redis spends about
    100 µs running the engine's save script per session, and this process
    would otherwise wait for it.
    """
    populations = {name: Population(size) for name, size in sizes.items()}
    for name, population in populations.items():
        progress(f"lookup on Redis: {population.size:,} sessions with our redis engine")
        started = time.perf_counter()
        population.number_users()
        common.populate_our_redis(population.rows(), now=population.now, cache_alias=name)
        progress(f"  Redis: populated in {time.perf_counter() - started:.1f} s")
    return populations


def lookup_redis(
    report: Report, populations: dict[str, Population], runs: int
) -> dict[str, common.Timing]:
    """Time ``for_user`` of our redis engine on both populations in turns, then stock's way."""
    from django.test.utils import override_settings

    from django_sessionkit.inventory import get_inventory

    operations: dict[str, Callable[[], Any]] = {}
    for name, population in populations.items():
        with override_settings(SESSION_CACHE_ALIAS=name):
            inventory = get_inventory(common.OUR_REDIS)
        operations[name] = user_lookup(inventory, population.target, "redis for_user")
    progress("lookup on Redis: timing")
    timings = common.repeat_interleaved(operations, runs=runs)
    common.flush_redis()
    for name, population in populations.items():
        # One size at a time: SCAN walks every key of the database.
        progress(f"lookup on Redis: {population.size:,} sessions with the stock cache engine")
        common.populate_stock_cache(population.rows(), now=population.now)
        stock_seconds, found = common.once(partial(stock_cache_user_sessions, population.target))
        checked(found, "stock SCAN")
        common.flush_redis()
        add_lookup_row(
            report,
            "Redis, redis engine",
            population.size,
            timings[name],
            f"{common.duration(stock_seconds)} (SCAN+MGET all)",
            stock_seconds,
        )
    return timings


def add_lookup_row(
    report: Report, what: str, size: int, timing: common.Timing, stock: str, stock_seconds: float
) -> None:
    report.add(
        f"{what}, {count_label(size)} sessions",
        f"{common.ms(timing.median)} (p95 {common.ms(timing.p95)})",
        stock,
        faster(stock_seconds, timing.median),
        "median <= 5 ms",
        timing.median <= LOOKUP_TARGET,
    )


def add_growth(
    report: Report, what: str, timings: dict[str, common.Timing], sizes: dict[str, int]
) -> None:
    small, large = sorted(sizes, key=sizes.__getitem__)
    growth = timings[large].median / timings[small].median
    report.add(
        f"{what}, {count_label(sizes[large])} / {count_label(sizes[small])}",
        f"{growth:.2f}x",
        "",
        "",
        "<= 2x",
        growth <= GROWTH_TARGET,
    )


def bench_lookup(env: common.BenchEnv, args: argparse.Namespace) -> Report:
    from concurrent.futures import ThreadPoolExecutor

    report = Report(
        f"1. Listing one user's {USER_SESSIONS} sessions (inventory.for_user, "
        f"median of {args.runs})"
    )
    db_sizes = {
        alias: {common.small(alias): SMALL, alias: args.sessions} for alias in env.databases
    }
    redis_sizes = {common.SESSION_CACHE_SMALL: SMALL, common.SESSION_CACHE: args.sessions}
    with_redis = env.has_redis and engine_available(common.OUR_REDIS)
    # Everything is written first, Redis in the background, and timed after:
    # no timing runs while the machine is busy loading.
    with ThreadPoolExecutor(max_workers=1) as background:
        if with_redis:
            common.flush_redis()
            redis_loading = background.submit(populate_redis, redis_sizes)
        db_populations = {alias: populate_db(alias, db_sizes[alias]) for alias in env.databases}
        redis_populations = redis_loading.result() if with_redis else {}
    for alias, populations in db_populations.items():
        timings = lookup_db(report, alias, populations, args.runs)
        add_growth(report, f"{label(alias)}, db engine", timings, db_sizes[alias])
    if with_redis:
        timings = lookup_redis(report, redis_populations, args.runs)
        add_growth(report, "Redis, redis engine", timings, redis_sizes)
    report.note(
        f"{count_label(args.sessions)} sessions over {args.sessions // SESSIONS_PER_USER:,} "
        f"users (10% anonymous, 10% expired); the user looked up has exactly {USER_SESSIONS}."
    )
    report.note(
        f"The {count_label(SMALL)} and {count_label(args.sessions)} populations live side by "
        "side (a twin database, a second Redis key prefix) and are timed in turns, so both "
        "see the same load; stock Django's way is timed once per size; "
        "ratio = stock time / our median."
    )
    return report


# -- 2. request cost ----------------------------------------------------------------------


class StartResponse:
    """The WSGI ``start_response`` callable; remembers the last status."""

    status = ""

    def __call__(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        self.status = status


class Site:
    """One WSGI application with one session engine and one session middleware."""

    def __init__(self, engine: str, session_middleware: str, alias: str) -> None:
        self.engine = engine
        self.session_middleware = session_middleware
        self.alias = alias
        self.handler: Any = None
        self.start_response = StartResponse()

    @contextmanager
    def active(self) -> Iterator[Site]:
        from django.core.handlers.wsgi import WSGIHandler
        from django.test.utils import override_settings

        with (
            common.use_database(self.alias),
            override_settings(
                SESSION_ENGINE=self.engine, MIDDLEWARE=common.middleware(self.session_middleware)
            ),
        ):
            if self.handler is None:
                self.handler = WSGIHandler()
            yield self

    def login(self, username: str) -> str:
        """Return the key of a new session of *username*, stored as ``login()`` stores it."""
        from importlib import import_module

        from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
        from django.contrib.auth.models import User

        user, _ = User.objects.get_or_create(username=username)
        store = import_module(self.engine).SessionStore()
        store[SESSION_KEY] = str(user.pk)
        store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        store[HASH_SESSION_KEY] = user.get_session_auth_hash()
        store.save()
        return str(store.session_key)

    def environ(self, session_key: str) -> dict[str, Any]:
        from django.conf import settings

        return {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/whoami/",
            "QUERY_STRING": "",
            "SERVER_NAME": "testserver",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": "testserver",
            "HTTP_COOKIE": f"{settings.SESSION_COOKIE_NAME}={session_key}",
            "HTTP_USER_AGENT": common.USER_AGENTS[0],
            "REMOTE_ADDR": REMOTE_ADDR,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }

    def request(self, environ: dict[str, Any]) -> None:
        environ = dict(environ)
        environ["wsgi.input"] = io.BytesIO(b"")
        response = self.handler(environ, self.start_response)
        try:
            body = b"".join(response)
        finally:
            response.close()
        status = self.start_response.status
        if not status.startswith("200"):
            raise RuntimeError(f"{self.engine}: {status} {body[:200]!r}")

    def run(self, environs: Sequence[dict[str, Any]], count: int) -> float:
        """Send *count* requests cycling through *environs*; return the seconds taken."""
        started = time.perf_counter()
        for number in range(count):
            self.request(environs[number % len(environs)])
        return time.perf_counter() - started


@dataclass(frozen=True)
class Throughput:
    """Requests per second of two sites measured in alternating rounds."""

    ours: list[float]
    stock: list[float]

    @property
    def ratio(self) -> float:
        """The ratio of the best rounds: the one least disturbed by other work on the machine."""
        return max(self.ours) / max(self.stock)

    @property
    def paired_ratio(self) -> float:
        """The median ratio of two rounds run one right after the other."""
        return statistics.median(a / b for a, b in zip(self.ours, self.stock, strict=True))


def throughput(ours: Site, stock: Site, requests: int) -> Throughput:
    """Measure *requests* requests of each site in ``ROUNDS`` alternating rounds.

    The machine is shared, so each site's rate is that of its best round, as
    ``timeit`` takes the best time; the median ratio of adjacent rounds is
    kept as a cross-check.
    """
    environs: dict[Site, list[dict[str, Any]]] = {}
    for site in (ours, stock):
        with site.active():
            environs[site] = [site.environ(site.login("bench-requests"))]
            site.run(environs[site], WARMUP_REQUESTS)
    rates: dict[Site, list[float]] = {ours: [], stock: []}
    per_round = math.ceil(requests / ROUNDS)
    done = 0
    for number in range(ROUNDS):
        count = min(per_round, requests - done)
        order = (ours, stock) if number % 2 == 0 else (stock, ours)
        for site in order:
            with site.active():
                rates[site].append(count / site.run(environs[site], count))
        done += count
    return Throughput(ours=rates[ours], stock=rates[stock])


@dataclass
class Traffic:
    """What requests sent to the database and to Redis."""

    requests: int = 0
    queries: int = 0
    sql_writes: int = 0
    redis_round_trips: int = 0
    redis_writes: int = 0

    def per_request(self) -> str:
        per = max(self.requests, 1)
        text = f"{self.queries / per:.2f} + {self.redis_round_trips / per:.2f}"
        writes = self.sql_writes + self.redis_writes
        return text + (f" ({writes / per:.2f} writes)" if writes else "")

    def writes(self) -> str:
        return f"{self.sql_writes:,} SQL + {self.redis_writes:,} Redis"


@contextmanager
def counting_traffic(alias: str) -> Iterator[Traffic]:
    """Count the statements run on *alias* and the Redis commands sent, in this process.

    A write is an INSERT, UPDATE or DELETE on a session table, or a Redis
    round trip that carries a write command.
    """
    from django.db import connections

    traffic = Traffic()

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        traffic.queries += 1
        verb = sql.lstrip()[:6].upper()
        if verb in ("INSERT", "UPDATE", "DELETE") and "session" in sql.lower():
            traffic.sql_writes += 1
        return execute(sql, params, many, context)

    with connections[alias].execute_wrapper(count), common.REDIS_COMMANDS.counting() as sent:
        yield traffic
    traffic.redis_round_trips = sent.round_trips
    traffic.redis_writes = sent.write_round_trips


def per_request_cost(site: Site, requests: int = 200) -> Traffic:
    """Return the queries, Redis round trips and writes of *requests* requests of *site*."""
    with site.active():
        environs = [site.environ(site.login("bench-cost"))]
        site.run(environs, 5)
        with counting_traffic(site.alias) as traffic:
            site.run(environs, requests)
    traffic.requests = requests
    return traffic


def activity_writes(site: Site, requests: int) -> tuple[Traffic, int]:
    """Count the writes of *requests* read-only requests under a simulated clock.

    ``ACTIVITY_SESSIONS`` users each have a session; requests go round-robin,
    the clock moving ``ACTIVITY_STEP`` seconds per request. Return what was
    sent and the most writes the target allows: one per session per started
    interval.
    """
    import time_machine

    from django_sessionkit.conf import conf

    with site.active(), time_machine.travel(common.utcnow(), tick=False) as clock:
        environs = [
            site.environ(site.login(f"bench-activity-{number}"))
            for number in range(ACTIVITY_SESSIONS)
        ]
        with counting_traffic(site.alias) as traffic:
            for number in range(requests):
                clock.shift(timedelta(seconds=ACTIVITY_STEP))
                site.request(environs[number % len(environs)])
    traffic.requests = requests
    simulated = requests * ACTIVITY_STEP
    return traffic, ACTIVITY_SESSIONS * (simulated // conf.SESSIONKIT_ACTIVITY_INTERVAL + 1)


def bench_requests(env: common.BenchEnv, args: argparse.Namespace) -> Report:
    report = Report(f"2. {args.requests:,} authenticated read-only requests through WSGIHandler")
    pairs: list[tuple[str, Site, Site]] = []
    for alias in env.databases:
        pairs.append(
            (
                f"db engine, {label(alias)}",
                Site(common.OUR_DB, common.OUR_MIDDLEWARE, alias),
                Site(common.STOCK_DB, common.STOCK_MIDDLEWARE, alias),
            )
        )
    if env.has_redis:
        alias = env.databases[0]
        if args.cached_db and engine_available(common.OUR_CACHED_DB):
            pairs.append(
                (
                    f"cached_db engine, {label(alias)} + Redis",
                    Site(common.OUR_CACHED_DB, common.OUR_MIDDLEWARE, alias),
                    Site(common.STOCK_CACHED_DB, common.STOCK_MIDDLEWARE, alias),
                )
            )
        if engine_available(common.OUR_REDIS):
            pairs.append(
                (
                    "redis engine vs stock cache engine (django-redis)",
                    Site(common.OUR_REDIS, common.OUR_MIDDLEWARE, alias),
                    Site(common.STOCK_CACHE, common.STOCK_MIDDLEWARE, alias),
                )
            )
    for name, ours, stock in pairs:
        progress(f"requests: {name}")
        rates = throughput(ours, stock, args.requests)
        report.add(
            f"{name}: requests/s",
            f"{max(rates.ours):,.0f}/s",
            f"{max(rates.stock):,.0f}/s",
            f"{rates.ratio:.3f}x (paired {rates.paired_ratio:.3f}x)",
            ">= 0.9x",
            rates.ratio >= THROUGHPUT_TARGET,
        )
        our_cost, stock_cost = per_request_cost(ours), per_request_cost(stock)
        report.add(
            f"{name}: SQL queries + Redis round trips per request",
            our_cost.per_request(),
            stock_cost.per_request(),
            "",
            "no extra",
            our_cost.queries <= stock_cost.queries
            and our_cost.redis_round_trips <= stock_cost.redis_round_trips
            and our_cost.sql_writes + our_cost.redis_writes == 0,
        )
        progress(f"requests: {name}, counting activity writes")
        writes, allowed = activity_writes(ours, args.requests)
        # Activity is stored where the session is: the table, or Redis for the redis engine.
        stored = writes.redis_writes if ours.engine == common.OUR_REDIS else writes.sql_writes
        report.add(
            f"{name}: writes, activity tracked",
            writes.writes(),
            "no tracking",
            "",
            f"<= {allowed:,}",
            stored <= allowed,
        )
    report.note(
        f"Requests per second: the best of {ROUNDS} rounds per engine, run alternately after "
        f"{WARMUP_REQUESTS} warm-up requests each; ratio = sessionkit / stock (paired: the "
        "median ratio of adjacent rounds). "
        "Middleware: Security, Session(Kit), Common, Csrf, Authentication, XFrameOptions."
    )
    report.note(
        "Per request: SQL statements on the database + Redis round trips, counted in this "
        "process over 200 requests of one session; a read-only request must write nothing."
    )
    report.note(
        f"Writes: {ACTIVITY_SESSIONS} sessions, requests round-robin, the clock moving "
        f"{ACTIVITY_STEP} s per request ({args.requests * ACTIVITY_STEP:,} simulated seconds), "
        "SESSIONKIT_ACTIVITY_INTERVAL=60; the target allows one activity write per session per "
        "started interval, counted where the session is stored (the table; Redis for the redis "
        "engine). cached_db's Redis writes are its cache evictions and refills. A write is an "
        "INSERT/UPDATE/DELETE on a session table, or a Redis round trip with a write command."
    )
    return report


def engine_available(engine: str) -> bool:
    from importlib import import_module

    try:
        import_module(engine)
    except ImportError:
        return False
    return True


# -- 3. Redis memory ------------------------------------------------------------------------


def bench_memory(env: common.BenchEnv, args: argparse.Namespace) -> Report:
    count = args.memory_sessions
    cache = env.memory_cache
    report = Report(f"3. Redis memory of {count:,} sessions")
    now = common.utcnow()
    # The redis engine stores user ids only: no user rows are needed.
    user_ids = list(range(1, max(count // SESSIONS_PER_USER, 1) + 1))

    def rows() -> Iterator[common.SessionRow]:
        return common.generate_sessions(
            0, count, user_ids=user_ids, now=now, expired_share=0.0, seed=3
        )

    common.flush_redis(cache_alias=cache)
    baseline = common.used_memory(cache)
    progress(f"memory: writing {count:,} sessions with our redis engine")
    common.populate_our_redis(rows(), now=now, cache_alias=cache)
    with_indexes = common.used_memory(cache)
    index_keys = common.our_redis_index_keys(cache)
    session_keys = common.our_redis_session_keys(cache)
    index_usage = common.memory_usage(index_keys, cache)
    session_usage = common.memory_usage(session_keys, cache)
    encodings = session_encodings(session_keys[:100], cache)
    client = common.raw_redis(cache)
    for batch in common.chunked(index_keys, common.PIPELINE):
        client.delete(*batch)
    without_indexes = common.used_memory(cache)
    common.flush_redis(cache_alias=cache)

    baseline_stock = common.used_memory(cache)
    progress(f"memory: writing {count:,} sessions with the stock cache engine")
    common.populate_stock_cache(rows(), now=now, cache_alias=cache)
    stock_used = common.used_memory(cache) - baseline_stock
    stock_usage = common.memory_usage(common.stock_cache_keys(cache), cache)
    common.flush_redis(cache_alias=cache)

    def per_session(size: float) -> str:
        return f"{common.mib(size)} ({size / count:,.0f} B/session)"

    report.add(
        "sessions, MEMORY USAGE of each key",
        per_session(session_usage),
        per_session(stock_usage),
        f"{session_usage / stock_usage:.2f}x",
    )
    report.add(
        f"indexes ({len(index_keys):,} keys), MEMORY USAGE of each key",
        f"{common.mib(index_usage)} (+{index_usage / session_usage:.1%})",
        "none",
        "",
        "<= +15%",
        index_usage / session_usage <= MEMORY_TARGET,
    )
    sessions_used = without_indexes - baseline
    indexes_used = with_indexes - without_indexes
    report.add(
        "sessions, INFO used_memory delta",
        per_session(sessions_used),
        per_session(stock_used),
        f"{sessions_used / stock_used:.2f}x",
    )
    report.add(
        "indexes, INFO used_memory delta",
        f"{common.mib(indexes_used)} (+{indexes_used / sessions_used:.1%})",
        "none",
        "",
        "<= +15%",
        indexes_used / sessions_used <= MEMORY_TARGET,
    )
    limit = client.config_get("hash-max-listpack-value").get("hash-max-listpack-value", "?")
    server = "a private redis-server" if env.memory_redis else "the shared server (!)"
    report.note(
        "MEMORY USAGE (SAMPLES 0) counts only this run's keys. used_memory is the whole "
        f"server's ({server}), read before writing, after writing, and after deleting only the "
        "index keys: it includes allocator overhead, and on a shared server other clients' writes."
    )
    report.note(
        f"Session hashes sampled by OBJECT ENCODING: {encodings} (hash-max-listpack-value "
        f"{limit}: a hash with a longer value is a hashtable, not a compact listpack). Our "
        "sessions also hold user, IP, user agent and times; stock keys hold the pickled data."
    )
    return report


def session_encodings(keys: Sequence[bytes], cache_alias: str) -> str:
    """Return how Redis encodes the session hashes *keys* (OBJECT ENCODING)."""
    client = common.raw_redis(cache_alias)
    found = Counter(client.object("encoding", key).decode() for key in keys)
    return ", ".join(f"{name} {count}/{len(keys)}" for name, count in found.most_common())


# -- main -------------------------------------------------------------------------------------

BENCHMARKS: dict[str, Callable[[common.BenchEnv, argparse.Namespace], Report]] = {
    "lookup": bench_lookup,
    "requests": bench_requests,
    "memory": bench_memory,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    common.stop_cleanly()
    env = common.setup(args.databases, redis_db=args.redis_db, memory_server="memory" in args.parts)
    try:
        print("\n".join(common.describe_environment(env)), end="\n\n", flush=True)
        for part in args.parts:
            if part == "memory" and not (env.has_redis and engine_available(common.OUR_REDIS)):
                print("3. Redis memory: skipped (no Redis or no redis engine)\n", flush=True)
                continue
            print(BENCHMARKS[part](env, args).render(), end="\n\n", flush=True)
    finally:
        common.teardown(env, keep=args.keep)
    print(f"Total time: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
