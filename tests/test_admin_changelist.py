"""The session list: its summary, filters, search, ordering and pages, and what a page costs.

The pages are the admin's, so these tests share test_admin's set-up.
"""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape

import pytest
import time_machine
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_sessionkit.admin import SessionAdmin, SessionChangeList
from django_sessionkit.inventory import get_inventory
from django_sessionkit.inventory.model import ModelInventory
from django_sessionkit.models import Session
from django_sessionkit.public_id import public_id
from tests import test_admin
from tests.test_admin import (
    HUGE,
    LIST,
    NOON,
    OUR_DB,
    OUR_REDIS,
    STOCK_DB,
    WITH_METADATA,
    analyze,
    bulk_sessions,
    client_for,
    html,
    listed,
    make_session,
    paginator,
    revoke_user,
    row,
    short,
    staff,
)

# test_admin's fixtures, requested by name below.
engine = test_admin.engine
our_db = test_admin.our_db
superuser = test_admin.superuser
alice = test_admin.alice
bob = test_admin.bob
decodes = test_admin.decodes

pytestmark = pytest.mark.django_db


# -- summary and total -----------------------------------------------------------------


@pytest.fixture
def exact_counts(monkeypatch):
    """Count rows even where PostgreSQL has statistics, which earlier tests may have left."""
    monkeypatch.setattr(ModelInventory, "_estimate", lambda self: None)


def test_summary_counts_active_and_expired_and_names_the_engine(our_db, superuser, exact_counts):
    now = timezone.now()
    bulk_sessions(3)
    for n in range(2):
        row(f"expired{n}", expire_date=now - timedelta(hours=n + 1))
    client = client_for(superuser)  # its own session is active too

    page = html(client.get(LIST))
    summary = " ".join(re.search(r'id="sessionkit-summary">(.*?)</p>', page, re.S)[1].split())

    assert "4 active sessions" in summary
    assert "2 expired sessions waiting for <code>clearsessions</code>" in summary
    assert f"<code>{OUR_DB}</code>" in summary
    assert "6 sessions" in page


def test_summary_of_one_user_counts_their_sessions_from_the_page(
    our_db, superuser, alice, bob, django_assert_max_num_queries
):
    make_session(user=alice)
    make_session(user=alice)
    make_session(user=bob)
    row("alice-old", user=alice, expire_date=timezone.now() - timedelta(days=1))
    client = client_for(superuser)

    with django_assert_max_num_queries(4):  # session, user, page, user's name: no count
        page = html(client.get(LIST, {"user": alice.pk}))

    summary = " ".join(re.search(r'id="sessionkit-summary">(.*?)</p>', page, re.S)[1].split())
    assert "alice: 2 active sessions" in summary
    assert "1 expired" in summary
    assert len(listed(page)) == 3


def test_summary_says_when_the_storage_expires_sessions_itself(use_engine, superuser):
    use_engine(OUR_REDIS)
    inventory = get_inventory()
    client = client_for(superuser)

    page = html(client.get(LIST))

    if inventory.expires_itself:
        assert f"deleted by {inventory.expires_itself}" in page
    else:
        assert "waiting for <code>clearsessions</code>" in page


def test_the_total_is_an_estimate_when_the_database_has_one(our_db, superuser, monkeypatch):
    bulk_sessions(5)
    monkeypatch.setattr(ModelInventory, "_estimate", lambda self: 1000)
    client = client_for(superuser)

    page = html(client.get(LIST))

    assert "about 1000 sessions" in page
    assert "about 1000 active sessions" in page
    assert max(paginator(page)[0]) == 10


def test_an_estimate_below_what_is_seen_still_pages_on(our_db, superuser, monkeypatch):
    bulk_sessions(150)
    monkeypatch.setattr(ModelInventory, "_estimate", lambda self: 20)
    client = client_for(superuser)

    first = html(client.get(LIST))
    second = html(client.get(LIST, {"p": 2}))

    assert "about 101 sessions" in first
    assert max(paginator(first)[0]) == 2
    assert len(listed(second)) == 51
    assert "about 151 sessions" in second


