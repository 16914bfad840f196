"""Studies through the API: submitting (with idempotency and every upload error), reading results, retrying."""

from datetime import timedelta

import pytest
from django.utils import timezone

from diagnosis.models import AuditEvent, Consent, Study
from ml.features import FEATURE_NAMES
from tests.api.helpers import error_of, upload
from tests.factories import PatientFactory, StudyFactory, phantom_bytes

pytestmark = pytest.mark.django_db

STUDIES = "/api/v1/studies/"


def submit(client, patient_code, *files, key=None, field="images"):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    data = {"patient": patient_code, field: list(files) if field == "images" else files[0]}
    return client.post(STUDIES, data, format="multipart", **headers)


# --- Submitting ----------------------------------------------------------------------------------------


def test_a_submission_is_accepted_with_its_url_and_location(api_a, patient_a):
    response = submit(api_a, patient_a.code, upload("a.png", phantom_bytes(1)), field="image")
    assert response.status_code == 202
    body = response.json()
    study = Study.objects.get()
    assert body == {"id": str(study.pk), "status": "queued", "patient": patient_a.code, "rejected": [],
                    "url": f"http://testserver/api/v1/studies/{study.pk}/"}
    assert response["Location"] == body["url"]
    assert study.images.count() == 1
    created = AuditEvent.objects.get(action=AuditEvent.Action.STUDY_CREATED)
    assert created.via == "api" and created.object_id == str(study.pk)


def test_several_images_make_one_study(api_a, patient_a):
    files = [upload(f"{i}.png", phantom_bytes(i)) for i in range(3)]
    assert submit(api_a, patient_a.code, *files).status_code == 202
    assert Study.objects.get().images.count() == 3


def test_good_and_bad_files_together_are_accepted_with_the_bad_ones_listed(api_a, patient_a, settings):
    settings.MAX_UPLOAD_BYTES = 20_000
    response = submit(api_a, patient_a.code, upload("good.png", phantom_bytes(1)),
                      upload("notes.png", b"just some text, not an image"),
                      upload("huge.png", phantom_bytes(2) + b"\0" * 20_000))
    assert response.status_code == 202
    rejected = {row["filename"]: row["code"] for row in response.json()["rejected"]}
    assert rejected == {"notes.png": "unsupported_type", "huge.png": "too_large"}
    assert Study.objects.get().images.count() == 1
    assert AuditEvent.objects.filter(action=AuditEvent.Action.UPLOAD_REJECTED, via="api").count() == 2


def test_same_idempotency_key_returns_the_same_study(api_a, patient_a):
    first = submit(api_a, patient_a.code, upload("a.png", phantom_bytes(1)), key="order-42")
    again = submit(api_a, patient_a.code, upload("a.png", phantom_bytes(1)), key="order-42")
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first
    assert Study.objects.count() == 1
    other = submit(api_a, patient_a.code, upload("a.png", phantom_bytes(1)), key="order-43")
    assert other.json()["id"] != first.json()["id"]


def test_a_replay_returns_the_files_the_first_submission_rejected(api_a, patient_a):
    def files():
        return [upload("good.png", phantom_bytes(1)), upload("Doe_Jane_notes.png", b"not an image"),
                upload("good.png", b"")]

    first = submit(api_a, patient_a.code, *files(), key="order-7")
    again = submit(api_a, patient_a.code, *files(), key="order-7")
    assert first.status_code == again.status_code == 202 and again["Idempotent-Replayed"] == "true"
    assert [row["filename"] for row in first.json()["rejected"]] == ["Doe_Jane_notes.png", "good.png"]
    assert again.json() == first.json()
    # The file names may name the patient: the audit trail keeps what was rejected, never the names.
    assert "Doe_Jane" not in str(list(AuditEvent.objects.values_list("details", flat=True)))


def test_an_idempotency_key_is_per_user(api_a, api_admin, patient_a):
    first = submit(api_a, patient_a.code, upload("a.png", phantom_bytes(1)), key="same-key")
    second = submit(api_admin, patient_a.code, upload("a.png", phantom_bytes(1)), key="same-key")
    assert first.json()["id"] != second.json()["id"]


def test_reusing_an_idempotency_key_for_another_patient_is_422(api_a, clinician_a, patient_a):
    other = PatientFactory(care_team=[clinician_a])
    submit(api_a, patient_a.code, upload("a.png", phantom_bytes(1)), key="k1")
    response = submit(api_a, other.code, upload("a.png", phantom_bytes(1)), key="k1")
    assert response.status_code == 422
    assert error_of(response)["code"] == "idempotency_key_reused"
    assert Study.objects.count() == 1


