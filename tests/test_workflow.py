"""The clinical workflow end to end: web form -> study -> real worker over Redis -> prediction."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from diagnosis.models import AuditEvent, Prediction, Study
from tests.conftest import logged_in
from tests.factories import PatientFactory, UserFactory, phantom_bytes
from tests.workers import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]



def upload(name: str, data: bytes, content_type: str = "image/png") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


def test_clinician_submits_two_images_and_gets_a_completed_study(worker):
    clinician = UserFactory(username="alice")
    patient = PatientFactory(care_team=[clinician])
    client = logged_in(clinician)
    response = client.post(reverse("study-new"), {
        "patient": patient.code,
        "images": [upload("a.png", phantom_bytes(1, True)), upload("b.jpg", phantom_bytes(2, False, "JPEG"))],
    })
    assert response.status_code == 302
    study = Study.objects.get()
    assert response["Location"] == reverse("study-detail", args=[study.pk])
    study = wait_for(lambda: Study.objects.filter(pk=study.pk, status=Study.Status.COMPLETED).first(), timeout=90,
                     message=f"study to complete; worker log:\n{worker.log()[-3000:]}")
    predictions = Prediction.objects.filter(image__study=study)
    assert predictions.count() == 2
    assert all(0.0 <= p.probability <= 1.0 and p.heatmap.name and p.features for p in predictions)
    assert study.probability == max(p.probability for p in predictions)
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"study.created", "prediction.started", "prediction.stored"} <= actions

    page = client.get(reverse("study-detail", args=[study.pk]))
    assert page.status_code == 200
    assert b"Tumor probability" in page.content
    heatmap = client.get(reverse("study-heatmap", args=[study.pk, predictions[0].image_id]))
    assert heatmap.status_code == 200 and b"".join(heatmap.streaming_content)[:4] == b"\x89PNG"
