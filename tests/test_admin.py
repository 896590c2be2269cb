from __future__ import annotations

import re
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from html import unescape
from importlib import import_module
from typing import Any

import pytest
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import Permission, User
from django.contrib.sessions.backends.base import SessionBase
from django.db import connection
from django.test import Client
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from django_sessionkit.admin import PublicId
from django_sessionkit.backends.base import RequestMetadata, SessionKitStore
from django_sessionkit.inventory import get_inventory
from django_sessionkit.models import Session
from django_sessionkit.public_id import public_id
from django_sessionkit.redaction import MASK

pytestmark = pytest.mark.django_db

OUR_DB = "django_sessionkit.backends.db"
OUR_CACHED_DB = "django_sessionkit.backends.cached_db"
OUR_REDIS = "django_sessionkit.backends.redis"
STOCK_DB = "django.contrib.sessions.backends.db"
STOCK_CACHED_DB = "django.contrib.sessions.backends.cached_db"
STOCK_CACHE = "django.contrib.sessions.backends.cache"
STOCK_FILE = "django.contrib.sessions.backends.file"
SIGNED_COOKIES = "django.contrib.sessions.backends.signed_cookies"
ENGINES = [OUR_DB, OUR_CACHED_DB, OUR_REDIS, STOCK_DB, STOCK_CACHED_DB, STOCK_CACHE, STOCK_FILE]
ON_REDIS = {OUR_CACHED_DB, OUR_REDIS, STOCK_CACHED_DB, STOCK_CACHE}
#: Engines whose sessions carry IP, user agent and activity.
WITH_METADATA = {OUR_DB, OUR_CACHED_DB, OUR_REDIS}

LIST = "/admin/django_sessionkit/session/"
UA_FIREFOX = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
UA_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
)
SECRET_DATA = {
    "password": "rootpass",
    "api_key": "x",
    "nested": {"token": "y", "visible": "shown-value"},
    "oauth": [{"access_token": "sentinel-oauth-token"}],
    "cart": ["book"],
}
SECRET_VALUES = ("rootpass", "sentinel-oauth-token")
NOON = datetime(2030, 6, 1, 12, 0, tzinfo=dt_timezone.utc)


# -- set-up -----------------------------------------------------------------------


@pytest.fixture(params=ENGINES)
def engine(request, use_engine, db):
    return use_engine(request.param)


@pytest.fixture
def our_db(use_engine, db):
    return use_engine(OUR_DB)


def make_session(
    data: dict[str, Any] | None = None,
    *,
    user: User | None = None,
    ip: str | None = "203.0.113.5",
    user_agent: str = UA_FIREFOX,
    expiry: Any = None,
) -> str:
    """Store a session through the engine in use, as a request from *ip* would; return its key."""
    from django.conf import settings

    store = import_module(settings.SESSION_ENGINE).SessionStore()
    if isinstance(store, SessionKitStore):
        store.set_request_metadata(RequestMetadata(ip, user_agent))
    store.update(data or {})
    if user is not None:
        store[SESSION_KEY] = str(user.pk)
        store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    if expiry is not None:
        store.set_expiry(expiry)
    store.save()
    return store.session_key


def exists(session_key: str) -> bool:
    from django.conf import settings

    return import_module(settings.SESSION_ENGINE).SessionStore().exists(session_key)


def bulk_sessions(count: int, *, now: datetime | None = None, **fields: Any) -> list[str]:
    """Insert *count* rows in sessionkit's table directly (fast); return their keys.

    Each holds ``{"n": number}``, so a test can tell its decodes from others.
    """
    now = now or timezone.now()
    encoder = import_module(OUR_DB).SessionStore()
    rows = []
    for number in range(count):
        key = f"bulk{number:06d}".ljust(32, "k")
        values = {
            "expire_date": now + timedelta(days=1),
            "last_activity": now - timedelta(minutes=number),
            "ip": "198.51.100.7",
            "user_agent": UA_FIREFOX,
            **fields,
        }
        rows.append(
            Session(
                session_key=key,
                session_data=encoder.encode({"n": number}),
                public_id=public_id(key),
                **values,
            )
        )
    Session.objects.bulk_create(rows)
    return [row.session_key for row in rows]


def row(name: str, **fields: Any) -> str:
    """Insert one row in sessionkit's table with *fields*; return its key."""
    key = name.ljust(32, "r")
    Session.objects.create(session_key=key, session_data="", public_id=public_id(key), **fields)
    return key