def test_an_overlong_idempotency_key_is_400(api_a, patient_a):
    response = submit(api_a, patient_a.code, upload("a.png", phantom_bytes(1)), key="k" * 129)
    assert response.status_code == 400
    assert "Idempotency-Key" in error_of(response)["fields"]
    assert not Study.objects.exists()


def test_missing_patient_and_missing_file_are_400_field_errors(api_a, patient_a):
    response = api_a.post(STUDIES, {}, format="multipart")
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid" and set(error["fields"]) == {"patient"}
    no_file = api_a.post(STUDIES, {"patient": patient_a.code}, format="multipart")
    assert no_file.status_code == 400
    assert error_of(no_file)["fields"] == {"images": ["Send at least one image: `image` for one file, or `images` "
                                                      "(repeated) for several."]}


def test_an_unknown_and_an_invisible_patient_read_the_same(api_a, patient_b):
    invisible = submit(api_a, patient_b.code, upload("a.png", phantom_bytes(1)))
    unknown = submit(api_a, "P-NOSUCH00", upload("a.png", phantom_bytes(1)))
    impossible = submit(api_a, "P-\x00", upload("a.png", phantom_bytes(1)))  # PostgreSQL cannot even look it up
    assert invisible.status_code == unknown.status_code == impossible.status_code == 400
    assert invisible.json() == unknown.json() == impossible.json()
    assert not Study.objects.exists()


def test_a_patient_without_consent_is_409_consent_required(api_a, clinician_a):
    patient = PatientFactory(care_team=[clinician_a], consent=False)
    response = submit(api_a, patient.code, upload("a.png", phantom_bytes(1)))
    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "consent_required" and "consent" in error["fields"]["patient"][0]
    assert not Study.objects.exists()


def test_retrying_after_consent_was_withdrawn_is_409_consent_required_too(api_a, clinician_a, patient_a):
    study = StudyFactory(patient=patient_a, submitted_by=clinician_a, images=1, status=Study.Status.CANCELLED,
                         error_code="consent_withdrawn", error="The patient withdrew consent.")
    Consent.objects.filter(patient=patient_a).update(withdrawn_at=timezone.now())
    response = api_a.post(f"{STUDIES}{study.pk}/retry/")
    assert response.status_code == 409
    assert error_of(response)["code"] == "consent_required"


def test_only_oversized_files_is_413(api_a, patient_a, settings):
    settings.MAX_UPLOAD_BYTES = 1_000
    response = submit(api_a, patient_a.code, upload("big.png", phantom_bytes(1)), upload("big2.png", phantom_bytes(2)))
    assert response.status_code == 413
    error = error_of(response)
    assert error["code"] == "too_large"
    assert [row["code"] for row in error["rejected"]] == ["too_large", "too_large"]
    assert "limit" in error["fields"]["images"][0]
    assert not Study.objects.exists()


def test_only_unsupported_files_is_415(api_a, patient_a):
    response = submit(api_a, patient_a.code, upload("scan.png", b"GIF89a not really"),
                      upload("report.pdf", b"%PDF-1.7", "application/pdf"))
    assert response.status_code == 415
    error = error_of(response)
    assert error["code"] == "unsupported_type"
    assert {row["filename"] for row in error["rejected"]} == {"scan.png", "report.pdf"}


def test_only_unreadable_files_is_400(api_a, patient_a):
    truncated = phantom_bytes(1)[:200]
    response = submit(api_a, patient_a.code, upload("cut.png", truncated), upload("empty.png", b""))
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "no_usable_file" and len(error["rejected"]) == 2


def test_too_many_files_is_400(api_a, patient_a, settings):
    settings.MAX_FILES_PER_STUDY = 2
    response = submit(api_a, patient_a.code, *[upload(f"{i}.png", phantom_bytes(i)) for i in range(3)])
    assert response.status_code == 400
    assert "at most 2" in error_of(response)["fields"]["images"][0]


def test_a_text_field_instead_of_a_file_is_400(api_a, patient_a):
    response = api_a.post(STUDIES, {"patient": patient_a.code, "image": "not a file"}, format="multipart")
    assert response.status_code == 400
    assert "image" in error_of(response)["fields"]


# --- Reading results -----------------------------------------------------------------------------------


