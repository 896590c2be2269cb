"""System checks. Each id is listed in the docs' checks page."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

SESSIONS_APP = "django.contrib.sessions"
OUR_APP = "django_sessionkit"


def _app_position(installed: list[str], name: str) -> int | None:
    for position, entry in enumerate(installed):
        # An entry is a module path or the dotted path of an AppConfig class.
        if entry == name or entry.startswith(name + ".apps."):
            return position
    return None


def check_app_order(
    app_configs: Sequence[AppConfig] | None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Warn when django.contrib.sessions would shadow our clearsessions."""
    installed = list(settings.INSTALLED_APPS)
    ours = _app_position(installed, OUR_APP)
    sessions = _app_position(installed, SESSIONS_APP)
    if ours is None or sessions is None or ours < sessions:
        return []
    return [
        Warning(
            f"'{OUR_APP}' is listed after '{SESSIONS_APP}' in INSTALLED_APPS.",
            hint=(
                f"Django runs the management command of the app listed first, so "
                f"'clearsessions' is Django's own. Move '{OUR_APP}' above "
                f"'{SESSIONS_APP}'."
            ),
            id="sessionkit.W001",
        )
    ]


STORE_IP_CHOICES = ("full", "truncated", "none")
OUR_MIDDLEWARE = "django_sessionkit.middleware.SessionKitMiddleware"
OUR_REDIS_ENGINE = "django_sessionkit.backends.redis"
REDIS_CACHE = "django_redis.cache.RedisCache"
#: django-redis's own default for OPTIONS["CLIENT_CLASS"].
DEFAULT_CLIENT = "django_redis.client.DefaultClient"


def _import(path: str) -> Any:
    """Return the object at the dotted *path*, or None when it cannot be imported."""
    try:
        return import_string(path)
    except (ImportError, ImproperlyConfigured):
        return None


def _extends(candidate: Any, base: type) -> bool:
    return isinstance(candidate, type) and issubclass(candidate, base)


