from __future__ import annotations

import json
from datetime import datetime
from datetime import timezone as dt_timezone

from django_sessionkit.conf import DEFAULT_REDACT
from django_sessionkit.redaction import MASK, MAX_DEPTH, TRUNCATED, is_secret, redact, to_json


def test_hides_the_values_of_secret_keys_and_keeps_their_names():
    data = {"password": "rootpass", "api_key": "x", "cart": [1, 2]}

    assert redact(data) == {"password": MASK, "api_key": MASK, "cart": [1, 2]}


def test_default_patterns_cover_what_sites_keep_in_sessions():
    data = {
        "_auth_user_id": "1",
        "_auth_user_hash": "f00",
        "_auth_user_backend": "django.contrib.auth.backends.ModelBackend",
        "passwd": "a",
        "client_secret": "b",
        "oauth_token": "c",
        "apiKey": "d",
        "api-key": "e",
        "_csrftoken": "f",
        "password_reset_hash": "g",
    }

    shown = redact(data)

    assert shown["_auth_user_id"] == "1"
    assert shown["_auth_user_backend"] == "django.contrib.auth.backends.ModelBackend"
    assert {key for key, value in shown.items() if value == MASK} == set(data) - {
        "_auth_user_id",
        "_auth_user_backend",
    }


def test_matches_substrings_ignoring_case():
    assert is_secret("User_PASSWORD_confirm", DEFAULT_REDACT)
    assert is_secret("ACCESS_TOKEN", DEFAULT_REDACT)
    assert not is_secret("username", DEFAULT_REDACT)
    assert not is_secret("", ["", "x"])  # an empty pattern matches nothing


def test_searches_nested_dicts_and_lists():
    data = {
        "nested": {"token": "y", "name": "kept", "deeper": {"secret": "z"}},
        "accounts": [{"provider": "gh", "access_token": "t1"}, {"api_key": "t2"}],
        "pairs": ({"hash": "h"},),
    }

    shown = redact(data)

    assert shown == {
        "nested": {"token": MASK, "name": "kept", "deeper": {"secret": MASK}},
        "accounts": [{"provider": "gh", "access_token": MASK}, {"api_key": MASK}],
        "pairs": [{"hash": MASK}],
    }
    for secret in ("y", "z", "t1", "t2", "h"):
        assert f'"{secret}"' not in json.dumps(shown)


def test_a_secret_key_hides_everything_below_it():
    shown = redact({"secrets": {"plain": "p", "list": [1, 2]}})

    assert shown == {"secrets": MASK}


def test_patterns_come_from_the_setting(settings):
    settings.SESSIONKIT_REDACT = ["cart"]

    assert redact({"cart": [1], "password": "p"}) == {"cart": MASK, "password": "p"}


def test_patterns_can_be_passed():
    assert redact({"color": "red", "size": 1}, ["col"]) == {"color": MASK, "size": 1}


def test_does_not_change_its_argument():
    data = {"password": "p", "nested": {"token": "t"}}

    redact(data)

    assert data == {"password": "p", "nested": {"token": "t"}}


def test_keys_become_strings_for_json():
    shown = redact({1: "one", ("a", "b"): "pair", "token": "t"})

    assert shown == {"1": "one", "('a', 'b')": "pair", "token": MASK}


def test_cuts_cyclic_or_very_deep_data():
    cyclic: dict = {"name": "loop"}
    cyclic["self"] = cyclic

    shown = redact(cyclic)

    depth = 0
    while isinstance(shown, dict):
        shown = shown["self"]
        depth += 1
    assert shown == TRUNCATED
    assert depth == MAX_DEPTH + 1


def test_to_json_pretty_prints_values_json_cannot_hold():
    moment = datetime(2030, 1, 2, 3, 4, tzinfo=dt_timezone.utc)

    text = to_json({"when": moment, "password": "rootpass", "name": "Zoë"})

    assert json.loads(text) == {"when": str(moment), "password": MASK, "name": "Zoë"}
    assert text.startswith('{\n  "when"')
    assert "rootpass" not in text
