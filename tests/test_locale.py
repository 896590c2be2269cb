from __future__ import annotations

from django.template.loader import render_to_string
from django.utils import translation


def test_french_translation_ships_with_the_app():
    with translation.override("fr"):
        html = render_to_string("django_sessionkit/503.html")

    assert "Service indisponible" in html
    assert "Service unavailable" not in html


def test_the_page_of_a_write_whose_outcome_is_unknown_is_translated_too():
    with translation.override("fr"):
        html = render_to_string("django_sessionkit/503.html", {"outcome_unknown": True})

    assert "peut-être été enregistrée" in html
    assert "Nothing was changed" not in html
    assert "modifié." not in html