def analyze() -> None:
    """Have PostgreSQL gather the table's statistics, as autovacuum does on a live site.

    Until then its row estimate is unknown and counting costs one more query.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE sessionkit_session")


def staff(username: str, *perms: str) -> User:
    user = User.objects.create_user(username, f"{username}@example.com", "pw", is_staff=True)
    for codename in perms:
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label="django_sessionkit", codename=codename)
        )
    return user


def client_for(user: User, **options: Any) -> Client:
    client = Client(**options)
    client.force_login(user)
    return client


@pytest.fixture
def superuser(db):
    return User.objects.create_superuser("root", "root@example.com", "pw")


@pytest.fixture
def alice(db):
    return User.objects.create_user("alice", "alice@example.com", "pw")


@pytest.fixture
def bob(db):
    return User.objects.create_user("bob", "bob@example.net", "pw")


def detail(pid: str) -> str:
    return reverse("admin:django_sessionkit_session_change", args=[PublicId(pid)])


def revoke(pid: str) -> str:
    return reverse("admin:django_sessionkit_session_delete", args=[PublicId(pid)])


def revoke_user(user: User) -> str:
    return reverse("admin:django_sessionkit_session_user", args=[str(user.pk)])


def short(key: str) -> str:
    return public_id(key)[:12]


def html(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def csrf_token(page: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert match, "no CSRF token on the page"
    return match.group(1)


def paginator(page: str) -> tuple[list[int], int | None]:
    """Return the page numbers the paginator links to, and the current one.

    The paginator is the admin's own (a ``<p>`` up to Django 5.2, a ``<nav>``
    with a list since 6.0).
    """
    match = re.search(r'<(p|nav) class="paginator".*?</\1>', page, re.S)
    assert match, "no paginator"
    html_ = match.group(0)
    links = [int(n) for n in re.findall(r'href="\?(?:[^"]*&amp;)?p=(\d+)"', html_)]
    current = re.search(r'<span class="this-page">(\d+)</span>|aria-current="page">(\d+)<', html_)
    return links, int(next(filter(None, current.groups()))) if current else None


def listed(page: str) -> list[str]:
    """Return the short public ids in the list, in order."""
    return re.findall(r'<th class="field-public_id"><a [^>]*><code>([0-9a-f]+)</code>', page)


# -- permissions ------------------------------------------------------------------------


def test_anonymous_gets_the_admin_login(our_db, client, alice):
    key = make_session(user=alice)
    for url in (LIST, detail(public_id(key)), revoke(public_id(key)), revoke_user(alice)):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/?next=")
    response = client.post(revoke(public_id(key)), {"post": "yes"})
    assert response.status_code == 302
    assert exists(key)


def test_non_staff_gets_the_admin_login(our_db, alice):
    client = client_for(alice)

    response = client.get(LIST)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_staff_without_view_permission_is_forbidden(our_db, alice):
    key = make_session(user=alice)
    client = client_for(staff("clerk"))
    pid = public_id(key)

    for url in (LIST, detail(pid), revoke(pid), revoke_user(alice)):
        assert client.get(url).status_code == 403
    assert (
        client.post(LIST, {"action": "revoke_selected", "_selected_action": [pid]}).status_code
        == 403
    )
    assert client.post(revoke(pid), {"post": "yes"}).status_code == 403
    assert exists(key)
    index = html(client.get("/admin/"))
    assert LIST not in index


def test_view_only_sees_list_and_detail_but_cannot_revoke(our_db, alice):
    key = make_session(SECRET_DATA, user=alice)
    pid = public_id(key)
    client = client_for(staff("viewer", "view_session"))

    page = html(client.get(LIST))
    assert short(key) in listed(page)
    assert 'name="_selected_action"' not in page
    assert "Revoke" not in page
    page = html(client.get(detail(pid)))
    assert "alice" in page
    assert revoke(pid) not in page
    assert revoke_user(alice) not in page
    assert LIST in html(client.get("/admin/"))

    assert (
        client.post(LIST, {"action": "revoke_selected", "_selected_action": [pid]}).status_code
        == 403
    )
    assert (
        client.post(
            LIST, {"action": "revoke_selected", "_selected_action": [pid], "post": "yes"}
        ).status_code
        == 403
    )
    assert client.get(revoke(pid)).status_code == 403
    assert client.post(revoke(pid), {"post": "yes"}).status_code == 403
    assert client.post(revoke_user(alice), {"post": "yes"}).status_code == 403
    assert exists(key)


def test_delete_permission_revokes(our_db, alice):
    key = make_session(user=alice)
    client = client_for(staff("keeper", "view_session", "delete_session"))

    page = html(client.get(LIST))
    assert 'name="_selected_action"' in page
    response = client.post(revoke(public_id(key)), {"post": "yes"})

    assert response.status_code == 302
    assert not exists(key)


def test_nothing_can_be_added_or_changed(our_db, superuser, alice):
    key = make_session(user=alice)
    client = client_for(superuser)

    index = html(client.get("/admin/"))
    assert "/admin/django_sessionkit/session/add/" not in index
    assert client.get(LIST + "add/").status_code == 404
    assert client.post(detail(public_id(key)), {"session_data": "x"}).status_code == 403
    assert exists(key)


# -- every engine ------------------------------------------------------------------


def test_every_engine_lists_shows_and_revokes(engine, superuser, alice, bob):
    alice_key = make_session(SECRET_DATA, user=alice, ip="203.0.113.9", user_agent=UA_IPHONE)
    anonymous_key = make_session({"cart": ["pen"]}, ip="198.51.100.1")
    bob_key = make_session({"theme": "dark"}, user=bob)
    client = client_for(superuser)

    page = html(client.get(LIST))
    assert {short(alice_key), short(anonymous_key), short(bob_key)} <= set(listed(page))
    assert engine in page
    assert ">alice</a>" in page
    if engine in WITH_METADATA:
        assert "203.0.113.9" in page
        assert "iPhone" in page
        assert "Mobile Safari 18" in page
        assert "iOS 18.1" in page
    else:
        assert "records no IP address" in page

    page = html(client.get(detail(public_id(alice_key))))
    assert public_id(alice_key) in page
    assert "shown-value" in page
    assert f"&quot;password&quot;: &quot;{MASK}&quot;" in page

    response = client.post(revoke(public_id(alice_key)), {"post": "yes"})
    assert response.status_code == 302
    assert not exists(alice_key)
    assert exists(anonymous_key)
    page = html(client.get(response["Location"]))
    assert "was revoked" in page
    assert short(alice_key) not in listed(page)

    response = client.post(revoke_user(bob), {"post": "yes"})
    assert response.status_code == 302
    assert not exists(bob_key)
    assert exists(anonymous_key)


def test_every_engine_revokes_selected(engine, superuser, alice):
    keys = [make_session({"n": n}, user=alice if n % 2 else None) for n in range(3)]
    client = client_for(superuser)
    selected = [public_id(keys[0]), public_id(keys[1])]

    page = html(client.post(LIST, {"action": "revoke_selected", "_selected_action": selected}))
    assert "Are you sure" in page
    assert all(exists(key) for key in keys)
    response = client.post(
        LIST, {"action": "revoke_selected", "_selected_action": selected, "post": "yes"}
    )

    assert response.status_code == 302
    assert [exists(key) for key in keys] == [False, False, True]


@pytest.mark.parametrize("engine", ENGINES)
def test_no_session_key_in_any_page(use_engine, engine, superuser, alice):
    use_engine(engine)
    keys = [
        make_session(SECRET_DATA, user=alice),
        make_session({"cart": [1]}),
        make_session({"n": 1}, user=alice),
    ]
    client = client_for(superuser)
    if "sessionid" in client.cookies:
        keys.append(client.cookies["sessionid"].value)
    pid = public_id(keys[0])

    pages = [
        client.get(LIST),
        client.get(LIST, {"q": "alice"}),
        client.get(LIST, {"user": alice.pk}),
        client.get(detail(pid)),
        client.get(revoke(pid)),
        client.get(revoke_user(alice)),
        client.post(LIST, {"action": "revoke_selected", "_selected_action": [pid]}),
    ]
    for response in pages:
        page = html(response)
        for key in keys:
            assert key not in page
    response = client.post(revoke(pid), {"post": "yes"}, follow=True)
    for url, _ in response.redirect_chain:
        assert all(key not in url for key in keys)
    page = html(response)
    assert all(key not in page for key in keys)


def test_detail_url_takes_only_public_ids(our_db, superuser, alice):
    key = make_session(user=alice)

    # Django builds change links of related objects from their primary key: none can exist.
    with pytest.raises(NoReverseMatch):
        reverse("admin:django_sessionkit_session_change", args=[key])
    client = client_for(superuser)
    response = client.get(f"{LIST}{key}/change/")
    assert response.status_code == 404
    assert key.encode() not in response.content


def test_user_delete_confirmation_shows_no_session_key(our_db, superuser, alice):
    key = make_session(user=alice)
    client = client_for(superuser)

    page = html(client.get(f"/admin/auth/user/{alice.pk}/delete/"))

    assert key not in page


@pytest.mark.parametrize("engine", [SIGNED_COOKIES, STOCK_CACHE])
def test_an_engine_that_cannot_list_explains_why(use_engine, settings, engine, superuser):
    use_engine(engine)
    if engine == STOCK_CACHE:
        settings.SESSION_CACHE_ALIAS = "default"  # locmem cannot list its keys
    client = client_for(superuser)
    pid = "0" * 32

    for response in (
        client.get(LIST),
        client.get(detail(pid)),
        client.get(revoke(pid)),
        client.post(LIST, {"action": "revoke_selected", "_selected_action": [pid]}),
    ):
        page = html(response)
        assert "Sessions cannot be listed" in page
        assert "cannot" in unescape(page).split("errornote")[1]
        assert 'id="result_list"' not in page
    assert "cookie" in html(client.get(LIST)) if engine == SIGNED_COOKIES else True


def test_permission_comes_before_the_engine(use_engine, alice):
    use_engine(SIGNED_COOKIES)
    client = client_for(staff("clerk"))
    pid = "0" * 32

    for url in (LIST, detail(pid), revoke(pid), revoke_user(alice)):
        assert client.get(url).status_code == 403
    viewer = client_for(staff("viewer", "view_session"))
    assert "Sessions cannot be listed" in html(viewer.get(detail(pid)))
    assert viewer.post(detail(pid)).status_code == 403  # sessions are never edited
    assert viewer.get(revoke(pid)).status_code == 403


# -- redaction and undecodable data ---------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_secrets_never_reach_a_page(use_engine, engine, superuser, alice):
    use_engine(engine)
    key = make_session(SECRET_DATA, user=alice)
    pid = public_id(key)
    client = client_for(superuser)

    pages = {
        "list": client.get(LIST),
        "search": client.get(LIST, {"q": "alice"}),
        "detail": client.get(detail(pid)),
        "revoke": client.get(revoke(pid)),
        "revoke user": client.get(revoke_user(alice)),
        "revoke selected": client.post(
            LIST, {"action": "revoke_selected", "_selected_action": [pid]}
        ),
    }
    for name, response in pages.items():
        page = unescape(html(response))
        for secret in SECRET_VALUES:
            assert secret not in page, name
        assert '"x"' not in page, name
        assert '"y"' not in page, name
        assert alice.get_session_auth_hash() not in page, name
    page = unescape(html(pages["detail"]))
    assert f'"api_key": "{MASK}"' in page
    assert f'"token": "{MASK}"' in page
    assert f'"oauth": "{MASK}"' in page  # "auth": hidden whole, the token with it
    assert f'"_auth_user_hash": "{MASK}"' in page
    assert '"visible": "shown-value"' in page
    assert f'"_auth_user_id": "{alice.pk}"' in page


def test_redaction_follows_the_setting(our_db, settings, superuser):
    settings.SESSIONKIT_REDACT = ["cart"]
    key = make_session({"cart": ["sentinel-cart-item"], "password": "plain-now"})
    client = client_for(superuser)

    page = unescape(html(client.get(detail(public_id(key)))))

    assert "sentinel-cart-item" not in page
    assert '"password": "plain-now"' in page


def tamper(engine: str, key: str) -> None:
    """Replace the stored data of session *key* with bytes that no engine can decode."""
    from django.conf import settings
    from django.core.cache import caches

    garbage = "not-a-signed-session:tampered"
    if engine in (OUR_DB, OUR_CACHED_DB, STOCK_DB, STOCK_CACHED_DB):
        model = import_module(engine).SessionStore.get_model_class()
        model.objects.filter(pk=key).update(session_data=garbage)
        if engine in (OUR_CACHED_DB, STOCK_CACHED_DB):
            caches["redis"].clear()
    elif engine == OUR_REDIS:
        from django_sessionkit.backends.redis import Keyspace

        keyspace = Keyspace.of("redis")
        keyspace.client().hset(keyspace.session(public_id(key)), "d", garbage)
    elif engine == STOCK_FILE:
        path = f"{settings.SESSION_FILE_PATH}/{settings.SESSION_COOKIE_NAME}{key}"
        with open(path, "w") as file:
            file.write(garbage)
    else:  # pragma: no cover
        raise AssertionError(engine)


@pytest.mark.parametrize("engine", [OUR_DB, OUR_CACHED_DB, OUR_REDIS, STOCK_DB, STOCK_FILE])
def test_tampered_data_shows_as_undecodable(use_engine, engine, superuser, alice):
    use_engine(engine)
    key = make_session({"password": "rootpass"}, user=alice)
    tamper(engine, key)
    client = client_for(superuser)

    page = html(client.get(detail(public_id(key))))

    assert "undecodable" in page
    assert "rootpass" not in page
    assert "not-a-signed-session" not in page
    assert short(key) in html(client.get(LIST))


# -- cost ---------------------------------------------------------------------------


@pytest.fixture
def decodes(monkeypatch):
    """The session data decoded during the test that came from bulk_sessions()."""
    decoded: list[dict[str, Any]] = []
    original = SessionBase.decode

    def decode(self, session_data):
        data = original(self, session_data)
        if "n" in data:
            decoded.append(data)
        return data

    monkeypatch.setattr(SessionBase, "decode", decode)
    return decoded


def test_detail_decodes_one_session(our_db, superuser, decodes):
    keys = bulk_sessions(5)
    client = client_for(superuser)

    html(client.get(detail(public_id(keys[2]))))

    assert decodes == [{"n": 2}]


# -- actions, with CSRF --------------------------------------------------------------------


def test_revoke_one_with_csrf(our_db, superuser, alice):
    key = make_session(user=alice)
    client = client_for(superuser, enforce_csrf_checks=True)
    url = revoke(public_id(key))

    assert client.post(url, {"post": "yes"}).status_code == 403
    assert exists(key)
    page = html(client.get(url))
    assert "Are you sure you want to revoke the session" in page
    response = client.post(url, {"post": "yes", "csrfmiddlewaretoken": csrf_token(page)})

    assert response.status_code == 302
    assert response["Location"] == LIST
    assert not exists(key)
    entry = LogEntry.objects.get()
    assert entry.action_flag == DELETION
    assert entry.object_id == public_id(key)
    assert entry.user == superuser
    index = html(client.get("/admin/"))  # "Recent actions" lists it, without a link
    assert f"Session {short(key)}" in index
    assert key not in index


def test_revoke_selected_with_csrf(our_db, superuser, alice):
    keys = [make_session(user=alice) for _ in range(3)]
    client = client_for(superuser, enforce_csrf_checks=True)
    page = html(client.get(LIST))
    token = csrf_token(page)
    selected = [public_id(key) for key in keys[:2]]
    form = {"action": "revoke_selected", "_selected_action": selected}

    assert client.post(LIST, form).status_code == 403
    page = html(client.post(LIST, {**form, "csrfmiddlewaretoken": token}))
    assert "Are you sure you want to revoke the 2 selected sessions" in page
    assert all(exists(key) for key in keys)
    response = client.post(
        LIST,
        {
            **form,
            "post": "yes",
            "csrfmiddlewaretoken": csrf_token(page),
            "_changelist_filters": "status=active",
        },
    )

    assert response.status_code == 302
    assert response["Location"] == LIST + "?status=active"
    assert [exists(key) for key in keys] == [False, False, True]
    assert sorted(LogEntry.objects.values_list("object_id", flat=True)) == sorted(selected)
    assert "Revoked 2 sessions." in html(client.get(response["Location"]))


def test_the_list_it_goes_back_to_keeps_only_its_own_parameters(our_db, superuser, alice):
    key = make_session(user=alice)
    client = client_for(superuser)

    response = client.post(
        revoke(public_id(key)),
        {"post": "yes", "_changelist_filters": "status=active&next=//evil.example&q=al"},
    )

    assert response["Location"] == LIST + "?q=al&status=active"


def test_revoke_selected_needs_a_selection(our_db, superuser):
    client = client_for(superuser)

    response = client.post(LIST, {"action": "revoke_selected"}, follow=True)

    assert "Items must be selected" in html(response)
    response = client.post(LIST, {"action": "", "_selected_action": ["0" * 32]}, follow=True)
    assert "No action selected" in html(response)


def test_revoke_user_with_csrf(our_db, superuser, alice, bob):
    alice_keys = [make_session(user=alice, user_agent=UA_IPHONE), make_session(user=alice)]
    bob_key = make_session(user=bob)
    client = client_for(superuser, enforce_csrf_checks=True)
    url = revoke_user(alice)

    assert client.post(url, {"post": "yes"}).status_code == 403
    page = html(client.get(url))
    assert "2 active sessions" in page
    assert "revoke every session of" in page
    response = client.post(url, {"post": "yes", "csrfmiddlewaretoken": csrf_token(page)})

    assert response.status_code == 302
    assert not any(exists(key) for key in alice_keys)
    assert exists(bob_key)
    assert "Revoked 2 sessions of alice." in html(client.get(response["Location"]))
    assert LogEntry.objects.get().object_repr == "Sessions of alice"


def test_revoking_ones_own_sessions_keeps_the_current_one(our_db, superuser):
    other = make_session(user=superuser)
    client = client_for(superuser)

    page = html(client.get(revoke_user(superuser)))
    assert "Your current session is kept" in page
    client.post(revoke_user(superuser), {"post": "yes"})

    assert not exists(other)
    assert client.get(LIST).status_code == 200  # still logged in


def test_revoke_user_of_unknown_user_is_404(our_db, superuser):
    client = client_for(superuser)

    assert client.get(LIST + "user/999999/revoke/").status_code == 404
    assert client.get(LIST + "user/not-a-number/revoke/").status_code == 404


def test_detail_from_the_detail_page_offers_revoking(our_db, superuser, alice):
    key = make_session(user=alice)
    client = client_for(superuser)

    page = html(client.get(detail(public_id(key))))

    assert revoke(public_id(key)) in page
    assert revoke_user(alice) in page
    assert f"?user={alice.pk}" in page


def test_a_revoked_session_goes_back_to_the_list(our_db, superuser, alice):
    key = make_session(user=alice)
    client = client_for(superuser)
    client.post(revoke(public_id(key)), {"post": "yes"})

    response = client.get(detail(public_id(key)), follow=True)

    assert response.redirect_chain[-1][0] == LIST
    assert "does not exist" in html(response)


# -- tampered URLs ---------------------------------------------------------------------

#: More than any database integer holds (SQLite's and PostgreSQL's are 64-bit at most).
HUGE = "9" * 20


def test_revoking_the_sessions_of_an_impossible_user_id_is_404(engine, superuser, alice):
    key = make_session(user=alice)
    client = client_for(superuser)

    for user_id in (HUGE, "-" + HUGE, "not-a-number", "1%00"):
        url = f"{LIST}user/{user_id}/revoke/"
        assert client.get(url).status_code == 404
        assert client.post(url, {"post": "yes"}).status_code == 404
    assert exists(key)
    assert not LogEntry.objects.exists()


# -- deleted users ---------------------------------------------------------------------

#: Engines that keep a session after its user is deleted: the data names the user id.
KEEP_DELETED_USERS = [OUR_REDIS, STOCK_DB, STOCK_CACHED_DB, STOCK_CACHE, STOCK_FILE]


def revoke_user_id(user_id: Any) -> str:
    return reverse("admin:django_sessionkit_session_user", args=[str(user_id)])


@pytest.mark.parametrize("engine", KEEP_DELETED_USERS)
def test_a_deleted_users_sessions_stay_revocable(use_engine, engine, superuser, alice, bob):
    use_engine(engine)
    alice_keys = [make_session(user=alice), make_session(user=alice, user_agent=UA_IPHONE)]
    bob_key = make_session(user=bob)
    alice_id = alice.pk
    alice.delete()
    client = client_for(superuser)
    label = f"deleted user {alice_id}"

    page = html(client.get(LIST, {"user": alice_id}))
    assert sorted(listed(page)) == sorted(short(key) for key in alice_keys)
    assert page.count(label) >= 3  # the summary, the sidebar, each row
    assert f"{label}: 2 active sessions" in " ".join(page.split())
    assert revoke_user_id(alice_id) in page
    assert f"Revoke all sessions of {label}" in page
    page = html(client.get(detail(public_id(alice_keys[0]))))
    assert revoke_user_id(alice_id) in page
    assert f"Revoke all sessions of {label}" in page

    url = revoke_user_id(alice_id)
    page = html(client.get(url))
    assert "2 active sessions" in page
    assert f"revoke every session of {label}?" in page
    response = client.post(url, {"post": "yes"})

    assert response.status_code == 302
    assert not any(exists(key) for key in alice_keys)
    assert exists(bob_key)
    assert f"Revoked 2 sessions of {label}." in html(client.get(response["Location"]))
    entry = LogEntry.objects.get()
    assert entry.object_repr == f"Sessions of {label}"
    assert entry.user == superuser
    # Now that nothing names the id, it is as unknown as any other.
    assert client.get(url).status_code == 404
    page = html(client.get(LIST, {"user": alice_id}))
    assert listed(page) == []
    assert url not in page


@pytest.mark.parametrize("engine", [OUR_DB, OUR_CACHED_DB])
def test_a_deleted_users_sessions_go_with_them_on_our_database_engines(
    use_engine, engine, superuser, alice
):
    use_engine(engine)
    key = make_session(user=alice)
    alice_id = alice.pk
    alice.delete()
    client = client_for(superuser)

    page = html(client.get(LIST, {"user": alice_id}))

    assert listed(page) == []
    assert revoke_user_id(alice_id) not in page
    assert client.get(revoke_user_id(alice_id)).status_code == 404
    assert client.post(revoke_user_id(alice_id), {"post": "yes"}).status_code == 404
    assert get_inventory().get(public_id(key)) is None  # the row cascaded away


# -- the current session ---------------------------------------------------------------

OLD_SECRET = "sessionkit-tests-the-secret-before-rotation"
NEW_SECRET = "sessionkit-tests-the-secret-after-rotation"


def current_rows(page: str) -> list[str]:
    """Return the short public ids of the rows marked as the current session."""
    return re.findall(
        r'<tr class="sessionkit-current">.*?<code>([0-9a-f]+)</code></a>'
        r' <span class="sessionkit-current-label">this session</span>',
        page,
        re.S,
    )


def test_the_list_marks_the_current_session(engine, superuser, alice):
    make_session(user=alice)
    make_session(user=superuser)
    client = client_for(superuser)
    own = client.cookies["sessionid"].value

    page = html(client.get(LIST))

    assert len(listed(page)) == 3
    assert current_rows(page) == [short(own)]
    assert page.count("sessionkit-current-label") == 1


def session_stored_before_rotation(client: Client, user: User, settings: Any) -> str:
    """Log *client* in with a session stored under the old secret's public id, then rotate.

    A session keeps the public id it was stored under until its next save.
    (Its auth hash is the new secret's: one that only a fallback verified
    would make Django cycle the key, which saves it.)
    """
    settings.SECRET_KEY = NEW_SECRET
    auth_hash = user.get_session_auth_hash()
    settings.SECRET_KEY = OLD_SECRET
    store = import_module(settings.SESSION_ENGINE).SessionStore()
    store.update(
        {
            SESSION_KEY: str(user.pk),
            BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend",
            HASH_SESSION_KEY: auth_hash,
        }
    )
    store.save()
    settings.SECRET_KEY = NEW_SECRET
    settings.SECRET_KEY_FALLBACKS = [OLD_SECRET]
    client.cookies[settings.SESSION_COOKIE_NAME] = store.session_key
    return store.session_key


def test_after_a_key_rotation_the_admin_keeps_its_own_session(engine, settings, superuser):
    client = Client()
    own = session_stored_before_rotation(client, superuser, settings)
    other = make_session(user=superuser)
    stored = get_inventory().get(public_id(own, OLD_SECRET)) or get_inventory().get(public_id(own))
    assert stored is not None

    page = html(client.get(LIST))
    assert current_rows(page) == [stored.public_id[:12]]
    assert "This is the session you are using now." in html(client.get(detail(stored.public_id)))
    page = html(client.get(revoke(stored.public_id)))
    assert "revoking it logs you out" in page
    selected = {"action": "revoke_selected", "_selected_action": [stored.public_id]}
    assert "(your current session)" in html(client.post(LIST, selected))
    page = html(client.get(revoke_user(superuser)))
    assert "Your current session is kept" in page
    assert "1 active session" in page
    response = client.post(revoke_user(superuser), {"post": "yes"})

    assert response.status_code == 302
    assert not exists(other)
    assert exists(own)
    assert "Revoked 1 session of root." in html(client.get(LIST))  # still logged in
