"""The new-study form, as the upload script uses it (Accept: application/json) and without JavaScript."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from diagnosis.models import AuditEvent, Study
from tests.factories import PatientFactory, phantom_bytes

pytestmark = pytest.mark.django_db
URL = reverse("study-new")
JSON = {"HTTP_ACCEPT": "application/json"}


def png(name="scan.png", seed=1):
    return SimpleUploadedFile(name, phantom_bytes(seed, True), content_type="image/png")


def jpeg(name="scan.jpg", seed=2):
    return SimpleUploadedFile(name, phantom_bytes(seed, False, "JPEG"), content_type="image/jpeg")


def text_as_png(name="notes.png"):
    return SimpleUploadedFile(name, b"Not an image, whatever the name says.\n", content_type="image/png")


def test_form_page_lists_only_my_patients_and_labels_every_control(client_a, patient_a, patient_b):
    page = client_a.get(URL).content.decode()
    assert patient_a.code in page and patient_b.code not in page
    assert '<label for="id_patient">Patient</label>' in page
    assert '<label for="id_images">MRI images</label>' in page
    assert 'multiple' in page and 'id="progress-bar"' in page and 'id="dropzone"' in page


def test_good_files_go_through_and_the_bad_one_is_named_with_its_reason(client_a, clinician_a, patient_a):
    response = client_a.post(URL, {"patient": patient_a.code, "images": [png(), jpeg(), text_as_png()]}, **JSON)
    assert response.status_code == 201
    body = response.json()
    study = Study.objects.get()
    assert body["url"] == reverse("study-detail", args=[study.pk])
    assert [r["filename"] for r in body["rejected"]] == ["notes.png"]
    assert "not a JPEG, PNG, DICOM, NIfTI or .zip file" in body["rejected"][0]["reason"]
    assert body["rejected"][0]["code"] == "unsupported_type"
    assert study.images.count() == 2 and study.submitted_by == clinician_a
    assert AuditEvent.objects.filter(action=AuditEvent.Action.UPLOAD_REJECTED, patient_code=patient_a.code).count() == 1


def test_when_no_file_is_usable_nothing_is_stored_and_each_file_has_its_reason(client_a, patient_a):
    empty = SimpleUploadedFile("empty.png", b"", content_type="image/png")
    response = client_a.post(URL, {"patient": patient_a.code, "images": [text_as_png(), empty]}, **JSON)
    assert response.status_code == 400
    body = response.json()
    assert body["errors"]["images"] == ["None of the files could be used; nothing was stored."]
    reasons = {r["filename"]: r["reason"] for r in body["rejected"]}
    assert set(reasons) == {"notes.png", "empty.png"} and reasons["empty.png"] == "The file is empty."
    assert not Study.objects.exists()


def test_a_patient_without_consent_is_explained_on_the_patient_field(client_a, clinician_a):
    patient = PatientFactory(care_team=[clinician_a], consent=False)
    response = client_a.post(URL, {"patient": patient.code, "images": [png()]}, **JSON)
    assert response.status_code == 400
    assert "no active consent for AI analysis" in response.json()["errors"]["patient"][0]
    assert not Study.objects.exists()


def test_another_clinicians_patient_cannot_be_chosen(client_a, patient_b):
    response = client_a.post(URL, {"patient": patient_b.code, "images": [png()]}, **JSON)
    assert response.status_code == 400
    assert response.json()["errors"]["patient"] == ["That patient is not on your list."]


def test_no_file_chosen(client_a, patient_a):
    response = client_a.post(URL, {"patient": patient_a.code}, **JSON)
    assert response.status_code == 400
    assert response.json()["errors"]["images"] == ["Choose at least one image to upload."]


def test_without_javascript_the_form_redirects_and_reports_the_bad_file(client_a, patient_a):
    response = client_a.post(URL, {"patient": patient_a.code, "images": [png(), text_as_png()]}, follow=True)
    study = Study.objects.get()
    assert response.redirect_chain == [(reverse("study-detail", args=[study.pk]), 302)]
    page = response.content.decode()
    assert "notes.png was not added: The file is not a JPEG, PNG, DICOM, NIfTI or .zip file" in page


def test_without_javascript_all_bad_files_are_listed_on_the_form(client_a, patient_a):
    response = client_a.post(URL, {"patient": patient_a.code, "images": [text_as_png("a.png"), text_as_png("b.png")]})
    assert response.status_code == 400
    page = response.content.decode()
    assert "<strong>a.png</strong>: The file is not a JPEG, PNG, DICOM, NIfTI or .zip file" in page
    assert "<strong>b.png</strong>" in page


def test_anonymous_upload_is_refused(anonymous, patient_a):
    response = anonymous.post(URL, {"patient": patient_a.code, "images": [png()]})
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert not Study.objects.exists()
