"""Session middleware that records client IP and user agent and writes activity."""

from __future__ import annotations

import ipaddress
import logging

from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from django_sessionkit.backends.base import (
    RequestMetadata,
    SessionKitStore,
    SessionStorageUnavailable,
)
from django_sessionkit.conf import conf, is_whole_number

logger = logging.getLogger(__name__)

TRUNCATE_PREFIX = {4: 24, 6: 48}
#: The headers read on every request, from META: ``request.headers`` would
#: build a mapping of every header first (some 10 us a request) for these two.
USER_AGENT = "HTTP_USER_AGENT"
FORWARDED_FOR = "HTTP_X_FORWARDED_FOR"


def client_ip(request: HttpRequest) -> str | None:
    """Return the client's address, trusting X-Forwarded-For only through known proxies.

    With ``SESSIONKIT_TRUSTED_PROXY_COUNT = n``, each of the *n* proxies
    appended the address it was connected from, so the client is the *n*-th
    entry from the right; anything further left was sent by the client and is
    ignored. With no trusted proxy the header is ignored altogether.
    """
    address = request.META.get("REMOTE_ADDR")
    proxies = conf.SESSIONKIT_TRUSTED_PROXY_COUNT
    # A count of the wrong type trusts no proxy: better the proxy's address
    # than one a client chose.
    if is_whole_number(proxies) and proxies > 0:
        header = request.META.get(FORWARDED_FOR, "")
        forwarded = [part.strip() for part in header.split(",") if part.strip()]
        if len(forwarded) >= proxies:
            address = forwarded[-proxies]
    ip = parse_address(address or "")
    return None if ip is None else str(ip)


def parse_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """Return the IP address in *text*, None if there is none.

    A port is dropped (``203.0.113.9:5678``, ``[2001:db8::1]:443``, as some
    proxies forward them), and an IPv4-mapped IPv6 address (``::ffff:a.b.c.d``,
    as a dual-stack server sees an IPv4 client) is the IPv4 address it maps,
    so that it is stored, truncated and searched as one.
    """
    text = text.strip()
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def stored_ip(address: str | None) -> str | None:
    """Apply ``SESSIONKIT_STORE_IP`` to *address*.

    A value other than ``"full"`` and ``"truncated"`` stores nothing (system
    check ``sessionkit.E001`` reports it): a misspelt privacy setting must not
    store more than was asked.
    """
    mode = conf.SESSIONKIT_STORE_IP
    if address is None or mode not in ("full", "truncated"):
        return None
    if mode == "truncated":
        ip = ipaddress.ip_address(address)
        network = ipaddress.ip_network(f"{ip}/{TRUNCATE_PREFIX[ip.version]}", strict=False)
        return str(network.network_address)
    return address


def request_metadata(request: HttpRequest) -> RequestMetadata:
    """Return what the settings allow us to record about *request*."""
    # Only True stores it: "no" or 0 may well mean no.
    user_agent = (
        request.META.get(USER_AGENT, "") if conf.SESSIONKIT_STORE_USER_AGENT is True else ""
    )
    return RequestMetadata(ip=stored_ip(client_ip(request)), user_agent=user_agent)


class SessionKitMiddleware(SessionMiddleware):
    """Django's ``SessionMiddleware``, plus request metadata, activity and a 503 page.

    Use it in place of ``django.contrib.sessions.middleware.SessionMiddleware``.
    With one of our engines it hands the store the client's IP and user agent,
    writes ``last_activity`` at most once per ``SESSIONKIT_ACTIVITY_INTERVAL``
    and answers 503 with a page when the session storage cannot be written.
    With any other engine it behaves exactly like Django's middleware.
    """

    def process_request(self, request: HttpRequest) -> None:
        super().process_request(request)
        store = request.session
        if isinstance(store, SessionKitStore):
            store.set_request_metadata(request_metadata(request))

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        store = getattr(request, "session", None)
        if isinstance(store, SessionKitStore) and store.activity_due(now := timezone.now()):
            try:
                store.touch_activity(now)
            except SessionStorageUnavailable:
                # Activity is a convenience: a page that saves nothing still works.
                logger.warning("Could not record session activity", exc_info=True)
        try:
            return super().process_response(request, response)
        except SessionStorageUnavailable as exc:
            logger.exception("Session storage unavailable; answering 503")
            return storage_unavailable(request, exc)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        # A view that logs in or out writes the session itself.
        if isinstance(exception, SessionStorageUnavailable):
            logger.error("Session storage unavailable; answering 503", exc_info=exception)
            return storage_unavailable(request, exception)
        return None


def storage_unavailable(request: HttpRequest, exc: SessionStorageUnavailable) -> HttpResponse:
    """Render the page shown when the session could not be saved.

    It says that nothing was changed only when that is known (*exc* was a
    refusal); after a timeout the change may have been applied.
    """
    context = {"outcome_unknown": exc.outcome_unknown}
    return render(request, "django_sessionkit/503.html", context, status=503)
