"""Test settings: SQLite unless DATABASE_URL is set; Redis from REDIS_URL or found."""

from __future__ import annotations

import os
import uuid

import dj_database_url

from tests import redis_server

BASE_DIR = os.path.dirname(os.path.abspath(__file__))

SECRET_KEY = "sessionkit-tests-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
USE_TZ = True
TIME_ZONE = "UTC"

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", "sqlite:///" + os.path.join(BASE_DIR, "test.sqlite3"))
    )
}

REDIS = redis_server.locate()
REDIS_URL = REDIS.url
# A prefix of its own for each test run (inherited by the processes it starts),
# so that runs sharing one Redis server, such as parallel tox environments, never
# see or clear each other's keys.
REDIS_KEY_PREFIX = os.environ.setdefault(
    "SESSIONKIT_TEST_REDIS_PREFIX", f"sessionkit-tests-{uuid.uuid4().hex[:12]}"
)

CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "redis": {
        "BACKEND": "tests.cache.RunScopedRedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": REDIS_KEY_PREFIX,
    },
}

INSTALLED_APPS = [
    "django_sessionkit",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # A custom session model that another model points to (test_inventory_model_batches).
    "tests.custom_session",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "tests.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

STATIC_URL = "/static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
