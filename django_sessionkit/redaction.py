"""Hide the secrets in decoded session data before it is shown.

A value is hidden when its key contains, ignoring case, one of the patterns
of ``SESSIONKIT_REDACT``; the key itself stays visible, so that an admin sees
*what* a session holds without seeing the secret. Nested dicts and lists are
searched too: ``{"oauth": {"access_token": "..."}}`` hides the token and
keeps ``oauth`` readable.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from django_sessionkit.conf import conf

logger = logging.getLogger(__name__)

MASK = "********"
#: Nesting deeper than this is cut off; pickled session data may even be cyclic.
MAX_DEPTH = 32
TRUNCATED = "…"


def is_secret(key: object, patterns: Iterable[str]) -> bool:
    """Whether *key* contains one of *patterns*, ignoring case."""
    name = str(key).casefold()
    return any(pattern.casefold() in name for pattern in patterns if pattern)


def redact(data: Any, patterns: Iterable[str] | None = None) -> Any:
    """Return a copy of *data* with the values of secret keys replaced by ``********``.

    *patterns* defaults to ``SESSIONKIT_REDACT``. The copy is made of plain
    JSON types: mapping keys become strings, tuples and sets become lists,
    other values are kept as they are (:func:`to_json` shows them with ``str``).
    """
    return _redact(data, tuple(conf.REDACT if patterns is None else patterns), 0)


def _redact(value: Any, patterns: tuple[str, ...], depth: int) -> Any:
    if depth > MAX_DEPTH:
        return TRUNCATED
    if isinstance(value, Mapping):
        return {
            str(key): MASK if is_secret(key, patterns) else _redact(item, patterns, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_redact(item, patterns, depth + 1) for item in value]
    return value


def to_json(data: Any, patterns: Iterable[str] | None = None) -> str:
    """Return *data*, redacted, as indented JSON; values JSON cannot hold are shown with ``str``."""
    return json.dumps(redact(data, patterns), indent=2, ensure_ascii=False, default=str)