def test_postgresql_lists_without_counting_the_whole_table(our_db, superuser):
    if connection.vendor != "postgresql":
        pytest.skip("the estimate comes from PostgreSQL's statistics")
    bulk_sessions(150)
    analyze()
    client = client_for(superuser)

    with CaptureQueriesContext(connection) as queries:
        page = html(client.get(LIST))

    counts = [q["sql"] for q in queries if "COUNT(" in q["sql"].upper()]
    assert all("WHERE" in sql.upper() for sql in counts), counts
    assert "about" in page


# -- filters and search ----------------------------------------------------------------


def test_status_filter(our_db, superuser):
    now = timezone.now()
    active = bulk_sessions(2)
    expired = [
        row(f"old{n}", expire_date=now - timedelta(days=1), last_activity=now - timedelta(days=15))
        for n in range(2)
    ]
    client = client_for(superuser)

    shown = listed(html(client.get(LIST, {"status": "expired"})))
    assert sorted(shown) == sorted(short(key) for key in expired)
    shown = listed(html(client.get(LIST, {"status": "active"})))
    assert set(shown) >= {short(key) for key in active}
    assert not set(shown) & {short(key) for key in expired}


def test_logged_in_and_anonymous_filter(our_db, superuser, alice):
    alice_key = make_session(user=alice)
    anonymous = make_session({"cart": [1]})
    client = client_for(superuser)

    logged_in = listed(html(client.get(LIST, {"auth": "1"})))
    assert short(alice_key) in logged_in
    assert short(anonymous) not in logged_in
    assert listed(html(client.get(LIST, {"auth": "0"}))) == [short(anonymous)]


def test_last_activity_filter(our_db, superuser):
    with time_machine.travel(NOON, tick=False):
        client = client_for(superuser)
        Session.objects.update(last_activity=NOON - timedelta(days=90))
        keys = {
            name: row(name, expire_date=NOON + timedelta(days=1), last_activity=NOON - age)
            for name, age in {
                "hour": timedelta(hours=1),
                "days3": timedelta(days=3),
                "days20": timedelta(days=20),
                "days40": timedelta(days=40),
            }.items()
        }

        own = short(client.cookies["sessionid"].value)  # its requests are activity too

        def shown(activity):
            return set(listed(html(client.get(LIST, {"activity": activity})))) - {own}

        assert shown("today") == {short(keys["hour"])}
        assert shown("7d") == {short(keys["hour"]), short(keys["days3"])}
        assert shown("30d") == {short(keys[n]) for n in ("hour", "days3", "days20")}
        assert short(keys["days40"]) in shown("older")
        assert not shown("older") & {short(keys[n]) for n in ("hour", "days3", "days20")}


def test_activity_filter_is_offered_only_where_activity_is_recorded(use_engine, superuser):
    use_engine(STOCK_DB)
    client = client_for(superuser)

    page = html(client.get(LIST))

    assert "By last activity" not in page
    assert "By status" in page


def test_search_by_username_and_email(our_db, superuser, alice, bob):
    alice_key = make_session(user=alice)
    bob_key = make_session(user=bob)
    anonymous = make_session()
    client = client_for(superuser)

    assert listed(html(client.get(LIST, {"q": "alic"}))) == [short(alice_key)]
    assert listed(html(client.get(LIST, {"q": "example.net"}))) == [short(bob_key)]
    shown = set(listed(html(client.get(LIST, {"q": "example"}))))
    assert {short(alice_key), short(bob_key)} <= shown
    assert short(anonymous) not in shown
    page = html(client.get(LIST, {"q": "nobody-matches"}))
    assert listed(page) == []
    assert "No session matches" in page


