"""``SessionLoginRequiredMixin`` for class-based views, sync and async."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import REDIRECT_FIELD_NAME
from django.http import HttpRequest

from django_sessionkit.decorators import ais_logged_in, is_logged_in
from django_sessionkit.login import aredirect_to_login, redirect_to_login


class SessionLoginRequiredMixin:
    """Require a login before ``dispatch``; see ``session_login_required``."""

    session_key: str | None = None
    login_url: str | None = None
    redirect_field_name: str | None = REDIRECT_FIELD_NAME
    view_is_async: bool

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        parent = super().dispatch  # type: ignore[misc]
        flag_mode = self.session_key is not None
        if self.view_is_async:

            async def checked() -> Any:
                if await ais_logged_in(request, self.session_key):
                    return await parent(request, *args, **kwargs)
                return await aredirect_to_login(
                    request, self.login_url, self.redirect_field_name, test_cookie=flag_mode
                )

            return checked()
        if is_logged_in(request, self.session_key):
            return parent(request, *args, **kwargs)
        return redirect_to_login(
            request, self.login_url, self.redirect_field_name, test_cookie=flag_mode
        )
