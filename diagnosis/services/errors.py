"""What a service refuses (the message is meant for the user) and what is worth trying again."""

from __future__ import annotations

from celery.exceptions import SoftTimeLimitExceeded
from django.db import DatabaseError

from diagnosis.inference import ModelUnavailable


class ServiceError(Exception):
    """A request that cannot be carried out; the message is meant for the user."""

    code = "invalid"


class NotAllowed(ServiceError):
    code = "not_allowed"


class ConsentRequired(ServiceError):
    code = "consent_required"


class InvalidState(ServiceError):
    """The study is not in a state that allows this action (for example, a retry of a completed study)."""

    code = "invalid_state"


class NothingUsable(ServiceError):
    """None of the uploaded files could be used; nothing was stored."""

    code = "no_usable_file"

    def __init__(self, message: str, rejections: list):
        super().__init__(message)
        self.rejections = rejections


class TransientError(Exception):
    """Worth trying again later: the database, storage or model was briefly unavailable."""


def _transient_errors() -> tuple[type[BaseException], ...]:
    errors = [DatabaseError, OSError, TimeoutError, ModelUnavailable, SoftTimeLimitExceeded]
    try:
        from botocore.exceptions import BotoCoreError, ClientError

        errors += [BotoCoreError, ClientError]
    except ImportError:
        pass
    return tuple(errors)


TRANSIENT_ERRORS = _transient_errors()
