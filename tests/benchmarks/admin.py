"""Benchmark the admin's session browser against the usual stock snippet, on the same data.

Run from the project root::

    python -m tests.benchmarks.admin [--sessions N] [--db sqlite|postgres|both|none]
                                     [--no-redis] [--runs 20]

*N* sessions (default 1,000,000), half of them expired, spread over one user
per 10 sessions, and a user with exactly 10, are written to Django's
``django_session`` table and to sessionkit's table (SQLite, PostgreSQL), and
to sessionkit's redis engine. A staff user (not a superuser: permissions cost
queries) then loads, through Django's test client and the whole middleware
stack:

* the session browser's first page, its 1000th page and one user's sessions
  (``?user=<id>``): median and p95 of ``--runs`` requests, SQL queries, Redis
  round trips, and how many sessions of the population were decoded;
* beside it, on the same rows, the usual snippet: a plain ``ModelAdmin`` on
  stock ``Session`` with ``get_decoded()`` in ``list_display``; requests
  of both alternate, and the ratio is stock / sessionkit.

On PostgreSQL it checks that the unfiltered list counts no table in full
(the total comes from the planner's estimate). The redis engine expires
sessions by TTL: the expired half is written as Redis would leave it when
``clearsessions`` has not run, index entries whose session hash is gone.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import types
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tests.benchmarks import _common as common
from tests.benchmarks._common import Report, progress

#: The run's own PostgreSQL database (and Redis database): never the ones of other runs.
BENCH_DATABASE = "sessionkit_bench_admin"
REDIS_DB = 11
USER_SESSIONS = 10
SESSIONS_PER_USER = 10
PER_PAGE = 100
FAR_PAGE = 1000
LIST_TARGET = 0.150
USER_TARGET = 0.050
QUERY_TARGET = 8
LIST = "/admin/django_sessionkit/session/"
STOCK_LIST = "/stock-admin/sessions/session/"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.admin",
        description="Time the admin's session browser against the usual stock snippet.",
    )
    parser.add_argument("--sessions", type=int, default=1_000_000, help="default 1,000,000")
    parser.add_argument("--db", choices=("sqlite", "postgres", "both", "none"), default="both")
    parser.add_argument("--no-redis", action="store_true", help="skip sessionkit's redis engine")
    parser.add_argument("--runs", type=int, default=20, help="timed requests per figure")
    parser.add_argument("--redis-db", type=int, default=REDIS_DB)
    parser.add_argument("--keep", action="store_true", help="keep the databases and Redis data")
    args = parser.parse_args(argv)
    # The far page: the 1000th, or the last one of a smaller population.
    args.far_page = min(FAR_PAGE, max(args.sessions // PER_PAGE, 1))
    args.databases = {"both": ["sqlite", "postgres"], "none": []}.get(args.db, [args.db])
    return args


# -- the admin on top of the shared benchmark settings ---------------------------------


def install_admin() -> Any:
    """Add the admin to the benchmark's settings; return the URLconf to use."""
    from django.conf import settings
    from django.contrib import admin
    from django.contrib.sessions.models import Session as StockSession
    from django.test.utils import override_settings
    from django.urls import path

    override_settings(
        INSTALLED_APPS=[
            *settings.INSTALLED_APPS,
            "django.contrib.admin",
            "django.contrib.messages",
        ],
        MIDDLEWARE=[
            *common.middleware(common.OUR_MIDDLEWARE),
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ]
                },
            }
        ],
        MESSAGE_STORAGE="django.contrib.messages.storage.cookie.CookieStorage",
    ).enable()

    class SnippetAdmin(admin.ModelAdmin):
        """The usual way to see sessions in the admin."""

        list_display = ["session_key", "decoded", "expire_date"]

        def decoded(self, obj: Any) -> Any:
            return obj.get_decoded()

    stock_site = admin.AdminSite(name="stock_admin")
    stock_site.register(StockSession, SnippetAdmin)
    # A module object works as ROOT_URLCONF; its patterns exist only now that the
    # admin is installed and has discovered sessionkit's ModelAdmin.
    urlconf = types.ModuleType("admin_benchmark_urls")
    urlconf.urlpatterns = [
        path("admin/", admin.site.urls),
        path("stock-admin/", stock_site.urls),
    ]
    override_settings(ROOT_URLCONF=urlconf).enable()
    return urlconf


