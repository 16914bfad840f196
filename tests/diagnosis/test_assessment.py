"""The worker's service: atomic claims, idempotent storage, failures, retries and the sweeper.

These call the services in-process (the real predictor, the real database); the async path through
a real worker is covered by tests/test_workflow.py and the reliability tests.
"""

from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone

from diagnosis import services
from diagnosis.inference import get_predictor
from diagnosis.models import AuditEvent, Prediction, Study
from tests.factories import StudyFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def study(patient_a, clinician_a):
    return StudyFactory(patient=patient_a, submitted_by=clinician_a, images=2)


def test_assessment_completes_with_one_prediction_per_image(study):
    outcome = services.assess_study(str(study.pk))
    study.refresh_from_db()
    assert outcome == "completed 1 of 1 studies"
    assert study.status == Study.Status.COMPLETED and study.attempts == 1 and study.claim == ""
    predictions = Prediction.objects.filter(image__study=study)
    assert predictions.count() == 2
    assert study.probability == max(p.probability for p in predictions)
    assert study.label == ("tumor" if any(p.label == "tumor" for p in predictions) else "no_tumor")
    for prediction in predictions:
        assert default_storage.open(prediction.heatmap.name).read()[:4] == b"\x89PNG"
        assert prediction.model_sha256 and prediction.latency_ms > 0 and len(prediction.features) == 13


def test_a_second_delivery_does_nothing(study):
    services.assess_study(str(study.pk))
    assert services.assess_study(str(study.pk)).startswith("skipped")
    assert Prediction.objects.filter(image__study=study).count() == 2
    assert AuditEvent.objects.filter(action="prediction.stored").count() == 1


def test_a_study_held_by_a_live_claim_cannot_be_taken(study):
    assert services.claim([study.pk], "first")
    assert services.claim([study.pk], "second") == []
    assert services.assess_study(str(study.pk)).startswith("skipped")
    assert Study.objects.get(pk=study.pk).claim == "first"


def test_an_expired_claim_is_taken_over_and_the_old_holder_cannot_store(study):
    services.claim([study.pk], "crashed")
    Study.objects.filter(pk=study.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    services.assess_study(str(study.pk))
    study.refresh_from_db()
    assert study.status == Study.Status.COMPLETED and study.attempts == 2
    assert not services.finish(study, "crashed", get_predictor())  # its conditional update finds nothing


def test_waiting_studies_are_predicted_together(patient_a, clinician_a, settings):
    settings.INFERENCE_BATCH = 3
    studies = [StudyFactory(patient=patient_a, submitted_by=clinician_a, images=1) for _ in range(4)]
    outcome = services.assess_study(str(studies[0].pk))
    assert outcome == "completed 3 of 3 studies"
    assert Study.objects.filter(status=Study.Status.COMPLETED).count() == 3
    # The batch partners' own tasks arrive later and find nothing to do.
    completed_partner = Study.objects.filter(status=Study.Status.COMPLETED).exclude(pk=studies[0].pk).first()
    assert services.assess_study(str(completed_partner.pk)).startswith("skipped")


def test_an_unreadable_stored_image_fails_the_study_at_once_with_a_reason(study):
    image = study.images.first()
    default_storage.delete(image.file.name)
    default_storage.save(image.file.name, ContentFile(b"garbage"))
    services.assess_study(str(study.pk))
    study.refresh_from_db()
    assert study.status == Study.Status.FAILED and study.error_code == "unreadable_image"
    assert "Image 1 could not be read" in study.error
    assert not Prediction.objects.filter(image__study=study).exists()
    assert AuditEvent.objects.filter(action="prediction.failed", object_id=str(study.pk)).exists()


def test_a_database_error_while_storing_releases_the_study_for_a_retry(study, monkeypatch):
    from django.db import OperationalError

    def broken(*args, **kwargs):
        raise OperationalError("database is gone")

    monkeypatch.setattr(Prediction.objects, "get_or_create", broken)
    with pytest.raises(services.TransientError):
        services.assess_study(str(study.pk))
    study.refresh_from_db()
    assert study.status == Study.Status.QUEUED and study.claim == ""
    assert not Prediction.objects.filter(image__study=study).exists()
    monkeypatch.undo()
    services.assess_study(str(study.pk))
    assert Study.objects.get(pk=study.pk).status == Study.Status.COMPLETED
    assert Prediction.objects.filter(image__study=study).count() == 2


def test_attempts_are_capped(study, settings):
    settings.STUDY_MAX_ATTEMPTS = 2
    Study.objects.filter(pk=study.pk).update(attempts=2)
    services.assess_study(str(study.pk))
    study.refresh_from_db()
    assert study.status == Study.Status.FAILED and study.error_code == "attempts_exhausted"
    assert "did not finish after 2 attempts" in study.error


def test_sweeper_requeues_lost_and_expired_studies(study, patient_a, clinician_a, settings, monkeypatch):
    sent = []
    monkeypatch.setattr("diagnosis.tasks.assess_study_task.apply_async", lambda args, **kw: sent.append(args[0]))
    lost = StudyFactory(patient=patient_a, submitted_by=clinician_a, images=1)
    Study.objects.filter(pk=lost.pk).update(enqueued_at=timezone.now() - timedelta(hours=1))
    services.claim([study.pk], "dead-worker")
    Study.objects.filter(pk=study.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1),
                                             enqueued_at=timezone.now() - timedelta(hours=1))
    fresh = StudyFactory(patient=patient_a, submitted_by=clinician_a, images=1)
    Study.objects.filter(pk=fresh.pk).update(enqueued_at=timezone.now())
    with django_capture_on_commit():
        assert services.requeue_stale() == 2
    assert set(sent) == {str(lost.pk), str(study.pk)}
    assert Study.objects.get(pk=study.pk).status == Study.Status.QUEUED
    assert AuditEvent.objects.filter(action="study.requeued").count() == 2


