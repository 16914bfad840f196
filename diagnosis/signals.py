"""Audit logins, logouts and failed logins, whichever view or API they come through; revoke a user's API
tokens when their password changes."""

from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import pre_save
from django.dispatch import receiver

from diagnosis import audit
from diagnosis.api import tokens
from diagnosis.models import AuditEvent


def _via(request) -> str:
    path = getattr(request, "path", "") or ""
    return "api" if path.startswith("/api/") else "admin" if path.startswith("/admin/") else "web"


@receiver(user_logged_in)
def audit_login(sender, request, user, **kwargs):
    audit.record(AuditEvent.Action.LOGIN, actor=user, request=request, via=_via(request))


@receiver(user_logged_out)
def audit_logout(sender, request, user, **kwargs):
    audit.record(AuditEvent.Action.LOGOUT, actor=user, request=request, via=_via(request))


@receiver(user_login_failed)
def audit_failed_login(sender, credentials, request=None, **kwargs):
    # The attempted username is kept (it may be a mistyped real one); the password never is.
    audit.record(AuditEvent.Action.LOGIN_FAILED, request=request, via=_via(request),
                 details={"username": str(credentials.get("username", ""))[:150]})


@receiver(pre_save, sender=settings.AUTH_USER_MODEL)
def revoke_api_tokens_on_password_change(sender, instance, raw=False, update_fields=None, **kwargs):
    # Whatever changed it (the admin, changepassword, a reset): like Django's sessions, tokens end with the
    # password hash they were issued under, so a new password cuts off a leaked token.
    if raw or instance.pk is None or (update_fields is not None and "password" not in update_fields):
        return
    stored = sender._default_manager.filter(pk=instance.pk).values_list("password", flat=True).first()
    if stored is not None and stored != instance.password:
        tokens.revoke_all(user=instance, reason="password_changed")