def migrate(alias: str) -> None:
    from django.core.management import call_command

    with common.use_database(alias):
        call_command("migrate", database=alias, run_syncdb=True, verbosity=0)


def staff_user() -> Any:
    """Create a staff user who may view both session lists (not a superuser)."""
    from django.contrib.auth.models import Permission, User

    user = User.objects.create_user("staff", password="!", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            codename="view_session", content_type__app_label__in=["django_sessionkit", "sessions"]
        )
    )
    return user


@contextmanager
def engine(name: str) -> Iterator[None]:
    from django.test.utils import override_settings

    with override_settings(SESSION_ENGINE=name, SESSION_CACHE_ALIAS=common.SESSION_CACHE):
        yield


# -- population -------------------------------------------------------------------------


@dataclass
class Population:
    size: int
    now: datetime
    target: int = 0

    def rows(self, user_ids: list[int]) -> Iterator[common.SessionRow]:
        """The target's 10 sessions, then the others over the other users, half expired."""
        self.target = user_ids[0]
        yield from common.user_sessions(self.target, USER_SESSIONS, now=self.now)
        yield from common.generate_sessions(
            0,
            self.size - USER_SESSIONS,
            user_ids=user_ids[1:],
            now=self.now,
            expired_share=0.5,
        )

    @property
    def users(self) -> int:
        return max(self.size // SESSIONS_PER_USER, 2)


def populate_database(alias: str, population: Population) -> None:
    with common.use_database(alias):
        progress(f"{alias}: creating {population.users:,} users")
        user_ids = common.create_users(population.users)
        progress(f"{alias}: writing {population.size:,} sessions to both tables")
        common.populate_models(population.rows(user_ids), stock=True, ours=True)
        if alias == common.POSTGRES:
            vacuum(alias)


def vacuum(alias: str) -> None:
    """VACUUM and ANALYZE the session tables after the bulk load, as autovacuum would.

    ANALYZE gives the planner its row estimates; VACUUM sets the visibility
    map, without which no count can be answered from an index alone.
    """
    from django.contrib.sessions.models import Session as StockSession
    from django.db import connections

    from django_sessionkit.models import Session

    with connections[alias].cursor() as cursor:
        for model in (Session, StockSession):
            cursor.execute(f'VACUUM (ANALYZE) "{model._meta.db_table}"')


def populate_redis(population: Population, user_ids: list[int]) -> int:
    """Write the population through our redis engine's save script, in pipelines.

    Live sessions are saved as a request saves them. Expired sessions are saved
    with a TTL of a second, so that Redis drops their hashes while their index
    entries stay, waiting for ``clearsessions``: the state the inventory lists.
    The script is given the oldest moment as its clock so that it prunes none of
    them on the way; activity and creation times are given with each write.
    """
    from django_sessionkit.backends import redis as backend
    from django_sessionkit.backends.base import to_ms
    from django_sessionkit.backends.redis.scripts import Save
    from django_sessionkit.public_id import public_id

    keyspace = backend.Keyspace(common.SESSION_CACHE)
    encode = common.Encoder(backend.SessionStore)
    clock = to_ms(population.now - timedelta(days=60))

    def write(row: Any) -> Save:
        ttl = int((row.expire_date - population.now).total_seconds())
        return Save(
            pid=public_id(row.session_key),
            session_key=row.session_key,
            data=encode(row),
            now=clock,
            ttl=max(ttl, 1),
            expiry=to_ms(row.expire_date),
            user_id=None if row.user_id is None else str(row.user_id),
            metadata=(row.ip, row.user_agent),
            created=to_ms(row.created_at),
            activity=to_ms(row.last_activity),
        )

    written = 0
    for chunk in common.chunked(population.rows(user_ids), common.PIPELINE):
        if any(result != 1 for result in keyspace.create_many(map(write, chunk))):
            raise RuntimeError("the redis engine refused a generated session")
        written += len(chunk)
    return written


# -- measuring -------------------------------------------------------------------------


@dataclass
class Probe:
    """One page load: what it cost besides time."""

    queries: list[str]
    redis_round_trips: int
    decodes: int
    rows: int
    text: str


class DecodeCounter:
    """Count the population's sessions decoded (the staff user's own session is not one)."""

    def __init__(self) -> None:
        self.count = 0

    @contextmanager
    def counting(self) -> Iterator[DecodeCounter]:
        from django.contrib.sessions.backends.base import SessionBase

        from django_sessionkit.backends import redis as backend

        decode, deserialize = SessionBase.decode, backend.SessionStore.deserialize_data
        counter = self

        def counted(data: dict[str, Any]) -> dict[str, Any]:
            # Every generated session holds a language; the staff user's own does not.
            if isinstance(data, dict) and "django_language" in data:
                counter.count += 1
            return data

        # The wrappers keep the parameter names of the methods they stand in for.
        def counted_decode(self: SessionBase, session_data: bytes | str) -> dict[str, Any]:
            return counted(decode(self, session_data))

        def counted_deserialize_data(
            self: backend.SessionStore, raw: bytes | str
        ) -> dict[str, Any]:
            return counted(deserialize(self, raw))

        # method-assign: a deliberate monkeypatch, undone in the finally clause below.
        SessionBase.decode = counted_decode  # type: ignore[method-assign]
        backend.SessionStore.deserialize_data = counted_deserialize_data  # type: ignore[method-assign]
        self.count = 0
        try:
            yield self
        finally:
            SessionBase.decode = decode  # type: ignore[method-assign]
            backend.SessionStore.deserialize_data = deserialize  # type: ignore[method-assign]


def probe(client: Any, alias: str, url: str) -> Probe:
    from django.db import connections
    from django.test.utils import CaptureQueriesContext

    decodes = DecodeCounter()
    with (
        common.use_database(alias),
        CaptureQueriesContext(connections[alias]) as queries,
        common.REDIS_COMMANDS.counting() as redis_log,
        decodes.counting(),
    ):
        response = client.get(url)
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}")
    text = response.content.decode()
    rows = text.count('<th class="field-')
    return Probe(
        queries=[query["sql"] for query in queries.captured_queries],
        redis_round_trips=redis_log.round_trips,
        decodes=decodes.count,
        rows=rows,
        text=text,
    )


