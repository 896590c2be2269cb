from __future__ import annotations

import pytest
from django.utils import translation

from django_sessionkit.useragent import UNKNOWN, Device, _describe, describe

FIREFOX_UBUNTU = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
)
CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
SAFARI_IPAD = (
    "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)
CHROME_ANDROID_REDUCED = (
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36"
)
CHROME_ANDROID_TABLET = (
    "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)


def test_firefox_on_ubuntu():
    device = describe(FIREFOX_UBUNTU)

    assert device == Device(browser="Firefox 133", os="Ubuntu", model="", kind="desktop")
    assert device.device == "Desktop"
    assert str(device) == "Firefox 133 on Ubuntu"
    assert (device.is_mobile, device.is_tablet, device.is_bot) == (False, False, False)


def test_safari_on_iphone():
    device = describe(SAFARI_IPHONE)

    assert device.browser == "Mobile Safari 18"
    assert device.os == "iOS 18.1"
    assert device.device == "iPhone"
    assert device.is_mobile
    assert str(device) == "Mobile Safari 18 on iOS 18.1"


def test_chrome_on_windows():
    device = describe(CHROME_WINDOWS)

    assert (device.browser, device.os, device.device) == ("Chrome 131", "Windows 10", "Desktop")
    assert device.kind == "desktop"


def test_googlebot_is_a_bot():
    device = describe(GOOGLEBOT)

    assert device.is_bot
    assert device.browser == "Googlebot 2"
    assert device.os == ""
    assert device.device == "Bot"
    assert str(device) == "Googlebot 2"


def test_ipad_is_a_tablet():
    device = describe(SAFARI_IPAD)

    assert device.is_tablet
    assert device.device == "iPad"


def test_android_tablet_and_generic_android_phone():
    tablet = describe(CHROME_ANDROID_TABLET)
    phone = describe(CHROME_ANDROID_REDUCED)

    assert tablet.is_tablet
    assert phone.is_mobile
    # The reduced user agent's "K" names no device: shown as the kind instead.
    assert phone.model == ""
    assert phone.device == "Mobile"


@pytest.mark.parametrize("user_agent", ["", None, "   "])
def test_empty_user_agent_is_unknown(user_agent):
    device = describe(user_agent)

    assert device is UNKNOWN
    assert not device.is_known
    assert (device.browser, device.os, device.device, device.kind) == ("", "", "", "unknown")
    assert str(device) == "Unknown device"


def test_unparsable_user_agent_is_unknown():
    device = describe("<script>alert(1)</script>/1.0")

    assert device == UNKNOWN
    assert str(device) == "Unknown device"


def test_results_are_cached_and_long_strings_cut():
    _describe.cache_clear()
    describe(FIREFOX_UBUNTU)
    describe(FIREFOX_UBUNTU)
    describe(FIREFOX_UBUNTU + "x" * 2000)
    describe(FIREFOX_UBUNTU + "x" * 3000)

    info = _describe.cache_info()
    # The second of each pair is a hit: the long ones are cut to one entry.
    assert (info.hits, info.misses) == (2, 2)


def test_cached_devices_hold_no_translated_words():
    _describe.cache_clear()
    with translation.override("fr"):
        device = describe(CHROME_WINDOWS)

    # The words are made when shown, in the language active then.
    assert describe(CHROME_WINDOWS) is device
    assert (device.browser, device.os, device.model, device.kind) == (
        "Chrome 131",
        "Windows 10",
        "",
        "desktop",
    )
    assert str(device) == "Chrome 131 on Windows 10"
