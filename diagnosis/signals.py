"""Audit logins, logouts and failed logins, whichever view or API they come through."""

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from diagnosis import audit
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
