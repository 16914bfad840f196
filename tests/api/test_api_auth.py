"""Token authentication: issue through authenticate() (axes and the audit apply), expiry, revocation, storage."""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from diagnosis.api import tokens
from diagnosis.models import ApiToken, AuditEvent
from tests.api.helpers import error_of
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db

TOKEN_URL = "/api/v1/auth/token/"
MODELS_URL = "/api/v1/models/"


def log_in(client: APIClient, username: str, password: str = PASSWORD):
    return client.post(TOKEN_URL, {"username": username, "password": password}, format="json")


def with_token(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    return client


def test_a_token_from_the_password_authenticates_and_only_its_hash_is_stored(clinician_a, settings):
    settings.API_TOKEN_HOURS = 12
    before = timezone.now()
    response = log_in(APIClient(), "clinician_a")
    assert response.status_code == 201
    secret = response.json()["token"]
    token = ApiToken.objects.get(user=clinician_a)
    assert token.digest == tokens.digest(secret) and secret not in token.digest
    assert not ApiToken.objects.filter(digest=secret).exists()
    expires = token.expires_at
    assert timedelta(hours=12) <= expires - before <= timedelta(hours=12, minutes=1)
    assert response.json()["expires_at"].startswith(expires.strftime("%Y-%m-%dT%H:%M"))

    assert with_token(secret).get(MODELS_URL).status_code == 200
    clinician_a.refresh_from_db()
    assert clinician_a.last_login is not None
    login = AuditEvent.objects.get(action=AuditEvent.Action.LOGIN)
    issued = AuditEvent.objects.get(action=AuditEvent.Action.API_TOKEN_ISSUED)
    assert (login.via, login.actor, issued.via, issued.actor) == ("api", clinician_a, "api", clinician_a)
    assert secret not in str(issued.details)


def test_logging_in_and_out_for_a_token_leaves_no_session(clinician_a):
    client = APIClient()
    log_in(client, "clinician_a", "not-the-password")
    assert AccessAttempt.objects.filter(username="clinician_a").exists()
    response = log_in(client, "clinician_a")
    assert response.status_code == 201 and "sessionid" not in response.cookies
    assert not AccessAttempt.objects.filter(username="clinician_a").exists()  # the lockout count is reset as before
    logout = with_token(response.json()["token"]).delete(TOKEN_URL)
    assert logout.status_code == 204 and "sessionid" not in logout.cookies
    assert not Session.objects.exists()
    assert list(AuditEvent.objects.order_by("id").values_list("action", flat=True)) == [
        "auth.login_failed", "auth.login", "api.token_issued", "api.token_revoked", "auth.logout"]


def test_the_token_lifetime_comes_from_the_setting(clinician_a, settings):
    settings.API_TOKEN_HOURS = 1
    log_in(APIClient(), "clinician_a")
    token = ApiToken.objects.get(user=clinician_a)
    assert token.expires_at - token.created_at == timedelta(hours=1)


def test_wrong_password_is_401_and_audited_as_a_failed_api_login(clinician_a):
    response = log_in(APIClient(), "clinician_a", "not-the-password")
    assert response.status_code == 401
    assert error_of(response)["code"] == "invalid_credentials"
    assert response["WWW-Authenticate"] == "Token"
    failed = AuditEvent.objects.get(action=AuditEvent.Action.LOGIN_FAILED)
    assert failed.via == "api" and failed.details == {"username": "clinician_a"}
    assert not ApiToken.objects.exists()


def test_missing_credentials_are_400_with_field_messages():
    response = APIClient().post(TOKEN_URL, {"username": "someone"}, format="json")
    assert response.status_code == 400
    assert set(error_of(response)["fields"]) == {"password"}


def test_repeated_failures_lock_the_account_out_with_429_json(clinician_a, settings):
    client = APIClient()
    answers = [log_in(client, "clinician_a", "wrong-password") for _ in range(settings.AXES_FAILURE_LIMIT)]
    assert [a.status_code for a in answers[:-1]] == [401] * (settings.AXES_FAILURE_LIMIT - 1)
    locked = log_in(client, "clinician_a")  # even the right password, while locked out
    for response in (answers[-1], locked):
        assert response.status_code == 429
        assert response["Content-Type"] == "application/json"
        assert error_of(response)["code"] == "locked_out"
        assert int(response["Retry-After"]) == settings.AXES_COOLOFF_TIME.total_seconds()
    assert not ApiToken.objects.exists()


def test_an_inactive_account_gets_no_token_and_its_tokens_stop_working(clinician_a):
    secret = log_in(APIClient(), "clinician_a").json()["token"]
    clinician_a.is_active = False
    clinician_a.save()
    assert with_token(secret).get(MODELS_URL).status_code == 401
    assert log_in(APIClient(), "clinician_a").status_code == 401


def test_an_expired_token_is_refused(clinician_a):
    secret = log_in(APIClient(), "clinician_a").json()["token"]
    ApiToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = with_token(secret).get(MODELS_URL)
    assert response.status_code == 401
    assert error_of(response)["code"] == "authentication_failed"


def test_delete_revokes_the_token_of_the_request_only(clinician_a):
    first = log_in(APIClient(), "clinician_a").json()["token"]
    second = log_in(APIClient(), "clinician_a").json()["token"]
    response = with_token(first).delete(TOKEN_URL)
    assert response.status_code == 204
    assert with_token(first).get(MODELS_URL).status_code == 401
    assert with_token(first).delete(TOKEN_URL).status_code == 401
    assert with_token(second).get(MODELS_URL).status_code == 200
    revoked = AuditEvent.objects.get(action=AuditEvent.Action.API_TOKEN_REVOKED)
    assert revoked.via == "api" and revoked.actor == clinician_a
    assert AuditEvent.objects.filter(action=AuditEvent.Action.LOGOUT, via="api").count() == 1


def test_a_password_change_revokes_the_users_tokens_only(clinician_a, admin_user, admin_client_):
    clinician, administrator = (log_in(APIClient(), user.username).json()["token"] for user in (clinician_a,
                                                                                                 admin_user))
    changed = admin_client_.post(reverse("admin:auth_user_password_change", args=[clinician_a.pk]),
                                 {"password1": "a-new-long-passphrase-9", "password2": "a-new-long-passphrase-9"})
    assert changed.status_code == 302
    assert with_token(clinician).get(MODELS_URL).status_code == 401
    assert with_token(administrator).get(MODELS_URL).status_code == 200
    revoked = AuditEvent.objects.get(action=AuditEvent.Action.API_TOKEN_REVOKED)
    assert revoked.details == {"user": "clinician_a", "reason": "password_changed"}

    admin_user.set_password("another-long-passphrase-7")
    admin_user.save()
    assert with_token(administrator).get(MODELS_URL).status_code == 401
    assert log_in(APIClient(), "clinician_a", "a-new-long-passphrase-9").status_code == 201


def test_saving_a_user_without_a_new_password_keeps_their_tokens(clinician_a):
    secret = log_in(APIClient(), "clinician_a").json()["token"]
    clinician_a.first_name = "Ada"
    clinician_a.save()
    log_in(APIClient(), "clinician_a")  # saves last_login
    assert with_token(secret).get(MODELS_URL).status_code == 200


def test_a_new_token_clears_the_users_expired_and_revoked_ones(clinician_a):
    old = log_in(APIClient(), "clinician_a").json()["token"]
    with_token(old).delete(TOKEN_URL)
    log_in(APIClient(), "clinician_a")
    assert ApiToken.objects.filter(user=clinician_a).count() == 1


@pytest.mark.parametrize("header", ["Token", "Token a b", "Token not-a-real-token", "Token \u00e9t\u00e9"])
def test_malformed_or_unknown_tokens_are_401(header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get(MODELS_URL)
    assert response.status_code == 401
    assert error_of(response)["code"] == "authentication_failed"


def test_no_credentials_is_401_with_the_token_challenge():
    response = APIClient().get(MODELS_URL)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert error_of(response)["code"] == "not_authenticated"


def test_delete_with_a_session_has_no_token_to_revoke(clinician_a):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(clinician_a)
    assert client.get(MODELS_URL).status_code == 200  # the browsable API's session login works
    csrf_missing = client.delete(TOKEN_URL)
    assert csrf_missing.status_code == 403  # a session write needs the CSRF token
    assert "CSRF" in error_of(csrf_missing)["message"]
    client = APIClient()
    client.force_login(clinician_a)
    response = client.delete(TOKEN_URL)
    assert response.status_code == 400
    assert error_of(response)["code"] == "not_token_authenticated"


@pytest.mark.parametrize("url", ["/api/v1/", "/api/v1/studies/", "/api/v1/patients/", "/api/v1/models/",
                                 TOKEN_URL])
def test_the_browsable_api_renders_for_a_signed_in_user(url, clinician_a, patient_a):
    client = APIClient()
    client.force_login(clinician_a)
    response = client.get(url, HTTP_ACCEPT="text/html")
    assert response.status_code in (200, 405)  # the token endpoint has no GET, but says so in a page
    assert response["Content-Type"].startswith("text/html")


def test_the_login_page_still_answers_a_lockout_with_its_page(clinician_a, settings):
    """The lockout answer (AXES_LOCKOUT_CALLABLE) is JSON only under /api/."""
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        response = client.post("/login/", {"username": "clinician_a", "password": "wrong-password"})
    assert response.status_code == 429
    assert response["Content-Type"].startswith("text/html")
    assert b"Too many failed logins" in response.content
