"""What every django_sessionkit engine shares: request metadata and activity."""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.base import VALID_KEY_CHARS
from django.utils import timezone

from django_sessionkit.conf import activity_interval

logger = logging.getLogger(__name__)

#: The longest user agent stored; the model's column has this length.
USER_AGENT_MAX_LENGTH = 512
#: Control characters (C0, DEL, C1): never stored. A NUL is refused by
#: PostgreSQL's text columns, and none of them belongs in a user agent.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


EPOCH = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)


def to_ms(moment: datetime) -> int:
    """Return *moment* (aware, or naive in the default time zone) as Unix milliseconds."""
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, timezone.get_default_timezone())
    return (moment - EPOCH) // timedelta(milliseconds=1)


def in_settings_form(moment: datetime) -> datetime:
    """Return *moment* aware under ``USE_TZ``, naive in the default time zone otherwise."""
    zone = timezone.get_default_timezone()
    if settings.USE_TZ:
        return timezone.make_aware(moment, zone) if timezone.is_naive(moment) else moment
    return timezone.make_naive(moment, zone) if timezone.is_aware(moment) else moment


def from_ms(value: bytes | str | int | None) -> datetime | None:
    """Return the datetime of a stored Unix time in milliseconds, in the settings' form.

    None stays None. Raise ValueError for anything but a whole number of
    milliseconds in range: the engines store nothing else, so anything else
    is a corrupt entry.
    """
    if value is None:
        return None
    try:
        return in_settings_form(EPOCH + timedelta(milliseconds=int(value)))
    except OverflowError as exc:
        raise ValueError(f"{value!r} is not a time in milliseconds") from exc


#: What a key the engines generate is made of (SessionBase._validate_session_key
#: also refuses keys shorter than 8 characters).
KEY_CHARS = frozenset(VALID_KEY_CHARS)
MIN_KEY_LENGTH = 8


def is_session_key(text: str) -> bool:
    """Whether *text* could be a session key: what tells one from other names in a storage."""
    return len(text) >= MIN_KEY_LENGTH and KEY_CHARS.issuperset(text)


def decoded_data(decode: Callable[[Any], Any], value: Any, where: str) -> dict[str, Any]:
    """Return the session data that *decode* makes of *value*; ``{}`` when it cannot.

    Undecodable data (tampered with, signed with another secret, another
    serializer's) is logged with *where* (a table, a cache), never with a key.
    """
    try:
        data = decode(value)
    except Exception:
        logger.warning("Undecodable session data in %s", where)
        return {}
    return data if isinstance(data, dict) else {}


#: How many unreadable entries :func:`warn_unreadable` remembers having logged.
UNREADABLE_REMEMBERED = 1024
_unreadable_logged: OrderedDict[str, None] = OrderedDict()


def warn_unreadable(logger: logging.Logger, entry: str, message: str, *args: Any) -> None:
    """Log a warning about the unreadable stored entry *entry*, once per entry.

    A corrupt session is met again on every request and every listing that
    reaches it; the log says so once (per process, for the last
    ``UNREADABLE_REMEMBERED`` entries), not on every page. *entry* names the
    entry by something that is not its session key (a public id, a cache key
    digest).
    """
    if entry in _unreadable_logged:
        _unreadable_logged.move_to_end(entry)
        return
    _unreadable_logged[entry] = None
    if len(_unreadable_logged) > UNREADABLE_REMEMBERED:
        _unreadable_logged.popitem(last=False)
    logger.warning(message, *args)


class SessionStorageUnavailable(Exception):
    """The session storage could not be reached to write the session.

    *outcome_unknown* is False when nothing was sent (the connection was
    refused, or could not be made): nothing was changed. It is True when the
    storage may have applied the write all the same (a timeout, a connection
    lost while waiting for the reply): whoever reports the failure must not
    say that nothing was changed.
    """

    def __init__(self, message: str = "", *, outcome_unknown: bool = False) -> None:
        super().__init__(message)
        self.outcome_unknown = outcome_unknown


@dataclass(frozen=True)
class RequestMetadata:
    """Where a request came from, as the privacy settings allow it to be stored."""

    ip: str | None = None
    user_agent: str = ""

    def __post_init__(self) -> None:
        user_agent = CONTROL_CHARACTERS.sub("", self.user_agent)
        object.__setattr__(self, "user_agent", user_agent[:USER_AGENT_MAX_LENGTH])


@dataclass(frozen=True)
class CopiedMetadata:
    """A session's metadata as another engine recorded it, to be written as it is.

    ``migratesessions`` hands it to the destination's store, so that a copy keeps
    its IP address, user agent, creation time and last activity. A field that the
    source did not record is None: the destination records it as for a new save.
    """

    ip: str | None = None
    user_agent: str = ""
    created_at: datetime | None = None
    last_activity: datetime | None = None


class SessionKitStore:
    """Mixin for session stores that record user, IP, user agent and activity.

    ``SessionKitMiddleware`` hands the store the request's metadata; the store
    writes it in the same write as the session data. On load the store keeps
    the stored ``last_activity`` so that :meth:`activity_due` can tell, at the
    end of a request that did not save, whether activity should be written.
    """

    request_metadata: RequestMetadata | None = None
    #: What the next save writes as the metadata instead of the request's and now.
    copied_metadata: CopiedMetadata | None = None
    #: ``last_activity`` of the stored session as loaded, None before a load.
    loaded_activity: datetime | None = None

    def set_request_metadata(self, metadata: RequestMetadata) -> None:
        self.request_metadata = metadata

    def set_copied_metadata(self, metadata: CopiedMetadata) -> None:
        """Write *metadata* (from a copy of the session elsewhere) with the next save."""
        self.copied_metadata = metadata

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
        return now - self.loaded_activity >= timedelta(seconds=activity_interval())

    async def adelete_test_cookie(self) -> None:
        # Django's async twin forgets to mark the session modified, so the
        # deletion would never be saved; the sync version does mark it.
        await super().adelete_test_cookie()  # type: ignore[misc]
        self.modified = True

    def touch_activity(self, now: datetime) -> None:
        """Write ``last_activity`` for the stored session; only the session is touched."""
        raise NotImplementedError
