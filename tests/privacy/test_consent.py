"""Consent for AI analysis: required to submit or re-run a study; withdrawing it cancels what has not started.
Both through the clinician's form and the administrators' actions, and audited."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from diagnosis import services
from diagnosis.models import AuditEvent, Consent, Prediction, Study
from tests.factories import PatientFactory, StudyFactory
from tests.privacy.conftest import png_upload, stored_files

pytestmark = pytest.mark.django_db


def post_study(client, patient):
    return client.post(reverse("study-new"), {"patient": patient.pk, "images": [png_upload()]})


def admin_action(client, model: str, action: str, ids) -> None:
    response = client.post(reverse(f"admin:diagnosis_{model}_changelist"),
                           {"action": action, "_selected_action": [str(pk) for pk in ids]})
    assert response.status_code == 302


@pytest.mark.parametrize("state", ["never", "withdrawn"])
def test_the_form_refuses_a_patient_without_active_consent_and_stores_nothing(media_root, client_a, clinician_a,
                                                                              state):
    patient = PatientFactory(care_team=[clinician_a], consent=state == "withdrawn")
    if state == "withdrawn":
        Consent.objects.filter(patient=patient).update(withdrawn_at=timezone.now())
    form = client_a.get(reverse("study-new")).content.decode()
    assert f"{patient.code} (no AI consent)" in form
    response = post_study(client_a, patient)
    assert response.status_code == 400
    assert f"Patient {patient.code} has no active consent for AI analysis" in response.content.decode()
    assert not Study.objects.exists() and stored_files(media_root) == {}


def test_consent_recorded_by_an_admin_action_lets_the_clinician_submit(media_root, admin_client_, admin_user,
                                                                      client_a, clinician_a):
    patient = PatientFactory(care_team=[clinician_a], consent=False)
    assert post_study(client_a, patient).status_code == 400
    admin_action(admin_client_, "patient", "grant_ai_consent", [patient.pk])
    consent = Consent.objects.get(patient=patient)
    assert consent.is_active and consent.recorded_by == admin_user
    event = AuditEvent.objects.get(action="consent.granted")
    assert (event.actor, event.via, event.patient_code) == (admin_user, "admin", patient.code)
    assert post_study(client_a, patient).status_code == 302


def test_withdrawing_by_admin_action_cancels_only_studies_not_yet_started(media_root, admin_client_, admin_user,
                                                                          clinician_a, patient_a):
    queued = [StudyFactory(patient=patient_a, submitted_by=clinician_a) for _ in range(2)]
    running = StudyFactory(patient=patient_a, submitted_by=clinician_a, status=Study.Status.PROCESSING)
    done = StudyFactory(patient=patient_a, submitted_by=clinician_a, status=Study.Status.COMPLETED)
    other = StudyFactory(submitted_by=clinician_a)  # another patient's queued study
    admin_action(admin_client_, "patient", "withdraw_ai_consent", [patient_a.pk])
    states = dict(Study.objects.values_list("pk", "status"))
    assert [states[study.pk] for study in queued] == ["cancelled", "cancelled"]
    assert (states[running.pk], states[done.pk], states[other.pk]) == ("processing", "completed", "queued")
    cancelled = Study.objects.get(pk=queued[0].pk)
    assert cancelled.error_code == "consent_withdrawn" and "withdrew consent" in cancelled.error
    event = AuditEvent.objects.get(action="consent.withdrawn")
    assert (event.actor, event.via, event.patient_code) == (admin_user, "admin", patient_a.code)
    assert event.details == {"scope": "ai_analysis", "studies_cancelled": 2}
    assert not patient_a.has_active_consent(Consent.Scope.AI_ANALYSIS)


def test_withdrawing_from_the_consent_list_does_the_same(media_root, admin_client_, clinician_a, patient_a):
    study = StudyFactory(patient=patient_a, submitted_by=clinician_a)
    admin_action(admin_client_, "consent", "withdraw", Consent.objects.filter(patient=patient_a).values_list("pk",
                                                                                                            flat=True))
    study.refresh_from_db()
    assert study.status == Study.Status.CANCELLED
    assert AuditEvent.objects.filter(action="consent.withdrawn", patient_code=patient_a.code).count() == 1


def test_a_cancelled_study_is_never_assessed_and_cannot_be_rerun_without_consent(media_root, admin_client_,
                                                                                 client_a, clinician_a, patient_a):
    study = services.submit_study(user=clinician_a, patient=patient_a, uploads=[png_upload()]).study
    admin_action(admin_client_, "patient", "withdraw_ai_consent", [patient_a.pk])
    assert services.assess_study(str(study.pk)).startswith("skipped")  # a late task delivery does nothing
    assert not Prediction.objects.exists()
    response = client_a.post(reverse("study-retry", args=[study.pk]), follow=True)
    assert "has no active consent for AI analysis" in response.content.decode()
    study.refresh_from_db()
    assert study.status == Study.Status.CANCELLED
    assert not AuditEvent.objects.filter(action="study.retried").exists()


def test_withdrawal_by_a_clinician_is_not_possible_through_the_admin(client_a, patient_a):
    response = client_a.post(reverse("admin:diagnosis_patient_changelist"),
                             {"action": "withdraw_ai_consent", "_selected_action": [patient_a.pk]})
    assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))
    assert patient_a.has_active_consent(Consent.Scope.AI_ANALYSIS)
