"""Behind nginx (BRAINSCAN_BEHIND_PROXY=1) the audit trail and the login lockout see each client's
address, not the proxy's: otherwise one attacker's failed logins would lock a clinician out for
everyone, and every audit event would name the proxy."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client, RequestFactory, override_settings
from django.urls import reverse

from brainscan.proxy import ForwardedForMiddleware
from diagnosis.models import AuditEvent
from tests.factories import PASSWORD
from tests.production.conftest import settings_with

PROXY = "10.9.8.7"  # nginx's address inside the compose network


def address_seen(forwarded_for: str | None) -> str:
    headers = {"HTTP_X_FORWARDED_FOR": forwarded_for} if forwarded_for is not None else {}
    request = RequestFactory().get("/", REMOTE_ADDR=PROXY, **headers)
    ForwardedForMiddleware(lambda r: None)(request)
    return request.META["REMOTE_ADDR"]


@pytest.mark.no_db
@pytest.mark.parametrize("forwarded_for, seen", [
    ("203.0.113.9", "203.0.113.9"),
    ("198.51.100.1, 203.0.113.9", "203.0.113.9"),  # only the entry the proxy added is trusted
    ("2001:db8::5", "2001:db8::5"),
    ("not-an-address", PROXY),
    ("", PROXY),
    (None, PROXY),
])
def test_the_client_address_is_the_last_forwarded_entry(forwarded_for, seen):
    assert address_seen(forwarded_for) == seen


@pytest.mark.no_db
def test_the_switch_turns_on_both_forwarded_headers():
    behind = settings_with(BRAINSCAN_BEHIND_PROXY="1")
    assert behind["MIDDLEWARE"][0] == "brainscan.proxy.ForwardedForMiddleware"
    assert behind["SECURE_PROXY_SSL_HEADER"] == ("HTTP_X_FORWARDED_PROTO", "https")
    direct = settings_with(BRAINSCAN_BEHIND_PROXY="0")
    assert "brainscan.proxy.ForwardedForMiddleware" not in direct["MIDDLEWARE"]
    assert "SECURE_PROXY_SSL_HEADER" not in direct


def login(client: Client, username: str, password: str, address: str):
    return client.post(reverse("login"), {"username": username, "password": password},
                       REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=address)


@pytest.mark.django_db
def test_an_attackers_lockout_does_not_lock_the_clinician_out_elsewhere(clinician_a):
    attacker, clinician_desk = "203.0.113.66", "198.51.100.20"
    with override_settings(MIDDLEWARE=["brainscan.proxy.ForwardedForMiddleware", *settings.MIDDLEWARE]):
        for _ in range(settings.AXES_FAILURE_LIMIT):
            login(Client(), clinician_a.username, "wrong password", attacker)
        assert login(Client(), clinician_a.username, PASSWORD, attacker).status_code == 429
        assert login(Client(), clinician_a.username, PASSWORD, clinician_desk).status_code == 302

    failures = AuditEvent.objects.filter(action=AuditEvent.Action.LOGIN_FAILED)
    assert failures.count() >= settings.AXES_FAILURE_LIMIT  # the refused attempt during the lockout counts too
    assert set(failures.values_list("ip_address", flat=True)) == {attacker}
    assert AuditEvent.objects.get(action=AuditEvent.Action.LOGIN).ip_address == clinician_desk