def test_search_by_username_is_bounded(our_db, superuser):
    User.objects.bulk_create(User(username=f"many{n:03d}") for n in range(101))
    client = client_for(superuser)

    with CaptureQueriesContext(connection) as queries:
        page = html(client.get(LIST, {"q": "many"}))

    assert "More than 100 users match" in unescape(page)
    assert not any(
        "many" in q["sql"] and "IN" in q["sql"] and q["sql"].count("%s") > 101 for q in queries
    )


def test_search_by_ip_and_public_id(our_db, superuser, alice):
    first = make_session(user=alice, ip="192.0.2.44")
    second = make_session(ip="192.0.2.45")
    client = client_for(superuser)

    assert listed(html(client.get(LIST, {"q": "192.0.2.44"}))) == [short(first)]
    ipv6 = make_session(ip="2001:db8::17")
    assert listed(html(client.get(LIST, {"q": "2001:DB8:0::17"}))) == [short(ipv6)]
    assert listed(html(client.get(LIST, {"q": public_id(second)}))) == [short(second)]
    assert listed(html(client.get(LIST, {"q": public_id(second).upper()}))) == [short(second)]
    assert listed(html(client.get(LIST, {"q": "f" * 32}))) == []


def test_filter_by_one_user_offers_to_revoke_them_all(our_db, superuser, alice, bob):
    alice_keys = [make_session(user=alice), make_session(user=alice)]
    make_session(user=bob)
    client = client_for(superuser)

    page = html(client.get(LIST, {"user": alice.pk}))

    assert sorted(listed(page)) == sorted(short(key) for key in alice_keys)
    assert revoke_user(alice) in page
    assert "Revoke all sessions of alice" in page
    sidebar = page.split('id="changelist-filter"')[1]
    assert "By user" in sidebar
    assert re.search(r'<li class="selected">\s*<a href="\?user=\d+">alice</a>', sidebar)


def test_users_link_to_their_admin_page_and_their_sessions(our_db, superuser, alice):
    make_session(user=alice)
    client = client_for(superuser)

    page = html(client.get(LIST))

    assert f'href="/admin/auth/user/{alice.pk}/change/"' in page
    assert f'href="?user={alice.pk}"' in page


# -- ordering and pages ----------------------------------------------------------------


def test_ordering(our_db, superuser):
    now = timezone.now()
    keys = []
    for number, (activity, expiry) in enumerate([(1, 30), (3, 10), (2, 20)]):
        key = row(
            f"order{number}",
            last_activity=now - timedelta(days=activity + 100),
            expire_date=now + timedelta(days=expiry),
        )
        keys.append(short(key))
    client = client_for(superuser)

    def order(value):
        return [pid for pid in listed(html(client.get(LIST, {"o": value}))) if pid in keys]

    assert order("-last_activity") == [keys[0], keys[2], keys[1]]
    assert order("last_activity") == [keys[1], keys[2], keys[0]]
    assert order("-expire_date") == [keys[0], keys[2], keys[1]]
    assert order("expire_date") == [keys[1], keys[2], keys[0]]
    assert order("bogus") == order("-last_activity")
    page = html(client.get(LIST, {"o": "-expire_date"}))
    assert 'class="column-expire_date sortable sorted descending"' in page
    assert 'href="?o=expire_date"' in page


def test_pagination(our_db, superuser, exact_counts):
    bulk_sessions(250)
    client = client_for(superuser)  # 251 sessions with its own

    first = html(client.get(LIST))
    third = html(client.get(LIST, {"p": 3}))

    assert len(listed(first)) == 100
    assert len(listed(third)) == 51
    assert not set(listed(first)) & set(listed(third))
    assert "251 sessions" in first
    assert max(paginator(first)[0]) == 3
    assert paginator(first)[1] == 1
    assert paginator(third)[1] == 3
    assert len(listed(html(client.get(LIST, {"p": "junk"})))) == 100
    beyond = html(client.get(LIST, {"p": 99}))
    assert listed(beyond) == listed(third)
    assert paginator(beyond)[1] == 3


