"""Erasing a patient (admin action): rows and files gone; the append-only audit trail stays as it was, naming
the patient by pseudonymous code only, with the events' details (results, findings) kept."""

from __future__ import annotations

import json

import pytest
from django.core.files.storage import default_storage
from django.urls import reverse

from diagnosis import services
from diagnosis.audit import verify_chain
from diagnosis.models import AuditEvent, Consent, Patient, Prediction, Reading, Study, StudyImage
from tests.privacy.conftest import png_upload, stored_files, submit_and_assess
from tests.privacy.samples import IDENTIFYING_WORDS, dicom_upload, identifiable_mr

pytestmark = pytest.mark.django_db


@pytest.fixture
def patient_with_data(media_root, clinician_a, patient_a, client_a):
    studies = [submit_and_assess(clinician_a, patient_a, [dicom_upload(identifiable_mr()), png_upload(1)]),
               submit_and_assess(clinician_a, patient_a, [png_upload(2)])]
    services.record_reading(user=clinician_a, study=studies[0], agrees_with_model=True, finding="tumor")
    client_a.get(reverse("study-detail", args=[studies[0].pk]))  # viewed: one more audit event naming the patient
    return patient_a, studies


def test_erase_action_deletes_rows_and_every_file(patient_with_data, clinician_b, patient_b, admin_client_,
                                                  admin_user, media_root, django_capture_on_commit_callbacks):
    patient, studies = patient_with_data
    others = submit_and_assess(clinician_b, patient_b, [png_upload(3)])  # another patient's study stays
    images = StudyImage.objects.filter(study__patient=patient)
    names = [name for image in images for name in (image.file.name, image.dicom.name) if name]
    names += list(Prediction.objects.filter(image__in=images).values_list("heatmap", flat=True))
    assert len(names) == 3 + 1 + 3 and all(default_storage.exists(name) for name in names)
    code = patient.code

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client_.post(reverse("admin:diagnosis_patient_changelist"),
                                      {"action": "erase_patients", "_selected_action": [patient.pk]}, follow=True)
    assert f"Erased {code}: 2 studies, 3 images, 7 files." in response.content.decode()

    assert not Patient.objects.filter(code=code).exists()
    assert not Study.objects.filter(patient_id=patient.pk).exists()
    assert not StudyImage.objects.filter(study_id__in=[study.pk for study in studies]).exists()
    assert not Prediction.objects.filter(image__study_id__in=[study.pk for study in studies]).exists()
    assert not Reading.objects.filter(study_id__in=[study.pk for study in studies]).exists()
    assert not Consent.objects.filter(patient_id=patient.pk).exists()
    assert not any(default_storage.exists(name) for name in names)
    remaining = stored_files(media_root)
    assert remaining and all(str(others.pk) in name for name in remaining)  # only patient B's files are left

    erased = AuditEvent.objects.get(action="patient.erased")
    assert (erased.actor, erased.via, erased.patient_code) == (admin_user, "admin", code)
    assert erased.details == {"studies": 2, "images": 3, "files": 7}
    stored = AuditEvent.objects.filter(action="prediction.stored", patient_code=code).first()
    assert {"label", "probability", "model_version"} <= set(stored.details)
    assert AuditEvent.objects.get(action="reading.recorded", patient_code=code).details["finding"] == "tumor"
    trail = json.dumps(list(AuditEvent.objects.filter(patient_code=code).values()), default=str)
    assert AuditEvent.objects.filter(patient_code=code).count() > 5  # created, assessed, read, viewed, erased
    for word in IDENTIFYING_WORDS:
        assert word not in trail, word
    assert verify_chain() == (AuditEvent.objects.count(), None)


def test_a_clinician_cannot_erase(patient_with_data, client_a):
    patient, _ = patient_with_data
    client_a.post(reverse("admin:diagnosis_patient_changelist"),
                  {"action": "erase_patients", "_selected_action": [patient.pk]})
    assert Patient.objects.filter(pk=patient.pk).exists()
    assert not AuditEvent.objects.filter(action="patient.erased").exists()


def test_patients_cannot_be_deleted_around_the_audited_erasure(patient_with_data, admin_client_):
    patient, _ = patient_with_data
    assert admin_client_.get(reverse("admin:diagnosis_patient_delete", args=[patient.pk])).status_code == 403
    changelist = admin_client_.get(reverse("admin:diagnosis_patient_changelist")).content.decode()
    assert "delete_selected" not in changelist and "erase_patients" in changelist
