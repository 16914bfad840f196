"""API tokens: issue, find and revoke (the API's own writes; the clinical ones are in diagnosis.services).

A token is 256 random bits shown once to the client; the database keeps only its SHA-256, an
expiry (BRAINSCAN_API_TOKEN_HOURS) and, once the client logs out or the user's password changes, the
time it was revoked. An administrator revokes a token by deleting it in the admin.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from diagnosis import audit
from diagnosis.models import ApiToken, AuditEvent


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue(*, user, request) -> tuple[str, ApiToken]:
    """A new token for `user`: the secret (shown once) and its stored record."""
    now = timezone.now()
    secret = secrets.token_urlsafe(32)
    with transaction.atomic():
        # The user's expired and revoked tokens are of no further use.
        ApiToken.objects.filter(Q(expires_at__lte=now) | Q(revoked_at__isnull=False), user=user).delete()
        token = ApiToken.objects.create(user=user, digest=digest(secret), created_at=now,
                                        expires_at=now + timedelta(hours=settings.API_TOKEN_HOURS))
        audit.record(AuditEvent.Action.API_TOKEN_ISSUED, actor=user, request=request, obj=token, via="api",
                     details={"expires_at": token.expires_at.isoformat()})
    return secret, token


def find(secret: str) -> ApiToken | None:
    """The live (unexpired, unrevoked) token with this secret, with its user; None otherwise."""
    return (ApiToken.objects.select_related("user")
            .filter(digest=digest(secret), revoked_at__isnull=True, expires_at__gt=timezone.now()).first())


def revoke(*, token: ApiToken, request) -> None:
    with transaction.atomic():
        if ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now()):
            audit.record(AuditEvent.Action.API_TOKEN_REVOKED, actor=token.user, request=request, obj=token,
                         via="api")


def revoke_all(*, user, reason: str) -> int:
    """Revoke every live token of `user` (when their password changes, say); returns how many."""
    now = timezone.now()
    with transaction.atomic():
        live = list(ApiToken.objects.select_for_update().filter(user=user, revoked_at__isnull=True,
                                                                 expires_at__gt=now))
        ApiToken.objects.filter(pk__in=[token.pk for token in live]).update(revoked_at=now)
        for token in live:
            audit.record(AuditEvent.Action.API_TOKEN_REVOKED, obj=token,
                         details={"user": user.get_username(), "reason": reason})
    return len(live)


def delete(*, tokens: Iterable[ApiToken], request) -> None:
    """Delete tokens: how an administrator revokes them, effective at once."""
    with transaction.atomic():
        for token in tokens:
            audit.record(AuditEvent.Action.API_TOKEN_REVOKED, request=request, obj=token, via="admin",
                         details={"user": token.user.get_username(), "reason": "deleted"})
            token.delete()