def test_a_page_past_the_last_shows_the_last_on_every_engine(engine, superuser, monkeypatch):
    monkeypatch.setattr(SessionAdmin, "list_per_page", 2)
    # Expiries an hour apart: the pages' order is the same from one request to the next.
    keys = [make_session({"n": n}, expiry=3600 * (n + 1)) for n in range(5)]
    client = client_for(superuser)  # 6 sessions with its own, which expires last

    def shown(**params):
        page = html(client.get(LIST, {"o": "expire_date", **params}))
        return listed(page), paginator(page)[1]

    assert shown(p=3) == ([short(keys[4]), short(client.cookies["sessionid"].value)], 3)
    assert shown(p=4) == shown(p=3)
    assert shown(p=10**20) == shown(p=3)
    # Filtered, the last page is the filter's: 5 anonymous sessions, 1 on page 3.
    assert shown(p=99, auth=0) == ([short(keys[4])], 3)
    assert shown(p=10**20, auth=0) == shown(p=3, auth=0)


def test_filters_keep_each_other_in_links(our_db, superuser):
    client = client_for(superuser)

    page = unescape(html(client.get(LIST, {"status": "active", "q": "alice", "p": 2})))

    assert 'href="?q=alice&status=active&auth=1"' in page
    assert '<input type="hidden" name="status" value="active">' in page
    assert "Clear all filters" in page


# -- cost ------------------------------------------------------------------------------


def test_first_page_of_100_costs_at_most_8_queries_and_no_decode(
    our_db, alice, django_assert_max_num_queries, decodes
):
    keys = bulk_sessions(150)
    Session.objects.filter(pk__in=keys[:10]).update(user=alice)
    analyze()
    client = client_for(staff("viewer", "view_session"))

    with django_assert_max_num_queries(8):
        page = html(client.get(LIST))

    assert len(listed(page)) == 100
    assert page.count(">alice</a>") == 10
    assert decodes == []
    with django_assert_max_num_queries(8):
        assert len(listed(html(client.get(LIST, {"user": alice.pk})))) == 10
    with django_assert_max_num_queries(8):
        assert len(listed(html(client.get(LIST, {"p": 2})))) == 51
    assert decodes == []


# -- tampered URLs ---------------------------------------------------------------------


def test_tampered_list_urls_never_answer_500(engine, superuser, alice):
    alice_key = make_session(user=alice)
    anonymous = make_session()
    client = client_for(superuser)
    everyone = {short(alice_key), short(anonymous), short(client.cookies["sessionid"].value)}

    assert set(listed(html(client.get(LIST, {"p": HUGE})))) == everyone
    page = html(client.get(LIST, {"p": HUGE, "status": "active", "auth": "1", "q": "alice"}))
    assert listed(page) == [short(alice_key)]
    page = html(client.get(LIST, {"user": HUGE}))
    assert listed(page) == []
    assert "No session matches." in page
    # NUL characters are dropped: PostgreSQL refuses them in a query.
    assert set(listed(html(client.get(LIST, {"q": "\x00"})))) == everyone
    assert listed(html(client.get(LIST, {"q": "ali\x00ce"}))) == [short(alice_key)]
    assert listed(html(client.get(LIST, {"user": f"{alice.pk}\x00"}))) == [short(alice_key)]
    assert listed(html(client.get(LIST, {"q": "\x00203.0.113.5", "auth": "0"}))) == (
        [short(anonymous)] if engine in WITH_METADATA else []
    )
    page = html(client.get(LIST, {"q": "\x00", "status": "active\x00"}))
    assert "\x00" not in page
    assert "%00" not in page


# -- the hook ------------------------------------------------------------------------


def test_get_changelist_chooses_the_class_of_the_list(our_db, superuser, monkeypatch):
    class ShopChangeList(SessionChangeList):
        search_help_text = "Search the shop's sessions."

    monkeypatch.setattr(SessionAdmin, "get_changelist", lambda self, request: ShopChangeList)
    client = client_for(superuser)

    page = html(client.get(LIST))

    assert "Search the shop&#x27;s sessions." in page
    assert len(listed(page)) == 1
