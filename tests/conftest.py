from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from importlib import import_module
from typing import Any

import pytest
from asgiref.sync import SyncToAsync
from django.conf import settings
from django.core.cache import caches
from django.db import connections

from tests.engines import close_thread_connections, use_sessionkit_middleware
from tests.redis_server import RedisServer, private_server


@pytest.fixture(scope="session", autouse=True)
def redis_server() -> Iterator[RedisServer]:
    """Provide the real Redis server of this run, starting a private one when needed."""
    server: RedisServer = settings.REDIS
    started = server.needs_start
    if started:
        server.start()
    yield server
    if started:
        server.stop()


@pytest.fixture
def redis_cache(redis_server: RedisServer) -> Iterator[Any]:
    """The django-redis cache of the test settings, emptied before and after the test."""
    cache = caches["redis"]
    cache.clear()
    yield cache
    cache.clear()


@pytest.fixture(autouse=True)
def _close_async_connections() -> Iterator[None]:
    """Close the connections that async tests opened in asgiref's worker thread.

    Left open, they keep PostgreSQL from dropping the test database.
    """
    yield
    SyncToAsync.single_thread_executor.submit(connections.close_all).result()


@pytest.fixture(scope="session", autouse=True)
def _close_async_memory_database() -> Iterator[None]:
    """At the end of the run, close asgiref's worker thread's handle on an in-memory database.

    Django ignores ``close()`` on an in-memory SQLite database, since closing it
    drops it, so the handle would be left to the garbage collector at exit, which
    Python 3.13 reports with a ResourceWarning.
    """
    yield
    SyncToAsync.single_thread_executor.submit(close_thread_connections).result()


@pytest.fixture
def session_dir(settings: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Django's file engine keeps its sessions in a directory of this test's own."""
    from django.contrib.sessions.backends.file import SessionStore as FileStore

    settings.SESSION_FILE_PATH = str(tmp_path)
    # The engine caches its directory on the class the first time it is used.
    monkeypatch.setattr(FileStore, "_storage_path", str(tmp_path), raising=False)
    return tmp_path


@pytest.fixture
def private_redis(settings: Any) -> Iterator[Callable[..., RedisServer]]:
    """Return a function that starts a Redis server of the test's own behind a cache alias.

    ``private_redis(alias, **options)`` starts the server, adds a django-redis
    cache *alias* on it (with *options* as its ``OPTIONS``) and makes it
    ``SESSION_CACHE_ALIAS``; the test may stop or pause the server. Every
    server started is stopped (and resumed first, if paused) after the test.
    """
    started: list[RedisServer] = []

    def start(alias: str, **options: Any) -> RedisServer:
        server = private_server()
        server.start()
        started.append(server)
        cache = {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": server.url}
        settings.CACHES = {**settings.CACHES, alias: {**cache, "OPTIONS": options}}
        settings.SESSION_CACHE_ALIAS = alias
        return server

    yield start
    for server in started:
        if server.process is not None:
            server.process.send_signal(signal.SIGCONT)
        server.stop()


@pytest.fixture
def use_engine(request: pytest.FixtureRequest, settings: Any) -> Callable[[str], str]:
    """Return a function that puts the site on a session engine for the test.

    It makes the engine ``SESSION_ENGINE`` behind ``SessionKitMiddleware``, on
    the run's Redis cache (emptied) for the engines that use a cache, and a
    directory of the test's own for Django's file engine.
    """

    def use(engine: str) -> str:
        settings.SESSION_ENGINE = engine
        settings.SESSION_CACHE_ALIAS = "redis"
        use_sessionkit_middleware(settings)
        if "cache" in engine or "redis" in engine:
            request.getfixturevalue("redis_cache")
        if engine.endswith(".file"):
            request.getfixturevalue("session_dir")
        return engine

    return use


# -- the session contract (tests/session_behaviour.py) --------------------------------


@pytest.fixture
def session_storage(transactional_db: None) -> None:
    """Hook: make the engine's storage available and empty for one test.

    The default is the database, in transactional mode because the async
    tests reach it from another thread.
    """


@pytest.fixture
def store_class(engine: str, session_storage: None, settings: Any) -> Iterator[Any]:
    """The ``SessionStore`` of the engine under test, with SESSION_ENGINE pointing at it."""
    settings.SESSION_ENGINE = engine
    yield import_module(engine).SessionStore
    SyncToAsync.single_thread_executor.submit(connections.close_all).result()
