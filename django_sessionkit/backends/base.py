"""What every django_sessionkit engine shares: request metadata and activity."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import SESSION_KEY

from django_sessionkit.conf import conf
from django_sessionkit.models import USER_AGENT_MAX_LENGTH


class SessionStorageUnavailable(Exception):
    """The session storage could not be reached to write; nothing was written."""


@dataclass(frozen=True)
class RequestMetadata:
    """Where a request came from, as the privacy settings allow it to be stored."""

    ip: str | None = None
    user_agent: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "user_agent", self.user_agent[:USER_AGENT_MAX_LENGTH])


class SessionKitStore:
    """Mixin for session stores that record user, IP, user agent and activity.

    ``SessionKitMiddleware`` hands the store the request's metadata; the store
    writes it in the same write as the session data. On load the store keeps
    the stored ``last_activity`` so that :meth:`activity_due` can tell, at the
    end of a request that did not save, whether activity should be written.
    """

    request_metadata: RequestMetadata | None = None
    #: ``last_activity`` of the stored session as loaded, None before a load.
    loaded_activity: datetime | None = None

    def set_request_metadata(self, metadata: RequestMetadata) -> None:
        self.request_metadata = metadata

    @staticmethod
    def user_id_from(data: dict[str, Any]) -> str | None:
        """Return the id of the logged-in user recorded in session *data*."""
        value = data.get(SESSION_KEY)
        return None if value is None else str(value)

    def will_save(self) -> bool:
        """Whether SessionMiddleware is about to save this session anyway."""
        modified: bool = getattr(self, "modified", False)
        empty: bool = self.is_empty()  # type: ignore[attr-defined]
        return modified or (settings.SESSION_SAVE_EVERY_REQUEST and not empty)

    def activity_due(self, now: datetime) -> bool:
        """Whether this request should write ``last_activity``."""
        if self.loaded_activity is None or self.will_save():
            return False
        return now - self.loaded_activity >= timedelta(seconds=conf.ACTIVITY_INTERVAL)

    async def adelete_test_cookie(self) -> None:
        # Django's async twin forgets to mark the session modified, so the
        # deletion would never be saved; the sync version does mark it.
        await super().adelete_test_cookie()  # type: ignore[misc]
        self.modified = True

    def touch_activity(self, now: datetime) -> None:
        """Write ``last_activity`` for the stored session; only the session is touched."""
        raise NotImplementedError

    async def atouch_activity(self, now: datetime) -> None:
        raise NotImplementedError
