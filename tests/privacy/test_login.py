"""Login hardening: lockout after repeated failures (django-axes), audited failures, password validators,
session expiry, and the production headers and cookies (HSTS, CSP, Secure and HttpOnly)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.contrib.sessions.models import Session
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from diagnosis.models import AuditEvent
from tests.factories import PASSWORD
from tests import workers

pytestmark = pytest.mark.django_db


def attempt(client, username, password, path=None):
    return client.post(path or reverse("login"), {"username": username, "password": password})


def test_repeated_failures_lock_the_account_with_429_and_every_failure_is_audited(clinician_a):
    client = Client()
    limit = settings.AXES_FAILURE_LIMIT
    statuses = [attempt(client, "clinician_a", f"wrong-guess-{n}").status_code for n in range(limit)]
    assert statuses == [200] * (limit - 1) + [429]
    locked = attempt(client, "clinician_a", PASSWORD)  # even the right password is refused now
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.content.decode()
    assert "_auth_user_id" not in client.session
    failures = AuditEvent.objects.filter(action="auth.login_failed")
    assert failures.count() == limit + 1
    assert {event.details["username"] for event in failures} == {"clinician_a"}
    assert all(event.ip_address == "127.0.0.1" and event.via == "web" for event in failures)
    trail = json.dumps(list(failures.values("details")))
    assert "wrong-guess" not in trail and PASSWORD not in trail


def test_the_admin_login_is_locked_the_same_way(admin_user):
    client = Client()
    for n in range(settings.AXES_FAILURE_LIMIT):
        response = attempt(client, "admin", f"nope-{n}", reverse("admin:login"))
    assert response.status_code == 429
    assert attempt(client, "admin", PASSWORD, reverse("admin:login")).status_code == 429
    assert AuditEvent.objects.filter(action="auth.login_failed", via="admin").count() > settings.AXES_FAILURE_LIMIT


def test_a_lockout_is_per_account_and_address(clinician_a, clinician_b):
    client = Client()
    for n in range(settings.AXES_FAILURE_LIMIT):
        attempt(client, "clinician_a", f"wrong-{n}")
    response = attempt(client, "clinician_b", PASSWORD)
    assert response.status_code == 302 and response["Location"] == reverse("worklist")
    assert AuditEvent.objects.filter(action="auth.login", actor=clinician_b).exists()


def test_a_success_before_the_limit_resets_the_count(clinician_a):
    client = Client()
    for n in range(settings.AXES_FAILURE_LIMIT - 1):
        attempt(client, "clinician_a", f"wrong-{n}")
    assert attempt(client, "clinician_a", PASSWORD).status_code == 302
    client.post(reverse("logout"))
    assert attempt(client, "clinician_a", "wrong-again").status_code == 200


def test_password_validators():
    for weak, reason in [("Sh0rt-pass", "at least 12 characters"), ("password1234", "too common"),
                         ("203948572039", "entirely numeric")]:
        with pytest.raises(ValidationError, match=reason):
            validate_password(weak)
    validate_password("a-long-hospital-passphrase")


def test_the_admin_refuses_a_weak_password_for_a_new_account(admin_client_):
    weak = admin_client_.post(reverse("admin:auth_user_add"), {
        "username": "newdoctor", "password1": "short1", "password2": "short1", "usable_password": "true"})
    assert weak.status_code == 200 and "at least 12 characters" in weak.content.decode()
    assert not get_user_model().objects.filter(username="newdoctor").exists()
    strong = admin_client_.post(reverse("admin:auth_user_add"), {
        "username": "newdoctor", "password1": "copper-kettle-morning-47", "password2": "copper-kettle-morning-47",
        "usable_password": "true"})
    assert strong.status_code == 302
    event = AuditEvent.objects.get(action="user.changed")
    assert event.details["username"] == "newdoctor" and "copper" not in json.dumps(event.details)


def test_sessions_expire_server_side_and_end_with_the_browser(clinician_a):
    client = Client()
    response = attempt(client, "clinician_a", PASSWORD)
    cookie = response.cookies[settings.SESSION_COOKIE_NAME]
    assert cookie["httponly"] and cookie["samesite"] == "Lax"
    assert not cookie["max-age"] and not cookie["expires"]  # a browser session cookie
    session = Session.objects.get(session_key=cookie.value)
    lifetime = session.expire_date - timezone.now()
    assert timedelta(seconds=settings.SESSION_COOKIE_AGE - 60) < lifetime <= timedelta(
        seconds=settings.SESSION_COOKIE_AGE)
    assert client.get(reverse("worklist")).status_code == 200
    Session.objects.filter(pk=session.pk).update(expire_date=timezone.now() - timedelta(seconds=1))
    expired = client.get(reverse("worklist"))
    assert expired.status_code == 302 and expired["Location"].startswith(reverse("login"))


def test_csp_is_sent_in_every_mode(client_a):
    policy = client_a.get(reverse("worklist"))["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy


# What a browser sees from the production settings, measured in a process started with them.
PRODUCTION_PROBE = """
import json, django
django.setup()
from django.contrib.auth import get_user_model
from django.test import Client
from django.test.utils import override_settings

user = get_user_model().objects.get(username="clinician_a")
user.set_password(PASSWORD)  # hashed with the production hashers (the tests use a fast one)
user.save()

# Only the static files storage differs: the manifest one needs collectstatic, which a test does not run.
with override_settings(STORAGES={"default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
                                 "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}):
    client = Client()
    plain = client.get("/login/")
    page = client.get("/login/", secure=True)
    login = client.post("/login/", {"username": "clinician_a", "password": PASSWORD}, secure=True)

def cookie(response, name):
    morsel = response.cookies[name]
    return {"secure": bool(morsel["secure"]), "httponly": bool(morsel["httponly"]), "samesite": morsel["samesite"],
            "max-age": morsel["max-age"], "expires": morsel["expires"]}

print(json.dumps({
    "plain": [plain.status_code, plain.get("Location", "")],
    "headers": {name: page.get(name) for name in ("Strict-Transport-Security", "Content-Security-Policy",
        "X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy", "Cross-Origin-Opener-Policy")},
    "csrf": cookie(page, "csrftoken"),
    "login": [login.status_code, login.get("Location", "")],
    "session": cookie(login, "sessionid"),
}))
"""


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_production_headers_and_cookies(clinician_a):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "brainscan.settings", "BRAINSCAN_PRODUCTION": "1",
           "DJANGO_SECRET_KEY": "production-probe-" + "k" * 50, "DJANGO_ALLOWED_HOSTS": "testserver",
           "BRAINSCAN_AUDIT_KEYS": "k1:" + "audit-key-of-the-tests-" * 2,
           "DATABASE_URL": workers.test_database_url(), "BRAINSCAN_VAR_DIR": str(settings.VAR_DIR), "DJANGO_DEBUG": "0"}
    env.pop("BRAINSCAN_X_ACCEL_PREFIX", None)
    result = subprocess.run([sys.executable, "-c", f"PASSWORD = {PASSWORD!r}\n" + PRODUCTION_PROBE], cwd=workers.ROOT,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["plain"] == [301, "https://testserver/login/"]
    headers = seen["headers"]
    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert "unsafe-inline" not in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY" and headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin" and headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert seen["login"] == [302, "/"]
    for name in ("csrf", "session"):
        assert seen[name]["secure"] and seen[name]["httponly"] and seen[name]["samesite"] == "Lax", name
    assert not seen["session"]["max-age"] and not seen["session"]["expires"]
