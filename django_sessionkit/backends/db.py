"""Database sessions that record user, IP, user agent and activity.

``SESSION_ENGINE = "django_sessionkit.backends.db"``. Sessions are stored as
Django's db engine stores them, in ``django_sessionkit.models.Session``; the
metadata travels in the same INSERT or UPDATE as the data, and loading is the
same single SELECT.
"""

from __future__ import annotations

import logging
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from django.contrib.sessions.backends.base import CreateError
from django.contrib.sessions.backends.db import SessionStore as DBStore
from django.db import router
from django.utils import timezone

from django_sessionkit.backends.base import RequestMetadata, SessionKitStore
from django_sessionkit.public_id import public_id
from django_sessionkit.users import user_pk

if TYPE_CHECKING:
    from django_sessionkit.models import Session

logger = logging.getLogger(__name__)

#: What an UPDATE writes. ``created_at`` never changes after the INSERT; ``public_id``
#: changes only when SECRET_KEY was rotated since the last save; ``ip`` and
#: ``user_agent`` are added only when the store knows them.
UPDATE_FIELDS = ("public_id", "session_data", "expire_date", "user", "last_activity")
REQUEST_FIELDS = ("ip", "user_agent")


if TYPE_CHECKING:
    _StoreBase = DBStore
else:
    _StoreBase = object


class ModelMetadataMixin(SessionKitStore, _StoreBase):
    """Write the metadata of a model-backed store (db and cached_db) with its data.

    Goes before Django's db store class in the bases. Django's ``save()`` stays
    in charge of transactions and of ``CreateError`` / ``UpdateError``; this
    mixin only fills the model instance it saves and remembers what it loads.
    """

    #: Whether the save in progress is an INSERT (``must_create``).
    _inserting = False
    #: IP and user agent as stored, when known: a new row made outside a
    #: request (``cycle_key()`` in a command or a Channels consumer) keeps them.
    _stored_metadata: RequestMetadata | None = None

    @classmethod
    def get_model_class(cls) -> type[Session]:
        from django_sessionkit.models import Session

        return Session

    def _remember(self, row: Session | None) -> Session | None:
        if row is not None:
            self.loaded_activity = row.last_activity
            self._stored_metadata = RequestMetadata(ip=row.ip, user_agent=row.user_agent)
        return row

    def _get_session_from_db(self) -> Session | None:
        return self._remember(super()._get_session_from_db())  # type: ignore[misc]

    async def _aget_session_from_db(self) -> Session | None:
        return self._remember(await super()._aget_session_from_db())  # type: ignore[misc]

    def _user_pk(self, data: dict[str, Any]) -> Any:
        user_id = self.user_id_from(data)
        if user_id is None:
            return None
        field = self.get_model_class()._meta.get_field("user")
        pk = user_pk(user_id, field.target_field)  # type: ignore[union-attr, unused-ignore]
        if pk is None:
            logger.warning("Session names a user id the user model cannot hold; storing none")
        return pk

    def _fill(self, obj: Session, data: dict[str, Any]) -> Session:
        """Add the metadata to the instance Django's ``save()`` is about to write."""
        obj.public_id = public_id(obj.session_key)
        obj.user_id = self._user_pk(data)  # type: ignore[attr-defined, unused-ignore]
        copied = self.copied_metadata
        now = timezone.now()
        obj.last_activity = self.loaded_activity = (copied and copied.last_activity) or now
        if copied is not None and copied.created_at is not None:
            obj.created_at = copied.created_at
        given = self.request_metadata or copied
        metadata = given or self._stored_metadata
        if metadata is not None:
            obj.ip, obj.user_agent = metadata.ip, metadata.user_agent
        if given is not None or self._inserting:
            self._stored_metadata = RequestMetadata(ip=obj.ip, user_agent=obj.user_agent)
        if not self._inserting:
            # Django updates with force_update and no field list, which would
            # overwrite created_at, and IP / user agent with blanks when the
            # store is used outside a request. Bind the field list to this one
            # instance's save() so that Django's save() keeps its error handling.
            fields = UPDATE_FIELDS + (REQUEST_FIELDS if given is not None else ())
            if copied is not None and copied.created_at is not None:
                fields += ("created_at",)
            obj.save = partial(obj.save, update_fields=fields)  # type: ignore[method-assign]
        return obj

    def create_model_instance(self, data: dict[str, Any]) -> Session:
        return self._fill(cast("Session", super().create_model_instance(data)), data)

    async def acreate_model_instance(self, data: dict[str, Any]) -> Session:
        instance = await super().acreate_model_instance(data)
        return self._fill(cast("Session", instance), data)

    def save(self, must_create: bool = False) -> None:
        self._inserting = must_create
        try:
            super().save(must_create)
        except CreateError as error:
            # Django takes any IntegrityError of an INSERT for a key collision
            # and create() retries with a new key. If the key is still free,
            # the INSERT failed for another reason (the session's user was
            # deleted meanwhile): retrying would loop forever, so raise that.
            key = self.session_key
            if error.__context__ is None or key is None or self.exists(key):
                raise
            raise error.__context__ from None

    async def asave(self, must_create: bool = False) -> None:
        self._inserting = must_create
        try:
            await super().asave(must_create)
        except CreateError as error:
            key = self.session_key
            if error.__context__ is None or key is None or await self.aexists(key):
                raise
            raise error.__context__ from None

    def touch_activity(self, now: datetime) -> None:
        if self.session_key is None:
            return
        model = self.get_model_class()
        using = router.db_for_write(model)
        model.objects.using(using).filter(session_key=self.session_key).update(last_activity=now)
        self.loaded_activity = now


class SessionStore(ModelMetadataMixin, DBStore):
    """Django's database session store, plus user, IP, user agent and activity."""
