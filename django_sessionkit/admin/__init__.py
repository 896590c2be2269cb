"""The session browser of the Django admin, for whatever ``SESSION_ENGINE`` the site uses.

The model registered here, :class:`django_sessionkit.models.Session`, gives
the admin its "Sessions" entry and the ``view_session`` / ``delete_session``
permissions; the pages list the inventory, not that table.

Outside the engine a session is known by its public id only: the detail
URL takes the public id, and no page, URL or attribute holds a session key.

As in ``django.contrib.admin``, ``options`` holds :class:`SessionAdmin`
(permissions, URLs, views), ``changelist`` the list page
(:class:`SessionChangeList`), ``filters`` its sidebar and ``actions`` its
revoke action and the history entries; ``rows`` is what a page shows of a
session, and ``urls`` what the URLs carry.
"""

from __future__ import annotations

import logging

from django.contrib import admin

from django_sessionkit.admin.changelist import ListParams, SessionChangeList, Summary
from django_sessionkit.admin.filters import FilterSpec
from django_sessionkit.admin.options import SessionAdmin
from django_sessionkit.admin.rows import DeletedUser, Moment, RowBuilder
from django_sessionkit.admin.urls import PublicId, PublicIdConverter
from django_sessionkit.models import Session

__all__ = [
    "DeletedUser",
    "FilterSpec",
    "ListParams",
    "Moment",
    "PublicId",
    "PublicIdConverter",
    "RowBuilder",
    "SessionAdmin",
    "SessionChangeList",
    "Summary",
]

logger = logging.getLogger(__name__)

admin.register(Session)(SessionAdmin)
