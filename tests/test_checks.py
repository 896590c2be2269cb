from __future__ import annotations

import sys

import pytest
from django.contrib.sessions.middleware import SessionMiddleware
from django.core import checks

from django_sessionkit.backends import redis
from django_sessionkit.checks import (
    check_app_order,
    check_middleware,
    check_redis_cache,
    check_settings,
)
from django_sessionkit.middleware import SessionKitMiddleware

STOCK_MIDDLEWARE = "django.contrib.sessions.middleware.SessionMiddleware"
OUR_MIDDLEWARE = "django_sessionkit.middleware.SessionKitMiddleware"
OUR_REDIS = "django_sessionkit.backends.redis"
#: This module is a session engine too: its SessionStore extends ours.
PROJECT_ENGINE = __name__
REDIS_CACHE = "django_redis.cache.RedisCache"


class SessionStore(redis.SessionStore):
    """A project's own store, built on our redis engine."""


class ProjectSessionMiddleware(SessionMiddleware):
    """A project's (or another app's) session middleware."""


class ProjectSessionKitMiddleware(SessionKitMiddleware):
    """A project's subclass of ours."""


def ids(check) -> list[str]:
    return [message.id for message in check(None)]


def w001_ids(**kwargs):
    return [message.id for message in check_app_order(None, **kwargs)]


def test_no_warning_when_listed_before_sessions(settings):
    settings.INSTALLED_APPS = ["django_sessionkit", "django.contrib.sessions"]

    assert w001_ids() == []


def test_w001_when_listed_after_sessions(settings):
    settings.INSTALLED_APPS = ["django.contrib.sessions", "django_sessionkit"]

    [message] = check_app_order(None)

    assert message.id == "sessionkit.W001"
    assert message.level == checks.WARNING
    assert "clearsessions" in str(message.hint)


def test_w001_understands_appconfig_paths(settings):
    settings.INSTALLED_APPS = [
        "django.contrib.sessions.apps.SessionsConfig",
        "django_sessionkit.apps.SessionKitConfig",
    ]

    assert w001_ids() == ["sessionkit.W001"]


def test_no_warning_without_contrib_sessions(settings):
    settings.INSTALLED_APPS = ["django_sessionkit", "django.contrib.auth"]

    assert w001_ids() == []


def test_registered_with_django_checks(settings):
    settings.INSTALLED_APPS = ["django.contrib.sessions", "django_sessionkit"]

    ids = [message.id for message in checks.run_checks(tags=[checks.Tags.compatibility])]

    assert "sessionkit.W001" in ids


def test_test_settings_pass_every_check():
    assert checks.run_checks() == []


@pytest.mark.parametrize("value", ["partial", "", None])
def test_e001_for_an_unknown_store_ip(settings, value):
    settings.SESSIONKIT_STORE_IP = value

    assert [m.id for m in check_settings(None)] == ["sessionkit.E001"]


@pytest.mark.parametrize("name", ["ACTIVITY_INTERVAL", "TRUSTED_PROXY_COUNT"])
@pytest.mark.parametrize("value", [-1, "soon", "60", True, False, 1.0, None])
def test_e002_for_a_bad_number(settings, name, value):
    setattr(settings, f"SESSIONKIT_{name}", value)

    [message] = check_settings(None)

    assert message.id == "sessionkit.E002"
    assert f"SESSIONKIT_{name}" in message.msg
    assert repr(value) in message.msg


@pytest.mark.parametrize("value", ["no", "False", 0, 1, None])
def test_e003_for_a_user_agent_switch_that_is_not_a_bool(settings, value):
    settings.SESSIONKIT_STORE_USER_AGENT = value

    assert ids(check_settings) == ["sessionkit.E003"]


@pytest.mark.parametrize("value", ["password", ["password", 1], ("a", None), {"password"}, 5, None])
def test_e004_for_redaction_patterns_that_are_not_a_list_of_strings(settings, value):
    settings.SESSIONKIT_REDACT = value

    [message] = check_settings(None)

    assert message.id == "sessionkit.E004"
    assert "DEFAULT_REDACT" in message.hint


@pytest.mark.parametrize("value", ["", None, 5, b"sessions"])
def test_e005_for_a_redis_prefix_that_is_not_a_non_empty_string(settings, value):
    settings.SESSIONKIT_REDIS_PREFIX = value

    assert ids(check_settings) == ["sessionkit.E005"]


def test_valid_settings_pass(settings):
    settings.SESSIONKIT_STORE_IP = "truncated"
    settings.SESSIONKIT_ACTIVITY_INTERVAL = 0
    settings.SESSIONKIT_TRUSTED_PROXY_COUNT = 2
    settings.SESSIONKIT_STORE_USER_AGENT = False
    settings.SESSIONKIT_REDACT = []
    settings.SESSIONKIT_REDIS_PREFIX = "sk"
    assert check_settings(None) == []

    settings.SESSIONKIT_REDACT = ("iban", "")
    assert check_settings(None) == []


def test_w002_when_our_engine_lacks_our_middleware(settings):
    settings.SESSION_ENGINE = "django_sessionkit.backends.db"
    settings.MIDDLEWARE = ["django.contrib.sessions.middleware.SessionMiddleware"]

    [message] = check_middleware(None)

    assert message.id == "sessionkit.W002"


def test_w002_matches_our_engines_and_middleware_by_class(settings):
    settings.SESSION_ENGINE = PROJECT_ENGINE
    settings.MIDDLEWARE = [STOCK_MIDDLEWARE]
    assert ids(check_middleware) == ["sessionkit.W002"]

    settings.MIDDLEWARE = [f"{__name__}.ProjectSessionKitMiddleware"]
    assert ids(check_middleware) == []


