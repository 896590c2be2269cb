from __future__ import annotations

from django.apps import AppConfig, apps
from django.contrib.auth import get_user_model
from django.core.checks import Tags, register
from django.core.exceptions import ImproperlyConfigured
from django.db.models.signals import pre_delete
from django.utils.translation import gettext_lazy as _


class SessionKitConfig(AppConfig):
    name = "django_sessionkit"
    verbose_name = _("Sessions")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django_sessionkit import checks
        from django_sessionkit.policies import evict_cached_sessions_of_deleted_user

        register(checks.check_app_order, Tags.compatibility)
        register(checks.check_settings, Tags.compatibility)
        register(checks.check_middleware, Tags.compatibility)
        register(checks.check_redis_cache, Tags.compatibility, Tags.caches)

        # The user model and its proxies: deleting through a proxy sends the
        # signal with the proxy as sender. A receiver for every sender would
        # keep Django from deleting any model's rows without loading them.
        try:
            user_model = get_user_model()
        except ImproperlyConfigured:
            return  # sessions without django.contrib.auth: no user is ever deleted
        for model in apps.get_models():
            if issubclass(model, user_model):
                pre_delete.connect(
                    evict_cached_sessions_of_deleted_user,
                    sender=model,
                    dispatch_uid="django_sessionkit.evict_cached_sessions_of_deleted_user",
                )