def test_a_completed_study_has_its_prediction_per_image_and_overall(api_a, study_a):
    response = api_a.get(f"{STUDIES}{study_a.pk}/")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "completed" and body["error"] is None
    assert body["created_at"] and body["started_at"] and body["finished_at"]
    assert len(body["images"]) == 2
    for image in body["images"]:
        prediction = image["prediction"]
        assert prediction["label"] in ("tumor", "no_tumor")
        assert 0 <= prediction["probability"] <= 1 and 0 < prediction["threshold"] < 1
        assert prediction["label"] == ("tumor" if prediction["probability"] >= prediction["threshold"] else "no_tumor")
        assert len(prediction["model_sha256"]) == 64 and prediction["model_version"]
        assert [row["name"] for row in prediction["features"]] == list(FEATURE_NAMES)
        assert len(FEATURE_NAMES) == 13
        assert all(row["contribution"] is not None and len(row["typical_tumor"]) == 2
                   for row in prediction["features"])
        assert prediction["heatmap_url"].endswith(f"/images/{image['id']}/heatmap/")
        assert image["image_url"].endswith(f"/images/{image['id']}/")
    top = max(body["images"], key=lambda image: image["prediction"]["probability"])
    overall = body["prediction"]
    assert overall["probability"] == top["prediction"]["probability"] == study_a.probability
    assert overall["label"] == study_a.label and overall["image"] == top["id"]
    assert overall["heatmap_url"] == top["prediction"]["heatmap_url"]
    assert AuditEvent.objects.filter(action=AuditEvent.Action.STUDY_VIEWED, via="api",
                                     object_id=str(study_a.pk)).count() == 1


def test_the_image_and_heatmap_are_pngs_and_each_access_is_audited(api_a, study_a):
    body = api_a.get(f"{STUDIES}{study_a.pk}/").json()
    image = body["images"][0]
    for url, action in ((image["image_url"], AuditEvent.Action.IMAGE_VIEWED),
                        (image["prediction"]["heatmap_url"], AuditEvent.Action.HEATMAP_VIEWED)):
        response = api_a.get(url, HTTP_ACCEPT="image/png")
        assert response.status_code == 200 and response["Content-Type"] == "image/png"
        assert response["Cache-Control"] == "private, no-store"
        assert b"".join(response.streaming_content)[:8] == b"\x89PNG\r\n\x1a\n"
        assert AuditEvent.objects.filter(action=action, via="api", patient_code=body["patient"]).count() == 1


def test_a_missing_heatmap_is_a_json_404_even_when_asking_for_png(api_a, clinician_a, patient_a):
    study = StudyFactory(patient=patient_a, submitted_by=clinician_a, images=1)
    image = study.images.get()
    response = api_a.get(f"{STUDIES}{study.pk}/images/{image.pk}/heatmap/", HTTP_ACCEPT="image/png")
    assert response.status_code == 404 and response["Content-Type"] == "application/json"
    assert error_of(response)["code"] == "not_found"


def test_a_queued_study_has_no_prediction_yet(api_a, clinician_a, patient_a):
    study = StudyFactory(patient=patient_a, submitted_by=clinician_a, images=1)
    body = api_a.get(f"{STUDIES}{study.pk}/").json()
    assert (body["status"], body["prediction"], body["error"]) == ("queued", None, None)
    assert body["images"][0]["prediction"] is None


def test_a_failed_study_says_why_and_can_be_retried(api_a, clinician_a, patient_a):
    study = StudyFactory(patient=patient_a, submitted_by=clinician_a, images=1, status=Study.Status.FAILED,
                         error_code="service_unavailable", error="The analysis service was unavailable.")
    body = api_a.get(f"{STUDIES}{study.pk}/").json()
    assert body["error"] == {"code": "service_unavailable", "message": "The analysis service was unavailable."}
    retried = api_a.post(f"{STUDIES}{study.pk}/retry/")
    assert retried.status_code == 202
    assert retried.json()["status"] == "queued" and retried["Location"] == retried.json()["url"]
    assert AuditEvent.objects.filter(action=AuditEvent.Action.STUDY_RETRIED, via="api").count() == 1


def test_retrying_a_completed_study_is_409(api_a, study_a):
    response = api_a.post(f"{STUDIES}{study_a.pk}/retry/")
    assert response.status_code == 409
    assert error_of(response)["code"] == "invalid_state"