def test_no_w002_with_our_middleware_or_a_stock_engine(settings):
    settings.SESSION_ENGINE = "django_sessionkit.backends.redis"
    settings.MIDDLEWARE = ["django_sessionkit.middleware.SessionKitMiddleware"]
    assert check_middleware(None) == []

    settings.SESSION_ENGINE = "django.contrib.sessions.backends.db"
    settings.MIDDLEWARE = ["django.contrib.sessions.middleware.SessionMiddleware"]
    assert check_middleware(None) == []


# -- two session middlewares ----------------------------------------------------------


@pytest.mark.parametrize(
    "middleware",
    [
        [STOCK_MIDDLEWARE, OUR_MIDDLEWARE],
        [OUR_MIDDLEWARE, f"{__name__}.ProjectSessionMiddleware"],
        [f"{__name__}.ProjectSessionKitMiddleware", STOCK_MIDDLEWARE],
        [OUR_MIDDLEWARE, OUR_MIDDLEWARE],
    ],
)
def test_e006_for_two_session_middlewares(settings, middleware):
    settings.SESSION_ENGINE = "django_sessionkit.backends.db"
    settings.MIDDLEWARE = [
        "django.middleware.security.SecurityMiddleware",
        *middleware,
        "django.middleware.common.CommonMiddleware",
    ]

    [message] = check_middleware(None)

    assert message.id == "sessionkit.E006"
    assert message.level == checks.ERROR
    for entry in middleware:
        assert repr(entry) in message.msg


def test_one_session_middleware_and_unimportable_entries_pass(settings):
    settings.SESSION_ENGINE = "django_sessionkit.backends.db"
    settings.MIDDLEWARE = [OUR_MIDDLEWARE, "no.such.Middleware"]

    assert check_middleware(None) == []


# -- the redis engine's cache --------------------------------------------------------


@pytest.fixture
def redis_engine(settings):
    settings.SESSION_ENGINE = OUR_REDIS
    settings.SESSION_CACHE_ALIAS = "sessions"

    def use(backend: str = REDIS_CACHE, **options: str) -> None:
        settings.CACHES = {
            **settings.CACHES,
            "sessions": {"BACKEND": backend, "LOCATION": settings.REDIS_URL, "OPTIONS": options},
        }

    return use


def test_our_redis_engine_on_django_redis_passes(redis_engine):
    redis_engine()

    assert check_redis_cache(None) == []


@pytest.mark.parametrize(
    "backend",
    [
        "django.core.cache.backends.locmem.LocMemCache",
        "django.core.cache.backends.redis.RedisCache",
        "no.such.Cache",
    ],
)
@pytest.mark.parametrize("engine", [OUR_REDIS, PROJECT_ENGINE])
def test_e007_for_a_cache_that_is_not_django_redis(settings, redis_engine, backend, engine):
    redis_engine(backend)
    settings.SESSION_ENGINE = engine

    [message] = check_redis_cache(None)

    assert message.id == "sessionkit.E007"
    assert message.level == checks.ERROR
    assert repr(backend) in message.msg
    assert REDIS_CACHE in message.hint


def test_e007_for_a_cache_alias_missing_from_caches(settings, redis_engine):
    settings.SESSION_CACHE_ALIAS = "nowhere"

    [message] = check_redis_cache(None)

    assert message.id == "sessionkit.E007"
    assert "'nowhere' is not in CACHES" in message.msg


def test_e007_when_django_redis_is_not_installed(settings, monkeypatch):
    settings.SESSION_ENGINE = OUR_REDIS
    # What an installation without django-redis looks like to an import.
    for name in [name for name in sys.modules if name.partition(".")[0] == "django_redis"]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "django_redis", None)
    monkeypatch.delitem(sys.modules, OUR_REDIS)

    [message] = check_redis_cache(None)

    assert message.id == "sessionkit.E007"
    assert "django-redis is not installed" in message.msg
    assert "pip install 'django-sessionkit[redis]'" in message.hint


def test_no_e007_for_other_engines_or_their_import_errors(settings):
    settings.SESSION_CACHE_ALIAS = "default"  # locmem: fine for Django's cache engine
    for engine in ("django.contrib.sessions.backends.cache", "django_sessionkit.backends.db"):
        settings.SESSION_ENGINE = engine
        assert check_redis_cache(None) == []
    settings.SESSION_ENGINE = "no.such.engine"
    assert check_redis_cache(None) == []


def test_e008_for_django_redis_sharded_client(redis_engine):
    redis_engine(CLIENT_CLASS="django_redis.client.ShardClient")

    [message] = check_redis_cache(None)

    assert message.id == "sessionkit.E008"
    assert "sharded client" in message.msg
    assert "one Lua script" in message.hint
    assert "different servers" in message.hint


@pytest.mark.parametrize(
    "client", ["django_redis.client.DefaultClient", "django_redis.client.HerdClient"]
)
def test_the_default_and_herd_clients_pass(redis_engine, client):
    redis_engine(CLIENT_CLASS=client)

    assert check_redis_cache(None) == []


def test_new_checks_are_registered_with_django(settings, redis_engine):
    redis_engine("django.core.cache.backends.locmem.LocMemCache")
    settings.MIDDLEWARE = [STOCK_MIDDLEWARE, OUR_MIDDLEWARE]
    settings.SESSIONKIT_STORE_USER_AGENT = "no"
    settings.SESSIONKIT_REDACT = "password"
    settings.SESSIONKIT_REDIS_PREFIX = ""

    found = {message.id for message in checks.run_checks()}

    assert {f"sessionkit.E00{n}" for n in range(3, 8)} <= found
