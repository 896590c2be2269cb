"""Hide the secrets in decoded session data before it is shown.

A value is hidden when its key contains, ignoring case, one of the patterns
of ``SESSIONKIT_REDACT``; the key itself stays visible, so that an admin sees
*what* a session holds without seeing the secret. Secrets are looked for
wherever a key can name them:

* mapping keys, in nested dicts and lists: ``{"oauth": {"access_token": "..."}}``;
* ``[key, value]`` pairs: ``[["password", "..."]]``;
* strings that decode as a JSON object or array, such as the messages that
  ``django.contrib.messages`` keeps in the session (``_messages``), shown
  re-encoded when something in them was hidden;
* ``k=v`` text (``a=1&password=...``, ``a=1; token=...``) and ``key: value``
  text (``Authorization: Bearer ...``), wherever a string holds it, including
  the text of messages and values shown with ``str``.

Matching too much is the safe failure: a hidden value costs a look at the
database, a shown secret cannot be taken back.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote_plus

from django.contrib.auth import BACKEND_SESSION_KEY, SESSION_KEY
from django.contrib.messages.storage.base import Message

from django_sessionkit.conf import conf

logger = logging.getLogger(__name__)

MASK = "********"
#: Nesting deeper than this is cut off; pickled session data may even be cyclic.
MAX_DEPTH = 32
TRUNCATED = "…"
#: Django's own keys that match the default patterns (``auth``) but hold no
#: secret: the user's id and the dotted path of the backend, which the admin
#: shows beside the data anyway. ``_auth_user_hash`` is hidden.
NOT_SECRET = frozenset({SESSION_KEY, BACKEND_SESSION_KEY})

# A key in text: ``k=v`` (a key starts the text or follows a separator) or
# ``key: value`` (a header, YAML, a Python repr). Only the key is matched, so
# that keys inside the value of another are found too (``next=/a?token=...``).
_TEXT_KEY = re.compile(
    r"(?<![^\s&;?,])(?P<assigned>[^\s&;?,=]+)="
    r"|(?<![\w.-])(?P<field>[A-Za-z_][\w.-]*)[\"']?[ \t]*:[ \t]*"
)
#: Where the value after each kind of key ends.
_VALUE_END = {"assigned": re.compile(r"[&;\r\n]"), "field": re.compile(r"[\r\n]")}


def is_secret(key: object, patterns: Iterable[str]) -> bool:
    """Return whether *key* contains one of *patterns*, ignoring case."""
    if isinstance(key, str) and key in NOT_SECRET:
        return False
    name = str(key).casefold()
    return any(pattern.casefold() in name for pattern in patterns if pattern)


def redact(data: Any, patterns: Iterable[str] | None = None) -> Any:
    """Return a copy of *data* with the values of secret keys replaced by ``********``.

    *patterns* defaults to ``SESSIONKIT_REDACT``; a single string is one
    pattern. Patterns that are not strings hide every value. The copy is made
    of plain JSON types: mapping keys become strings, tuples and sets become
    lists, a message stays a message, other values are kept as they are
    (:func:`to_json` shows them with ``str``).
    """
    valid = _patterns(conf.SESSIONKIT_REDACT if patterns is None else patterns)
    if valid is None:
        logger.warning("The redaction patterns are not strings; every value is hidden.")
        return {str(key): MASK for key in data} if isinstance(data, Mapping) else MASK
    return _redact(data, valid, 0)


def to_json(data: Any, patterns: Iterable[str] | None = None) -> str:
    """Return *data*, redacted, as indented JSON; values JSON cannot hold are shown with ``str``."""
    valid = _patterns(conf.SESSIONKIT_REDACT if patterns is None else patterns) or ()
    return json.dumps(
        redact(data, patterns),
        indent=2,
        ensure_ascii=False,
        default=lambda value: _redact_text(str(value), valid, 0),
    )


def _patterns(value: object) -> tuple[str, ...] | None:
    # A bare string is one pattern: split into letters it would hide everything.
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, Iterable):
        return None
    items = tuple(value)
    return items if all(isinstance(item, str) for item in items) else None


def _redact(value: Any, patterns: tuple[str, ...], depth: int) -> Any:
    if depth > MAX_DEPTH:
        return TRUNCATED
    if isinstance(value, str):
        return _redact_text(value, patterns, depth)
    if isinstance(value, Mapping):
        return {
            str(key): MASK if is_secret(key, patterns) else _redact(item, patterns, depth + 1)
            for key, item in value.items()
        }
    if _is_secret_pair(value, patterns):
        return [value[0], MASK]
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_redact(item, patterns, depth + 1) for item in value]
    if isinstance(value, Message):
        # A serializer that keeps objects (pickle) stores messages as they are.
        tags = value.extra_tags
        return Message(
            value.level,
            _redact_text(str(value.message), patterns, depth + 1),
            extra_tags=None if tags is None else _redact_text(str(tags), patterns, depth + 1),
        )
    return value


def _is_secret_pair(value: Any, patterns: tuple[str, ...]) -> bool:
    # [["password", "..."]]: what a dict's items become when stored as a list.
    return (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and isinstance(value[0], str)
        and is_secret(value[0], patterns)
    )


def _redact_text(text: str, patterns: tuple[str, ...], depth: int) -> str:
    """Return *text* with the secrets it holds hidden, or *text* itself if it holds none."""
    if depth > MAX_DEPTH:
        return TRUNCATED
    if text.lstrip()[:1] in ("{", "["):
        try:
            decoded = json.loads(text)
        except ValueError:
            pass
        else:
            if isinstance(decoded, (dict, list)):
                shown = _redact(decoded, patterns, depth + 1)
                return text if shown == decoded else json.dumps(shown, ensure_ascii=False)
    parts: list[str] = []
    shown_to = 0
    for match in _TEXT_KEY.finditer(text):
        if match.start() < shown_to:
            continue  # inside a value already hidden
        kind = match.lastgroup or "field"
        key = unquote_plus(match[kind]) if kind == "assigned" else match[kind]
        if not is_secret(key, patterns):
            continue
        start = match.end()
        end_match = _VALUE_END[kind].search(text, start)
        end = len(text) if end_match is None else end_match.start()
        if text[start:end].strip():
            parts += [text[shown_to:start], MASK]
            shown_to = end
    return "".join(parts) + text[shown_to:] if parts else text
