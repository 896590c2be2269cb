"""What the session browser's URLs carry: a public id, never a session key; the list's filters.

The list's parameters are read and written here only: whatever else a query
string holds is dropped, so that no link or redirect carries it on.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from django.http import HttpRequest, QueryDict
from django.urls import register_converter

from django_sessionkit.public_id import LENGTH

logger = logging.getLogger(__name__)

PUBLIC_ID = re.compile(rf"[0-9a-f]{{{LENGTH}}}")

SEARCH_VAR = "q"
PAGE_VAR = "p"
ORDER_VAR = "o"
STATUS_VAR = "status"
AUTH_VAR = "auth"
ACTIVITY_VAR = "activity"
USER_VAR = "user"
#: Query parameters of the list; anything else in the query string is ignored.
LIST_VARS = (SEARCH_VAR, PAGE_VAR, ORDER_VAR, STATUS_VAR, AUTH_VAR, ACTIVITY_VAR, USER_VAR)
#: The list's parameters, carried through a detail or confirmation page and back.
FILTERS_VAR = "_changelist_filters"


class PublicId(str):
    """A public id on its way into a URL of the session browser.

    Django's admin builds change URLs of related objects from their primary
    key (for instance on a user's delete confirmation), and the primary key
    of a session is its key. The detail URL accepts only values of this
    type, so such a link cannot be built: the key never lands in a URL.
    """


class PublicIdConverter:
    """Path converter of the session browser's URLs: a public id, never a session key."""

    regex = PUBLIC_ID.pattern

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: object) -> str:
        if not isinstance(value, PublicId):
            raise ValueError("Session admin URLs take a PublicId.")
        return str(value)


register_converter(PublicIdConverter, "sessionkit_public_id")


# -- the query string -------------------------------------------------------------------


def list_params(params: QueryDict) -> QueryDict:
    """Return the list's own parameters found in *params*, without NUL characters."""
    # PostgreSQL refuses NUL in text; no username, address or id holds one.
    kept = QueryDict(mutable=True)
    for name in LIST_VARS:
        if name in params:
            kept.setlist(name, [value.replace("\x00", "") for value in params.getlist(name)])
    return kept


def list_query_string(query: str) -> str:
    """Return the list's own parameters found in the query string *query*, re-encoded."""
    return list_params(QueryDict(query)).urlencode()


def list_link(
    request: HttpRequest,
    changes: dict[str, Any] | None = None,
    *,
    keep: Sequence[str] = LIST_VARS,
) -> str:
    """Return ``?`` and the list's query string with *changes* (None removes a parameter).

    Any change of filter goes back to the first page.
    """
    params = list_params(request.GET)
    query = QueryDict(mutable=True)
    for name in keep:
        values = params.getlist(name)
        if values:
            query.setlist(name, values)
    changes = dict(changes or {})
    if PAGE_VAR not in changes:
        changes[PAGE_VAR] = None
    for name, value in changes.items():
        if value is None:
            query.pop(name, None)
        else:
            query[name] = str(value)
    return "?" + query.urlencode()
