"""Submitting a study through the web form: permissions, consent and bad input."""

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from diagnosis.models import AuditEvent, Consent, Study, StudyImage
from ml.imaging import Limits
from tests.factories import PatientFactory, phantom_bytes

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_root")]


def upload(name, data, content_type="image/png"):
    return SimpleUploadedFile(name, data, content_type=content_type)


def post(client, patient, *files, json=False, follow=False):
    headers = {"HTTP_ACCEPT": "application/json"} if json else {}
    return client.post(reverse("study-new"), {"patient": patient.code, "images": list(files)}, follow=follow,
                       **headers)


def stored_files() -> list[str]:
    """Every file under the storage's studies/ prefix."""
    def walk(prefix):
        try:
            folders, files = default_storage.listdir(prefix)
        except FileNotFoundError:
            return []
        return [f"{prefix}/{f}" for f in files] + [name for d in folders for name in walk(f"{prefix}/{d}")]

    return walk("studies")


def test_form_lists_only_my_patients_and_marks_missing_consent(client_a, patient_a, patient_b):
    no_consent = PatientFactory(care_team=[patient_a.care_team.first()], consent=False)
    page = client_a.get(reverse("study-new")).content.decode()
    assert patient_a.code in page and patient_b.code not in page
    assert f"{no_consent.code} (no AI consent)" in page


def test_good_submission_stores_images_and_audits(client_a, patient_a):
    response = post(client_a, patient_a, upload("a.png", phantom_bytes(1)),
                    upload("b.jpg", phantom_bytes(2, False, "JPEG")))
    study = Study.objects.get()
    assert response.status_code == 302 and study.status == Study.Status.QUEUED and study.enqueued_at
    images = list(study.images.all())
    assert [i.position for i in images] == [0, 1] and {i.source_format for i in images} == {"PNG", "JPEG"}
    for image in images:
        assert default_storage.open(image.file.name).read()[:4] == b"\x89PNG"
    event = AuditEvent.objects.get(action="study.created")
    assert event.actor_username == "clinician_a" and event.patient_code == patient_a.code
    assert event.details == {"images": 2, "series": False, "rejected_files": 0} and event.ip_address == "127.0.0.1"


@pytest.mark.parametrize("name,data,reason", [
    ("empty.png", b"", "empty"),
    ("truncated.png", phantom_bytes(3)[:300], "damaged or incomplete"),
    ("page.png", b"<html><body>hello</body></html>", "not a JPEG, PNG, DICOM, NIfTI or .zip"),
    ("vector.png", b"<svg xmlns='http://www.w3.org/2000/svg'><rect/></svg>", "not a JPEG, PNG, DICOM, NIfTI or .zip"),
    ("magic.jpg", b"GIF89a" + b"\0" * 100, "not a JPEG, PNG, DICOM, NIfTI or .zip"),
])
def test_bad_file_alone_is_refused_with_a_message_and_nothing_stored(client_a, patient_a, name, data, reason):
    response = post(client_a, patient_a, upload(name, data))
    assert response.status_code == 400
    assert reason in response.content.decode() and name in response.content.decode()
    assert not Study.objects.exists() and not StudyImage.objects.exists() and not stored_files()
    assert AuditEvent.objects.filter(action="upload.rejected").count() == 1


def test_one_bad_file_does_not_cost_the_good_ones(client_a, patient_a):
    response = post(client_a, patient_a, upload("good1.png", phantom_bytes(1)), upload("bad.png", b"not an image"),
                    upload("good2.png", phantom_bytes(2)), json=True)
    assert response.status_code == 201
    body = response.json()
    assert [r["filename"] for r in body["rejected"]] == ["bad.png"]
    assert Study.objects.get().images.count() == 2
    detail = client_a.get(body["url"])
    assert "bad.png was not added" in detail.content.decode()


def test_oversized_and_too_many_pixels(client_a, patient_a, settings):
    settings.MAX_UPLOAD_BYTES = 10_000
    response = post(client_a, patient_a, upload("big.png", phantom_bytes(1, size=400)))
    assert "the limit is" in response.content.decode()
    settings.MAX_UPLOAD_BYTES = 10_000_000
    settings.IMAGE_LIMITS = Limits(max_pixels=100 * 100)
    response = post(client_a, patient_a, upload("wide.png", phantom_bytes(1, size=200)))
    assert "the limit is 10,000" in response.content.decode()
    assert not Study.objects.exists()


def test_the_files_of_one_request_share_a_pixel_budget(client_a, patient_a, settings):
    settings.MAX_REQUEST_PIXELS = 224 * 224 * 2
    response = post(client_a, patient_a, *[upload(f"{i}.png", phantom_bytes(i)) for i in range(3)], follow=True)
    assert "2.png was not added: The files sent together hold more than 100,352 pixels" in response.content.decode()
    assert Study.objects.get().images.count() == 2


def test_too_many_files(client_a, patient_a, settings):
    settings.MAX_FILES_PER_STUDY = 2
    response = post(client_a, patient_a, *[upload(f"{i}.png", phantom_bytes(i)) for i in range(3)])
    assert response.status_code == 400 and "a study holds at most 2" in response.content.decode()


def test_patient_outside_my_care_team_is_refused(client_a, patient_b):
    response = post(client_a, patient_b, upload("a.png", phantom_bytes(1)))
    assert response.status_code == 400
    assert "not on your list" in response.content.decode()
    assert not Study.objects.exists()


def test_patient_without_consent_is_refused_with_the_reason(client_a, patient_a):
    Consent.objects.filter(patient=patient_a).update(withdrawn_at="2026-01-01T00:00:00Z")
    response = post(client_a, patient_a, upload("a.png", phantom_bytes(1)))
    assert response.status_code == 400
    assert "no active consent for AI analysis" in response.content.decode()
    assert not Study.objects.exists() and not stored_files()


def test_anonymous_is_sent_to_login(anonymous, patient_a):
    response = anonymous.post(reverse("study-new"), {"patient": patient_a.code})
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_storage_failure_leaves_nothing_half_stored(client_a, patient_a, monkeypatch):
    from django.core.files.storage import FileSystemStorage

    calls = {"n": 0}
    real_save = FileSystemStorage.save

    def fail_on_second(storage, name, content, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return real_save(storage, name, content, *args, **kwargs)

    monkeypatch.setattr(FileSystemStorage, "save", fail_on_second)
    with pytest.raises(OSError):
        post(client_a, patient_a, upload("a.png", phantom_bytes(1)), upload("b.png", phantom_bytes(2)))
    assert not Study.objects.exists() and not StudyImage.objects.exists() and not stored_files()
