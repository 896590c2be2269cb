from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import SyncToAsync
from django.conf import settings
from django.core.cache import caches
from django.db import connections

from tests.redis_server import RedisServer


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

    def close() -> None:
        for connection in connections.all(initialized_only=True):
            if connection.vendor == "sqlite" and connection.connection is not None:
                connection.connection.close()
                connection.connection = None

    SyncToAsync.single_thread_executor.submit(close).result()
