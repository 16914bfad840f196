"""Consent for AI analysis: required to submit or re-run a study; withdrawing it cancels what has not started,
and a study running at that moment is cancelled by its worker with no result kept.
Both through the clinician's form and the administrators' actions, and audited."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from diagnosis import services
from diagnosis.inference import get_predictor
from diagnosis.models import AuditEvent, Consent, Prediction, Study
from tests.factories import PatientFactory, StudyFactory
from tests.privacy.conftest import png_upload, stored_files

pytestmark = pytest.mark.django_db


def post_study(client, patient):
    return client.post(reverse("study-new"), {"patient": patient.code, "images": [png_upload()]})


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


def test_each_study_cancelled_by_a_withdrawal_is_audited_with_the_reason(admin_user, clinician_a, patient_a):
    queued = [StudyFactory(patient=patient_a, submitted_by=clinician_a) for _ in range(2)]
    services.withdraw_consent(consent=patient_a.consents.get(), actor=admin_user, via="api")
    events = AuditEvent.objects.filter(action="study.cancelled")
    assert sorted(events.values_list("object_id", flat=True)) == sorted(str(study.pk) for study in queued)
    for event in events:
        assert (event.actor, event.via, event.patient_code) == (admin_user, "api", patient_a.code)
        assert event.details == {"reason": "consent_withdrawn"}


def claimed_when_consent_is_withdrawn(study, admin_user) -> str:
    """Claim the study as a worker would, then withdraw the patient's consent while it runs."""
    token = services.new_claim_token()
    assert services.claim([study.pk], token)
    assert services.withdraw_consent(consent=study.patient.consents.get(), actor=admin_user) == 0
    assert Study.objects.get(pk=study.pk).status == Study.Status.PROCESSING
    return token


def assert_cancelled_without_prediction(study) -> None:
    study.refresh_from_db()
    assert study.status == Study.Status.CANCELLED and study.error_code == "consent_withdrawn"
    assert "withdrew consent" in study.error and study.claim == ""
    assert not Prediction.objects.exists()
    assert not AuditEvent.objects.filter(action="prediction.stored").exists()
    event = AuditEvent.objects.get(action="study.cancelled")
    assert (event.object_id, event.actor, event.via) == (str(study.pk), None, "worker")
    assert event.details == {"reason": "consent_withdrawn"}


@pytest.mark.parametrize("run_ended_by", ["transient_error", "dead_worker"])
def test_a_study_running_at_withdrawal_is_cancelled_when_a_worker_next_claims_it(media_root, admin_user, clinician_a,
                                                                                patient_a, run_ended_by):
    study = StudyFactory(patient=patient_a, submitted_by=clinician_a)
    token = claimed_when_consent_is_withdrawn(study, admin_user)
    if run_ended_by == "transient_error":
        services.release(study, token)  # back in the queue, as after a database or storage outage
    else:  # its lease runs out, and the sweeper or a redelivery comes for it
        Study.objects.filter(pk=study.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert services.assess_study(str(study.pk)).startswith("skipped")
    assert_cancelled_without_prediction(study)
    assert services.assess_study(str(study.pk)).startswith("skipped")  # and stays so for any later delivery
    assert AuditEvent.objects.filter(action="study.cancelled").count() == 1


def test_a_withdrawal_while_the_model_runs_stores_no_prediction_and_no_heatmap(
        media_root, admin_user, clinician_a, patient_a, monkeypatch, django_capture_on_commit_callbacks):
    study = StudyFactory(patient=patient_a, submitted_by=clinician_a, images=2)
    predictor = get_predictor()

    class WithdrawnMeanwhile:
        version = predictor.version

        def assess(self, images, **options):
            assessments = predictor.assess(images, **options)
            services.withdraw_consent(consent=patient_a.consents.get(), actor=admin_user)
            return assessments

    monkeypatch.setattr("diagnosis.services.assessment.get_predictor", WithdrawnMeanwhile)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.assess_study(str(study.pk)) == "completed 0 of 1 studies"
    assert_cancelled_without_prediction(study)
    assert all(name.startswith("studies/") for name in stored_files(media_root))  # the heatmaps were removed


def test_a_recorded_consent_cannot_be_rewritten_in_the_admin(admin_client_, patient_a):
    """Why there is no 'consent changed' event: a consent is granted or withdrawn, never edited."""
    consent = patient_a.consents.get()
    url = reverse("admin:diagnosis_consent_change", args=[consent.pk])
    response = admin_client_.post(url, {"patient": patient_a.pk, "scope": "ai_analysis",
                                        "granted_at_0": "2001-01-01", "granted_at_1": "00:00:00"})
    assert response.status_code == 302
    assert Consent.objects.get(pk=consent.pk).granted_at == consent.granted_at
    assert not AuditEvent.objects.filter(action__startswith="consent.").exists()