def django_capture_on_commit():
    from django.test import TestCase

    return TestCase.captureOnCommitCallbacks(execute=True)


def test_failed_study_can_be_run_again_by_its_clinician(study, client_a, client_b):
    Study.objects.filter(pk=study.pk).update(status=Study.Status.FAILED, error="x", error_code="attempts_exhausted",
                                             attempts=3)
    assert client_b.post(reverse("study-retry", args=[study.pk])).status_code == 404
    response = client_a.post(reverse("study-retry", args=[study.pk]))
    assert response.status_code == 302
    study.refresh_from_db()
    assert study.status == Study.Status.QUEUED and study.attempts == 0 and study.error == ""
    event = AuditEvent.objects.get(action="study.retried")
    assert event.details == {"previous_error": "attempts_exhausted"} and event.actor_username == "clinician_a"
    # A completed study cannot be "run again".
    services.assess_study(str(study.pk))
    client_a.post(reverse("study-retry", args=[study.pk]))
    assert Study.objects.get(pk=study.pk).status == Study.Status.COMPLETED


def test_withdrawing_consent_cancels_studies_that_have_not_started(study, patient_a, admin_user):
    consent = patient_a.consents.get()
    assert services.withdraw_consent(consent=consent, actor=admin_user) == 1
    study.refresh_from_db()
    assert study.status == Study.Status.CANCELLED and "withdrew consent" in study.error
    assert services.assess_study(str(study.pk)).startswith("skipped")


def test_activating_another_version_reaches_a_running_worker_at_its_next_study(registry_copy, study):
    first, second = registry_copy("cnn-20990101-000000"), registry_copy("cnn-20990102-000000")
    registry_copy.registry().activate(first)
    assert get_predictor().version == first
    registry_copy.registry().activate(second)
    services.assess_study(str(study.pk))
    assert set(Prediction.objects.filter(image__study=study).values_list("model_version", flat=True)) == {second}


@pytest.mark.usefixtures("media_root")
def test_a_colour_photograph_is_stored_gray_but_refused_by_the_gate_for_its_colour(clinician_a, patient_a):
    import io

    import skimage.data
    from django.core.files.uploadedfile import SimpleUploadedFile
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(skimage.data.chelsea()).save(buffer, "JPEG", quality=90)
    study = services.submit_study(user=clinician_a, patient=patient_a,
                                  uploads=[SimpleUploadedFile("cat.jpg", buffer.getvalue(), "image/jpeg")]).study
    [image] = study.images.all()
    assert image.acquisition == {"modality": "XC"}
    services.assess_study(str(study.pk))
    study.refresh_from_db()
    [prediction] = Prediction.objects.filter(image=image)
    assert study.status == Study.Status.UNASSESSABLE
    assert not prediction.usable and prediction.quality_summary["code"] == "colour"
