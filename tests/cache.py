"""The test suite's django-redis cache: a real Redis, cleared by prefix."""

from __future__ import annotations

from typing import Any

from django_redis.cache import RedisCache


class RunScopedRedisCache(RedisCache):
    """django-redis, whose ``clear()`` deletes only this test run's keys.

    django-redis clears with FLUSHDB, which would also wipe the keys of other
    test runs sharing the server (parallel tox environments do).
    """

    def clear(self, *args: Any, **kwargs: Any) -> None:
        self.delete_pattern("*")