def getter(client: Any, alias: str, url: str) -> Callable[[], Any]:
    def get() -> Any:
        with common.use_database(alias):
            response = client.get(url)
        if response.status_code != 200:
            raise RuntimeError(f"{url} answered {response.status_code}")
        return response

    return get


def full_counts(queries: Sequence[str]) -> list[str]:
    """The COUNT queries that count a table without a WHERE clause."""
    return [sql for sql in queries if "COUNT(" in sql.upper() and " WHERE " not in sql.upper()]


def verdict_ms(timing: common.Timing, target: float) -> tuple[str, bool]:
    return (
        f"{common.ms(timing.median)} (p95 {common.ms(timing.p95)})",
        timing.median <= target,
    )


def measure(
    report: Report,
    name: str,
    alias: str,
    client: Any,
    pages: dict[str, str],
    stock_pages: dict[str, str],
    runs: int,
) -> None:
    """Time *pages* of the browser (and *stock_pages* of the snippet, alternating)."""
    for label, url in pages.items():
        first = probe(client, alias, url)
        target = USER_TARGET if label == "one user's sessions" else LIST_TARGET
        operations = {"ours": getter(client, alias, url)}
        stock_url = stock_pages.get(label)
        stock_probe = None
        if stock_url:
            stock_probe = probe(client, alias, stock_url)
            operations["stock"] = getter(client, alias, stock_url)
        timings = common.repeat_interleaved(operations, runs=runs, warmup=2)
        ours = timings["ours"]
        text, met = verdict_ms(ours, target)
        stock_text = ratio = ""
        if stock_probe is not None:
            stock = timings["stock"]
            stock_text = common.ms(stock.median)
            speedup = stock.median / ours.median
            ratio = f"{speedup:,.1f}x faster" if speedup >= 1 else f"{1 / speedup:,.1f}x slower"
        report.add(f"{name}: {label}", text, stock_text, ratio, f"<= {common.ms(target)}", met)
        costs = (
            f"{len(first.queries)} queries, {first.redis_round_trips} Redis round trips, "
            f"{first.decodes} decodes, {first.rows} rows"
        )
        met_costs = len(first.queries) <= QUERY_TARGET and first.decodes <= first.rows
        stock_costs = ""
        if stock_probe is not None:
            stock_costs = f"{len(stock_probe.queries)} queries, {stock_probe.decodes} decodes"
        report.add(
            f"{name}: {label}, cost",
            costs,
            stock_costs,
            "",
            f"<= {QUERY_TARGET} queries, decodes <= rows",
            met_costs,
        )
        if alias == common.POSTGRES and label == "first page":
            counted = full_counts(first.queries)
            report.add(
                f"{name}: first page, COUNT over the whole table",
                "none" if not counted else f"{len(counted)}: {counted[0][:60]}",
                str(len(full_counts(stock_probe.queries))) if stock_probe else "",
                "",
                "none (estimate)",
                not counted,
            )
            if "about" not in first.text:
                report.note(f"{name}: the total shown is exact, not an estimate")


