from __future__ import annotations

import json
from datetime import datetime
from datetime import timezone as dt_timezone

import pytest
from django.contrib.messages.storage.base import Message
from django.contrib.messages.storage.cookie import MessageEncoder
from django.contrib.messages.storage.session import SessionStorage
from django.test import RequestFactory

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
        "oauth_state": "h",
        "pkce_code_verifier": "i",
        "private_key": "j",
        "user_pwd": "k",
        "otp_seed": "l",
        "pin": "m",
        "Signature": "n",
        "remember_cookie": "o",
        "cart": "p",
        "theme": "q",
    }

    shown = redact(data)

    assert shown["_auth_user_id"] == "1"
    assert shown["_auth_user_backend"] == "django.contrib.auth.backends.ModelBackend"
    assert (shown["cart"], shown["theme"]) == ("p", "q")
    assert {key for key, value in shown.items() if value == MASK} == set(data) - {
        "_auth_user_id",
        "_auth_user_backend",
        "cart",
        "theme",
    }


def test_default_patterns_hide_what_djangos_debug_page_hides():
    for name in ("API", "AUTH", "TOKEN", "KEY", "SECRET", "PASS", "SIGNATURE", "HTTP_COOKIE"):
        assert is_secret(f"x_{name.lower()}_y", DEFAULT_REDACT), name
    for name in ("pwd", "otp", "pin", "verifier", "private", "csrf", "hash"):
        assert is_secret(name.upper(), DEFAULT_REDACT), name


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


# -- secrets inside values -------------------------------------------------------


def test_hides_secrets_inside_a_json_string_and_keeps_it_a_string():
    response = json.dumps({"access_token": "at-1", "scope": "read", "id": {"secret": "s"}})

    shown = redact({"provider_response": response})["provider_response"]

    assert isinstance(shown, str)
    assert json.loads(shown) == {"access_token": MASK, "scope": "read", "id": {"secret": MASK}}


def test_hides_secrets_inside_a_json_array_string():
    shown = redact({"history": '[{"password": "pw-1"}, "plain"]'})["history"]

    assert json.loads(shown) == [{"password": MASK}, "plain"]


@pytest.mark.parametrize(
    "text",
    ['{"a":1,  "b": [1, 2]}', "[1,2]", '"quoted"', "{not json", "12", "", "plain text"],
)
def test_strings_without_secrets_stay_exactly_as_they_were(text):
    assert redact({"value": text}) == {"value": text}


def test_json_strings_inside_json_strings():
    inner = json.dumps({"token": "deep-1"})

    shown = redact({"outer": json.dumps({"payload": inner})})["outer"]

    assert json.loads(json.loads(shown)["payload"]) == {"token": MASK}


def test_hides_the_value_of_secret_key_value_pairs():
    data = {
        "pairs": [["password", "pw-1"], ["user", "bob"], ("api_key", "k-1")],
        "not_a_pair": ["password", "x", "y"],
        "items": [["token", {"nested": "t-1"}]],
    }

    assert redact(data) == {
        "pairs": [["password", MASK], ["user", "bob"], ["api_key", MASK]],
        "not_a_pair": ["password", "x", "y"],
        "items": [["token", MASK]],
    }


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("username=bob&password=pw-1", f"username=bob&password={MASK}"),
        ("a=1; token=t-1; b=2", f"a=1; token={MASK}; b=2"),
        ("?code=c&state=s&access_token=t-1", f"?code=c&state=s&access_token={MASK}"),
        ("pass%77ord=pw-1&x=1", f"pass%77ord={MASK}&x=1"),
        ("next=/cart?token=t-1&page=2", f"next=/cart?token={MASK}&page=2"),
        ("secret=a=b==&ok=1", f"secret={MASK}&ok=1"),
        ("password=&user=bob", "password=&user=bob"),
    ],
)
def test_hides_secret_values_in_key_value_text(text, shown):
    assert redact({"value": text}) == {"value": shown}


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("Authorization: Bearer abc.def", f"Authorization: {MASK}"),
        (
            "Accept: text/html\nX-Api-Key: k-1\nHost: example.com",
            f"Accept: text/html\nX-Api-Key: {MASK}\nHost: example.com",
        ),
        ("{'password': 'pw-1'}", f"{{'password': {MASK}"),
        ("at 10:30, user: bob", "at 10:30, user: bob"),
        ("see https://example.com/a?b=c", "see https://example.com/a?b=c"),
    ],
)
def test_hides_secret_values_in_key_colon_value_text(text, shown):
    assert redact({"value": text}) == {"value": shown}


def test_hides_secrets_in_messages_stored_by_the_messages_framework():
    request = RequestFactory().get("/")
    request.session = {}
    storage = SessionStorage(request)
    storage.add(25, "Your new API token: t-1")
    storage.add(20, "Saved.", extra_tags="reset password=pw-1")
    storage.add(30, "Nothing secret here")
    storage.update(None)

    shown = json.loads(redact(request.session)["_messages"])

    assert [entry[:4] for entry in shown] == [
        [MessageEncoder.message_key, 0, 25, f"Your new API token: {MASK}"],
        [MessageEncoder.message_key, 0, 20, "Saved."],
        [MessageEncoder.message_key, 0, 30, "Nothing secret here"],
    ]
    assert shown[1][4] == f"reset password={MASK}"  # the extra tags


def test_hides_secrets_in_message_objects():
    data = {"kept": [Message(25, "otp=123456", extra_tags="a=1; pin=0000"), Message(20, "Hi")]}

    shown = redact(data)["kept"]

    assert shown == [Message(25, f"otp={MASK}"), Message(20, "Hi")]
    assert shown[0].extra_tags == f"a=1; pin={MASK}"
    assert "123456" not in to_json(data)


def test_to_json_hides_secrets_in_values_shown_as_text():
    class Credentials:
        def __str__(self) -> str:
            return "Credentials(user=bob, token=t-1)"

    text = to_json({"creds": Credentials()})

    assert "t-1" not in text
    assert json.loads(text) == {"creds": f"Credentials(user=bob, token={MASK}"}


# -- the setting ---------------------------------------------------------------------


def test_a_bare_string_setting_is_one_pattern(settings):
    settings.SESSIONKIT_REDACT = "password"

    assert redact({"password": "p", "color": "red"}) == {"password": MASK, "color": "red"}


@pytest.mark.parametrize("value", [5, None, ["password", 2], [b"password"]])
def test_patterns_that_are_not_strings_hide_every_value(settings, value, caplog):
    settings.SESSIONKIT_REDACT = value

    assert redact({"color": "red", "size": [1]}) == {"color": MASK, "size": MASK}
    assert redact(["a list"]) == MASK
    assert "every value is hidden" in caplog.text
