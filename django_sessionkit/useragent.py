"""Describe a user agent string: browser, operating system and device.

Parsing is done by `ua-parser <https://pypi.org/project/ua-parser/>`_ (the
uap-core regexes). A site sees the same few user agents over and over, so
results are kept in a bounded LRU cache. A :class:`Device` holds only the
parser's names (proper nouns such as "Firefox" or "iPhone"); the words around
them ("Desktop", "on", "Unknown device") are translated when they are shown,
so a cached device renders in the language of each request.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from django.utils.translation import gettext, pgettext

Kind = Literal["desktop", "mobile", "tablet", "bot", "unknown"]

#: Longer strings are cut before parsing: real browsers send far less, and the
#: cut bounds both the regex work and the memory the cache holds.
PARSE_LIMIT = 512
CACHE_SIZE = 1024

# Device families of uap-core that name no particular device.
GENERIC_DEVICES = {
    "Other",
    "Spider",
    "Generic Smartphone",
    "Generic Tablet",
    "Generic Feature Phone",
}
MOBILE_OS = {
    "Android",
    "BlackBerry OS",
    "Firefox OS",
    "HarmonyOS",
    "iOS",
    "KaiOS",
    "Symbian OS",
    "Tizen",
    "Windows Phone",
}
TABLET_DEVICES = {"iPad", "Kindle", "Kindle Fire"}


@dataclass(frozen=True)
class Device:
    """What a user agent says about the browser, operating system and device.

    ``browser`` ("Firefox 133"), ``os`` ("iOS 18.1") and ``model`` ("iPhone")
    are the parser's names, ``""`` when unknown. ``kind`` is one of
    ``"desktop"``, ``"mobile"``, ``"tablet"``, ``"bot"`` or ``"unknown"``.
    """

    browser: str = ""
    os: str = ""
    model: str = ""
    kind: Kind = "unknown"

    @property
    def device(self) -> str:
        """Return the device model, or the translated kind when no model is known."""
        return self.model or self.kind_label

    @property
    def kind_label(self) -> str:
        """Return the kind of device in words: "Desktop", "Mobile", "Tablet", "Bot" or ""."""
        labels = {
            "desktop": pgettext("device kind", "Desktop"),
            "mobile": pgettext("device kind", "Mobile"),
            "tablet": pgettext("device kind", "Tablet"),
            "bot": pgettext("device kind", "Bot"),
        }
        return labels.get(self.kind, "")

    @property
    def is_known(self) -> bool:
        return bool(self.browser or self.os)

    @property
    def is_mobile(self) -> bool:
        return self.kind == "mobile"

    @property
    def is_tablet(self) -> bool:
        return self.kind == "tablet"

    @property
    def is_bot(self) -> bool:
        return self.kind == "bot"

    def __str__(self) -> str:
        if self.browser and self.os:
            return gettext("%(browser)s on %(os)s") % {"browser": self.browser, "os": self.os}
        return self.browser or self.os or gettext("Unknown device")


UNKNOWN = Device()


def describe(user_agent: str | None) -> Device:
    """Return the :class:`Device` that *user_agent* describes (:data:`UNKNOWN` when empty)."""
    if not user_agent or not user_agent.strip():
        return UNKNOWN
    return _describe(user_agent[:PARSE_LIMIT])


@lru_cache(maxsize=CACHE_SIZE)
def _describe(user_agent: str) -> Device:
    from ua_parser import parse

    result = parse(user_agent)
    browser = _name(result.user_agent)
    os = _name(result.os, minor=True)
    family = result.device.family if result.device else ""
    brand = (result.device.brand or "") if result.device else ""
    os_family = result.os.family if result.os else ""
    generic = family in GENERIC_DEVICES or brand.startswith("Generic")
    model = "" if generic else family

    kind: Kind
    if family == "Spider":
        kind = "bot"
    elif (
        family in TABLET_DEVICES
        or "Tablet" in family
        or "Tablet" in brand
        # Android tablets leave "Mobile" out of the user agent; phones send it.
        or (os_family == "Android" and "Mobile" not in user_agent)
    ):
        kind = "tablet"
    elif os_family in MOBILE_OS or family in {"iPhone", "iPod"} or "Mobile" in browser:
        kind = "mobile"
    elif os:
        kind = "desktop"
    else:
        kind = "unknown"
    return Device(browser=browser, os=os, model=model, kind=kind)


def _name(part: object, *, minor: bool = False) -> str:
    """Return "Family major[.minor]" of a ua-parser user agent or OS, "" when unknown."""
    family = getattr(part, "family", None)
    if not family or family == "Other":
        return ""
    version = [getattr(part, "major", None)]
    if minor:
        version.append(getattr(part, "minor", None))
    numbers = []
    for number in version:
        if not number:
            break
        numbers.append(number)
    return " ".join([family, ".".join(numbers)]) if numbers else family
