"""Recording a consent that is already active returns the record that stands: no duplicate, no second event."""

from __future__ import annotations

import pytest
from django.urls import reverse

from diagnosis import services
from diagnosis.models import AuditEvent, Consent
from tests.api.helpers import token_client
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db


def test_granting_an_active_scope_again_returns_the_standing_consent(admin_user):
    patient = PatientFactory(consent=False)
    first = services.grant_consent(patient=patient, actor=admin_user)
    again = services.grant_consent(patient=patient, actor=admin_user)
    assert again == first and Consent.objects.filter(patient=patient).count() == 1
    assert AuditEvent.objects.filter(action="consent.granted").count() == 1


def test_after_a_withdrawal_a_new_grant_is_a_new_record(admin_user):
    patient = PatientFactory(consent=False)
    withdrawn = services.grant_consent(patient=patient, actor=admin_user)
    services.withdraw_consent(consent=withdrawn, actor=admin_user)
    granted = services.grant_consent(patient=patient, actor=admin_user)
    assert granted != withdrawn and granted.is_active
    assert AuditEvent.objects.filter(action="consent.granted").count() == 2


def test_posting_consent_twice_through_the_api_keeps_one_record(admin_user):
    patient = PatientFactory(consent=False)
    api = token_client(admin_user)
    first, second = (api.post(f"/api/v1/patients/{patient.code}/consent/", {}, format="json") for _ in range(2))
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json() and second.json()["active"] is True
    assert Consent.objects.filter(patient=patient).count() == 1
    assert AuditEvent.objects.filter(action="consent.granted", via="api").count() == 1


def test_adding_a_consent_in_the_admin_goes_through_the_same_rule(admin_client_, admin_user):
    patient = PatientFactory(consent=False)
    form = {"patient": patient.pk, "scope": "ai_analysis", "granted_at_0": "2026-01-05", "granted_at_1": "09:30:00"}
    first = admin_client_.post(reverse("admin:diagnosis_consent_add"), form)
    second = admin_client_.post(reverse("admin:diagnosis_consent_add"), form, follow=True)
    assert first.status_code == 302 and "already recorded" in second.content.decode()
    consent = Consent.objects.get(patient=patient)
    assert consent.granted_at.date().isoformat() == "2026-01-05" and consent.recorded_by == admin_user
    assert AuditEvent.objects.filter(action="consent.granted", via="admin").count() == 1