def test_a_reading_needs_a_completed_study_and_valid_fields(api_a, study_a, clinician_a, patient_a):
    url = f"{STUDIES}{study_a.pk}/reading/"
    invalid = api_a.post(url, {"agrees_with_model": True, "finding": "maybe"}, format="json")
    assert invalid.status_code == 400 and set(error_of(invalid)["fields"]) == {"finding"}
    recorded = api_a.post(url, {"agrees_with_model": False, "finding": "uncertain", "comment": "Compare with MRI."},
                          format="json")
    assert recorded.status_code == 200
    assert recorded.json()["finding"] == "uncertain" and recorded.json()["clinician"] == "clinician_a"
    assert api_a.get(f"{STUDIES}{study_a.pk}/").json()["readings"][0]["comment"] == "Compare with MRI."
    queued = StudyFactory(patient=patient_a, submitted_by=clinician_a, images=1)
    too_early = api_a.post(f"{STUDIES}{queued.pk}/reading/", {"agrees_with_model": True, "finding": "tumor"},
                           format="json")
    assert too_early.status_code == 409 and error_of(too_early)["code"] == "invalid_state"


# --- Listing -------------------------------------------------------------------------------------------


@pytest.fixture
def three_studies(clinician_a, patient_a, admin_user):
    other_patient = PatientFactory(care_team=[clinician_a])
    now = timezone.now()
    return [
        StudyFactory(patient=patient_a, submitted_by=clinician_a, images=0, created_at=now - timedelta(days=10)),
        StudyFactory(patient=other_patient, submitted_by=clinician_a, images=0, created_at=now - timedelta(days=1),
                     status=Study.Status.FAILED, error="x", error_code="x"),
        StudyFactory(patient=patient_a, submitted_by=admin_user, images=0, created_at=now),
    ]


def ids(response) -> list[str]:
    assert response.status_code == 200, response.json()
    return [row["id"] for row in response.json()["results"]]


def test_the_list_is_newest_first_and_filters(api_a, three_studies, patient_a):
    old, failed, newest = (str(study.pk) for study in three_studies)
    assert ids(api_a.get(STUDIES)) == [newest, failed, old]
    assert ids(api_a.get(STUDIES, {"status": "failed"})) == [failed]
    assert ids(api_a.get(STUDIES, {"patient": patient_a.code})) == [newest, old]
    assert ids(api_a.get(STUDIES, {"mine": "true"})) == [failed, old]
    since = (timezone.now() - timedelta(days=2)).date().isoformat()
    assert ids(api_a.get(STUDIES, {"created_after": since})) == [newest, failed]
    assert ids(api_a.get(STUDIES, {"created_before": since})) == [old]


def test_mine_is_the_callers_own_studies_for_administrators_too(api_a, api_admin, three_studies):
    old, failed, newest = (str(study.pk) for study in three_studies)
    assert ids(api_admin.get(STUDIES)) == [newest, failed, old]
    assert ids(api_admin.get(STUDIES, {"mine": "true"})) == [newest]
    assert ids(api_a.get(STUDIES, {"mine": "true"})) == [failed, old]


def test_the_list_is_paginated(api_a, three_studies):
    first = api_a.get(STUDIES, {"page_size": 2}).json()
    assert first["count"] == 3 and len(first["results"]) == 2 and first["next"]
    assert len(api_a.get(first["next"]).json()["results"]) == 1
    beyond = api_a.get(STUDIES, {"page": 9})
    assert beyond.status_code == 404 and error_of(beyond)["code"] == "not_found"


def test_bad_filters_are_400(api_a):
    response = api_a.get(STUDIES, {"status": "done", "created_after": "last week"})
    assert response.status_code == 400
    assert set(error_of(response)["fields"]) == {"status", "created_after"}


def test_a_list_row_summarises_the_study(api_a, study_a):
    row = api_a.get(STUDIES).json()["results"][0]
    assert row["id"] == str(study_a.pk) and row["images"] == 2 and row["label"] == study_a.label
    assert row["patient"] == study_a.patient.code and row["submitted_by"] == "clinician_a"
    listed = AuditEvent.objects.get(action=AuditEvent.Action.STUDY_LISTED)
    assert listed.via == "api" and listed.details == {"page": 1, "shown": 1}


def test_withdrawing_consent_through_the_api_cancels_queued_studies(api_admin, clinician_a, patient_a):
    queued = StudyFactory(patient=patient_a, submitted_by=clinician_a, images=1)
    response = api_admin.delete(f"/api/v1/patients/{patient_a.code}/consent/")
    assert response.json() == {"withdrawn": 1, "studies_cancelled": 1}
    queued.refresh_from_db()
    assert queued.status == Study.Status.CANCELLED
    assert not patient_a.has_active_consent(Consent.Scope.AI_ANALYSIS)
