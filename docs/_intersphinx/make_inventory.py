"""Write the small intersphinx inventories that the docs build reads offline.

The docs link to Django's and Python's documentation through intersphinx.
Fetching their full ``objects.inv`` at build time would make a build without
network access fail (warnings are errors), so the build reads these local
inventories instead. They list only the objects our pages refer to, each with
its real address on the upstream site.

Add an entry here when a page links to a new Django or Python object, then run::

    python docs/_intersphinx/make_inventory.py

and commit the regenerated ``.inv`` files with the script.
"""

from __future__ import annotations

import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Each entry is (name, domain:type, uri, display name). In a uri, "$" stands
# for the name; a display name of "-" means the name itself.
Entry = tuple[str, str, str, str]

SETTINGS = "ref/settings/#std-setting-$"
COMMANDS = "ref/django-admin/#django-admin-$"
SESSIONS = "topics/http/sessions/#$"
AUTH = "topics/auth/default/#$"
DECORATORS = "topics/http/decorators/#$"
UTILS = "ref/utils/#$"

DJANGO_SETTINGS = [
    "AUTH_USER_MODEL",
    "CACHES",
    "DATABASES",
    "INSTALLED_APPS",
    "LOGIN_URL",
    "MIDDLEWARE",
    "SECRET_KEY",
    "SECRET_KEY_FALLBACKS",
    "SESSION_CACHE_ALIAS",
    "SESSION_COOKIE_AGE",
    "SESSION_COOKIE_HTTPONLY",
    "SESSION_COOKIE_SECURE",
    "SESSION_ENGINE",
    "SESSION_EXPIRE_AT_BROWSER_CLOSE",
    "SESSION_SAVE_EVERY_REQUEST",
    "SESSION_SERIALIZER",
    "SILENCED_SYSTEM_CHECKS",
]

DJANGO_COMMANDS = ["check", "clearsessions", "createsuperuser", "migrate", "runserver", "shell"]

DJANGO_PAGES = [
    ("topics/http/sessions", "How to use sessions"),
    ("topics/auth/default", "Using the Django authentication system"),
    ("topics/checks", "System check framework"),
    ("topics/security", "Security in Django"),
    ("ref/csrf", "Cross Site Request Forgery protection"),
    ("ref/settings", "Settings"),
    ("ref/contrib/admin/index", "The Django admin site"),
]

DJANGO_LABELS = [
    (
        "browser-length-vs-persistent-sessions",
        "topics/http/sessions/",
        "Browser-length sessions vs. persistent sessions",
    ),
    ("clearing-the-session-store", "topics/http/sessions/", "Clearing the session store"),
    ("topics-session-security", "topics/http/sessions/", "Session security"),
    (
        "extending-database-backed-session-engines",
        "topics/http/sessions/",
        "Extending database-backed session engines",
    ),
    ("settings-sessions", "ref/settings/", "Sessions"),
    (
        "session-invalidation-on-password-change",
        "topics/auth/default/",
        "Session invalidation on password change",
    ),
]

SESSION_BASE = "django.contrib.sessions.backends.base.SessionBase"
SESSION_BASE_METHODS = [
    "cycle_key",
    "acycle_key",
    "flush",
    "aflush",
    "set_test_cookie",
    "test_cookie_worked",
    "delete_test_cookie",
    "set_expiry",
    "get_expiry_age",
    "get_expiry_date",
    "get_expire_at_browser_close",
    "get_session_cookie_age",
    "clear_expired",
]
BASE_SESSION = "django.contrib.sessions.base_session.AbstractBaseSession"
DB_STORE = "django.contrib.sessions.backends.db.SessionStore"

DJANGO_PYTHON = [
    ("django.contrib.auth", "py:module", "topics/auth/#module-$"),
    ("django.contrib.sessions", "py:module", "topics/http/sessions/#module-$"),
    (SESSION_BASE, "py:class", SESSIONS),
    *[(f"{SESSION_BASE}.{name}", "py:method", SESSIONS) for name in SESSION_BASE_METHODS],
    (BASE_SESSION, "py:class", SESSIONS),
    (f"{BASE_SESSION}.get_session_store_class", "py:classmethod", SESSIONS),
    (f"{BASE_SESSION}.get_decoded", "py:method", SESSIONS),
    (DB_STORE, "py:class", SESSIONS),
    (f"{DB_STORE}.get_model_class", "py:classmethod", SESSIONS),
    (f"{DB_STORE}.create_model_instance", "py:method", SESSIONS),
    ("django.contrib.sessions.middleware.SessionMiddleware", "py:class", "ref/middleware/#$"),
    ("django.contrib.auth.login", "py:function", AUTH),
    ("django.contrib.auth.logout", "py:function", AUTH),
    ("django.contrib.auth.views.LoginView", "py:class", AUTH),
    ("django.contrib.auth.views.LogoutView", "py:class", AUTH),
    ("django.core.management.CommandError", "py:exception", "howto/custom-management-commands/#$"),
    ("django.utils.html.escape", "py:function", UTILS),
    ("django.utils.html.format_html", "py:function", UTILS),
    ("django.utils.html.format_html_join", "py:function", UTILS),
    ("django.views.decorators.cache.never_cache", "py:function", DECORATORS),
    ("django.views.decorators.http.require_POST", "py:function", DECORATORS),
    ("django.views.decorators.http.require_http_methods", "py:function", DECORATORS),
]

DJANGO: list[Entry] = [
    *[(name, "std:setting", SETTINGS, "-") for name in DJANGO_SETTINGS],
    *[(name, "std:django-admin", COMMANDS, "-") for name in DJANGO_COMMANDS],
    ("csrf_token", "std:templatetag", "ref/templates/builtins/#std-templatetag-$", "-"),
    *[(page, "std:doc", page.removesuffix("/index") + "/", title) for page, title in DJANGO_PAGES],
    *[(label, "std:label", page + "#$", title) for label, page, title in DJANGO_LABELS],
    *[(name, role, uri, "-") for name, role, uri in DJANGO_PYTHON],
]

PYTHON: list[Entry] = [
    ("ValueError", "py:exception", "library/exceptions.html#$", "-"),
    ("hmac.compare_digest", "py:function", "library/hmac.html#$", "-"),
    ("secrets.compare_digest", "py:function", "library/secrets.html#$", "-"),
]


def write_inventory(path: Path, project: str, version: str, entries: list[Entry]) -> None:
    """Write *entries* as a Sphinx version 2 inventory at *path*."""
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n"
        f"# Version: {version}\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    lines = []
    for name, role, uri, display in sorted(entries, key=lambda entry: (entry[1], entry[0])):
        priority = "-1" if role in ("std:doc", "std:label") else "1"
        lines.append(f"{name} {role} {priority} {uri} {display}\n")
    path.write_bytes(header.encode() + zlib.compress("".join(lines).encode(), 9))


def main() -> None:
    write_inventory(HERE / "django.inv", "Django", "stable", DJANGO)
    write_inventory(HERE / "python.inv", "Python", "3", PYTHON)


if __name__ == "__main__":
    main()