def run_database(
    report: Report, alias: str, population: Population, runs: int, far_page: int
) -> None:
    from django.test import Client

    label = {common.SQLITE: "SQLite", common.POSTGRES: "PostgreSQL"}[alias]
    with common.use_database(alias), engine(common.OUR_DB):
        client = Client()
        client.force_login(staff_user())
    pages = {
        "first page": LIST,
        f"page {far_page}": f"{LIST}?p={far_page}",
        "one user's sessions": f"{LIST}?user={population.target}",
    }
    stock_pages = {
        "first page": STOCK_LIST,
        f"page {far_page}": f"{STOCK_LIST}?p={far_page}",
    }
    progress(f"{label}: timing the pages")
    with engine(common.OUR_DB):
        measure(report, label, alias, client, pages, stock_pages, runs)


def run_redis(report: Report, population: Population, runs: int, far_page: int) -> None:
    from django.contrib.auth.models import User
    from django.test import Client

    alias = common.SQLITE
    with common.use_database(alias):
        # The users of the SQLite run, if there was one: the same ids and sessions.
        user_ids = common.create_users(population.users)
    progress(f"Redis: writing {population.size:,} sessions through the engine's save script")
    started = time.perf_counter()
    populate_redis(population, user_ids)
    progress(f"Redis: written in {common.duration(time.perf_counter() - started)}")
    time.sleep(2)  # the expired half's hashes expire
    with common.use_database(alias), engine(common.OUR_REDIS):
        client = Client()
        staff = User.objects.filter(username="staff").first() or staff_user()
        client.force_login(staff)
        pages = {
            "first page": LIST,
            f"page {far_page}": f"{LIST}?p={far_page}",
            "one user's sessions": f"{LIST}?user={population.target}",
        }
        progress("Redis: timing the pages")
        measure(report, "Redis", alias, client, pages, {}, runs)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    common.BENCH_DATABASE = BENCH_DATABASE
    env = common.setup(args.databases, redis_db=args.redis_db)
    try:
        install_admin()
        for alias in {common.SQLITE, *env.databases}:
            migrate(alias)
        print("\n".join(common.describe_environment(env)))
        print()
        now = common.utcnow()
        population = Population(args.sessions, now)
        report = Report(
            f"Admin session browser, {args.sessions:,} sessions (half expired), "
            f"{args.runs} requests per figure"
        )
        for alias in env.databases:
            started = time.perf_counter()
            populate_database(alias, population)
            progress(f"{alias}: populated in {common.duration(time.perf_counter() - started)}")
            run_database(report, alias, population, args.runs, args.far_page)
        if env.has_redis and not args.no_redis:
            run_redis(report, population, args.runs, args.far_page)
        report.note(
            "median (p95) of requests through the test client and the whole middleware "
            "stack, by a staff user with view permissions; stock = a ModelAdmin on "
            "django.contrib.sessions' Session with get_decoded() in list_display"
        )
        report.note("ratio = stock median / sessionkit median, both timed in alternation")
        print(report.render())
    finally:
        common.teardown(env, keep=args.keep)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