def check_settings(
    app_configs: Sequence[AppConfig] | None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Reject SESSIONKIT_* values of the wrong type or out of range."""
    from django_sessionkit.conf import conf, is_whole_number

    errors: list[CheckMessage] = []
    if conf.SESSIONKIT_STORE_IP not in STORE_IP_CHOICES:
        errors.append(
            Error(
                f"SESSIONKIT_STORE_IP is {conf.SESSIONKIT_STORE_IP!r}.",
                hint=f"Use one of {', '.join(repr(c) for c in STORE_IP_CHOICES)}.",
                id="sessionkit.E001",
            )
        )
    for name in ("SESSIONKIT_ACTIVITY_INTERVAL", "SESSIONKIT_TRUSTED_PROXY_COUNT"):
        value = getattr(conf, name)
        if not is_whole_number(value):
            errors.append(
                Error(
                    f"{name} must be a whole number of zero or more, not {value!r}.",
                    id="sessionkit.E002",
                )
            )
    if not isinstance(conf.SESSIONKIT_STORE_USER_AGENT, bool):
        errors.append(
            Error(
                f"SESSIONKIT_STORE_USER_AGENT must be True or False, not "
                f"{conf.SESSIONKIT_STORE_USER_AGENT!r}.",
                id="sessionkit.E003",
            )
        )
    redact = conf.SESSIONKIT_REDACT
    if not isinstance(redact, (list, tuple)) or not all(isinstance(p, str) for p in redact):
        errors.append(
            Error(
                f"SESSIONKIT_REDACT must be a list or tuple of strings, not {redact!r}.",
                hint=(
                    "For example [*DEFAULT_REDACT, 'iban'], with DEFAULT_REDACT imported from "
                    "django_sessionkit.conf; a single pattern is ['iban'], not 'iban'."
                ),
                id="sessionkit.E004",
            )
        )
    if not isinstance(conf.SESSIONKIT_REDIS_PREFIX, str) or not conf.SESSIONKIT_REDIS_PREFIX:
        errors.append(
            Error(
                f"SESSIONKIT_REDIS_PREFIX must be a non-empty string, not "
                f"{conf.SESSIONKIT_REDIS_PREFIX!r}.",
                id="sessionkit.E005",
            )
        )
    return errors


def check_middleware(
    app_configs: Sequence[AppConfig] | None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Reject two session middlewares; warn when our engine lacks ours."""
    from django.contrib.sessions.middleware import SessionMiddleware

    from django_sessionkit.backends.base import SessionKitStore
    from django_sessionkit.middleware import SessionKitMiddleware

    found = [(entry, _import(entry)) for entry in settings.MIDDLEWARE]
    session_middlewares = [entry for entry, cls in found if _extends(cls, SessionMiddleware)]
    messages: list[CheckMessage] = []
    if len(session_middlewares) > 1:
        messages.append(
            Error(
                f"MIDDLEWARE holds {len(session_middlewares)} session middlewares: "
                f"{', '.join(repr(entry) for entry in session_middlewares)}.",
                hint=(
                    f"Both save the session, so every change is written twice, and what "
                    f"they save may lack the IP address and user agent that "
                    f"SessionKitMiddleware recorded. Keep one: '{OUR_MIDDLEWARE}' replaces "
                    f"'{SESSIONS_APP}.middleware.SessionMiddleware'."
                ),
                id="sessionkit.E006",
            )
        )
    ours = any(_extends(cls, SessionKitMiddleware) for _, cls in found)
    store = _import(f"{settings.SESSION_ENGINE}.SessionStore")
    if _extends(store, SessionKitStore) and not ours:
        messages.append(
            Warning(
                f"SESSION_ENGINE is {settings.SESSION_ENGINE!r} but '{OUR_MIDDLEWARE}' is "
                f"not in MIDDLEWARE.",
                hint=(
                    f"Replace '{SESSIONS_APP}.middleware.SessionMiddleware' with it, or "
                    f"sessions will record no IP address, user agent or activity."
                ),
                id="sessionkit.W002",
            )
        )
    return messages


def _missing_module(exc: BaseException) -> str | None:
    """Return the name of the module whose absence caused *exc*, if one did."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ImportError) and cause.name:
            return cause.name
        cause = cause.__cause__ or cause.__context__
    return None


def check_redis_cache(
    app_configs: Sequence[AppConfig] | None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Reject a cache our redis engine cannot store sessions in."""
    engine = settings.SESSION_ENGINE
    try:
        store = import_string(f"{engine}.SessionStore")
    except (ImportError, ImproperlyConfigured) as exc:
        missing = _missing_module(exc) or ""
        if missing.partition(".")[0] not in ("django_redis", "redis"):
            return []  # not ours to say; Django reports it at the first request
        return [
            Error(
                f"SESSION_ENGINE is {engine!r}, which needs django-redis, but django-redis "
                f"is not installed.",
                hint="Install it: pip install 'django-sessionkit[redis]'.",
                id="sessionkit.E007",
            )
        ]
    from django_sessionkit.inventory import extends

    if not isinstance(store, type) or not extends(store, OUR_REDIS_ENGINE):
        return []
    from django_redis.cache import RedisCache
    from django_redis.client import ShardClient

    alias = settings.SESSION_CACHE_ALIAS
    needed = (
        f"{OUR_REDIS_ENGINE} stores sessions through django-redis: point SESSION_CACHE_ALIAS "
        f"at a cache whose BACKEND is '{REDIS_CACHE}'."
    )
    config: dict[str, Any] | None = settings.CACHES.get(alias)
    if config is None:
        return [
            Error(
                f"SESSION_ENGINE is {engine!r}, but SESSION_CACHE_ALIAS {alias!r} is not "
                f"in CACHES.",
                hint=needed,
                id="sessionkit.E007",
            )
        ]
    backend = config.get("BACKEND", "")
    if not _extends(_import(backend), RedisCache):
        return [
            Error(
                f"SESSION_ENGINE is {engine!r}, but the cache {alias!r} "
                f"(SESSION_CACHE_ALIAS) is {backend!r}, not django-redis.",
                hint=needed,
                id="sessionkit.E007",
            )
        ]
    client = config.get("OPTIONS", {}).get("CLIENT_CLASS", DEFAULT_CLIENT)
    if _extends(_import(client), ShardClient):
        return [
            Error(
                f"SESSION_ENGINE is {engine!r}, but the cache {alias!r} uses django-redis's "
                f"sharded client ({client!r}), which {OUR_REDIS_ENGINE} does not support.",
                hint=(
                    "Every write of a session changes the session's hash and its index "
                    "entries in one Lua script, atomically, and the sharded client puts "
                    "keys on different servers by key, where one script cannot reach them "
                    "all. Keep sessions in a cache on one server, with django-redis's default "
                    "or herd client."
                ),
                id="sessionkit.E008",
            )
        ]
    return []
