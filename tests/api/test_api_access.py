"""Who may do what through the API, for every persona: what a caller may not see is a 404, never a hint."""

import pytest

from diagnosis.models import AuditEvent, Study
from tests.api.helpers import error_of, token_client, upload
from tests.factories import StudyFactory, phantom_bytes

pytestmark = pytest.mark.django_db

PERSONAS = ["clinician_a", "clinician_b", "admin", "anonymous"]


@pytest.fixture
def failed_study_a(study_a):
    Study.objects.filter(pk=study_a.pk).update(status=Study.Status.FAILED, error_code="service_unavailable",
                                                 error="The analysis service was unavailable.")
    return study_a


def urls_of(study, patient) -> dict:
    image = study.images.first()
    base = f"/api/v1/studies/{study.pk}/"
    return {
        "study": base,
        "image": f"{base}images/{image.pk}/",
        "heatmap": f"{base}images/{image.pk}/heatmap/",
        "patient": f"/api/v1/patients/{patient.code}/",
    }


# (method, url key, body) -> expected status per persona: clinician A owns the study, B does not.
READ_RULES = {
    "study": {"clinician_a": 200, "clinician_b": 404, "admin": 200, "anonymous": 401},
    "image": {"clinician_a": 200, "clinician_b": 404, "admin": 200, "anonymous": 401},
    "heatmap": {"clinician_a": 200, "clinician_b": 404, "admin": 200, "anonymous": 401},
    "patient": {"clinician_a": 200, "clinician_b": 404, "admin": 200, "anonymous": 401},
}


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("target", sorted(READ_RULES))
def test_reading_clinician_a_objects(persona, target, personas, study_a, patient_a):
    response = token_client(personas[persona]).get(urls_of(study_a, patient_a)[target])
    assert response.status_code == READ_RULES[target][persona]
    if response.status_code >= 400:
        assert error_of(response)["code"] in {"not_found", "not_authenticated"}


def test_a_404_for_another_clinicians_object_is_the_same_as_for_a_missing_one(api_b, study_a, patient_a):
    hidden = api_b.get(f"/api/v1/studies/{study_a.pk}/")
    missing = api_b.get("/api/v1/studies/00000000-0000-4000-8000-000000000000/")
    assert hidden.json() == missing.json()
    hidden_patient = api_b.get(f"/api/v1/patients/{patient_a.code}/")
    missing_patient = api_b.get("/api/v1/patients/P-NOSUCH00/")
    assert hidden_patient.json() == missing_patient.json()


def test_an_image_is_only_found_under_its_own_study(api_a, study_a, patient_a, clinician_a):
    other = StudyFactory(patient=patient_a, submitted_by=clinician_a, images=1)
    image = study_a.images.first()
    assert api_a.get(f"/api/v1/studies/{other.pk}/images/{image.pk}/").status_code == 404


@pytest.mark.parametrize("persona,expected", [("clinician_a", 202), ("clinician_b", 404), ("admin", 202),
                                              ("anonymous", 401)])
def test_retrying_a_failed_study(persona, expected, personas, failed_study_a):
    response = token_client(personas[persona]).post(f"/api/v1/studies/{failed_study_a.pk}/retry/")
    assert response.status_code == expected
    failed_study_a.refresh_from_db()
    assert failed_study_a.status == (Study.Status.QUEUED if expected == 202 else Study.Status.FAILED)


@pytest.mark.parametrize("persona,expected", [("clinician_a", 200), ("clinician_b", 404), ("admin", 200),
                                              ("anonymous", 401)])
def test_recording_a_reading(persona, expected, personas, study_a):
    response = token_client(personas[persona]).post(f"/api/v1/studies/{study_a.pk}/reading/", {
        "agrees_with_model": True, "finding": "tumor"}, format="json")
    assert response.status_code == expected
    assert study_a.readings.count() == (1 if expected == 200 else 0)


@pytest.mark.parametrize("persona,expected", [("clinician_a", 202), ("clinician_b", 400), ("admin", 202),
                                              ("anonymous", 401)])
def test_submitting_for_clinician_a_patient(persona, expected, personas, patient_a):
    response = token_client(personas[persona]).post("/api/v1/studies/", {
        "patient": patient_a.code, "image": upload("a.png", phantom_bytes(1))}, format="multipart")
    assert response.status_code == expected
    assert Study.objects.count() == (1 if expected == 202 else 0)
    if persona == "clinician_b":
        assert error_of(response)["fields"] == {"patient": ["No patient with this code is available to you."]}


def test_the_study_list_holds_only_what_the_caller_may_see(personas, study_a, patient_b, clinician_b):
    study_b = StudyFactory(patient=patient_b, submitted_by=clinician_b, images=1)
    seen = {name: {row["id"] for row in token_client(user).get("/api/v1/studies/").json()["results"]}
            for name, user in personas.items() if user is not None}
    assert seen == {"clinician_a": {str(study_a.pk)}, "clinician_b": {str(study_b.pk)},
                    "admin": {str(study_a.pk), str(study_b.pk)}}


def test_the_patient_list_holds_only_the_callers_patients(personas, patient_a, patient_b):
    seen = {name: {row["code"] for row in token_client(user).get("/api/v1/patients/").json()["results"]}
            for name, user in personas.items() if user is not None}
    assert seen == {"clinician_a": {patient_a.code}, "clinician_b": {patient_b.code},
                    "admin": {patient_a.code, patient_b.code}}


@pytest.mark.parametrize("persona,expected", [("clinician_a", 403), ("clinician_b", 403), ("admin", 201),
                                              ("anonymous", 401)])
def test_only_administrators_create_patients(persona, expected, personas):
    response = token_client(personas[persona]).post("/api/v1/patients/", {"code": "P-NEW00001"}, format="json")
    assert response.status_code == expected


@pytest.mark.parametrize("method", ["post", "delete"])
@pytest.mark.parametrize("persona,expected", [("clinician_a", 403), ("clinician_b", 403), ("admin", None),
                                              ("anonymous", 401)])
def test_only_administrators_record_or_withdraw_consent(method, persona, expected, personas, patient_a):
    response = getattr(token_client(personas[persona]), method)(f"/api/v1/patients/{patient_a.code}/consent/")
    assert response.status_code == (expected or {"post": 201, "delete": 200}[method])


@pytest.mark.parametrize("persona,expected", [("clinician_a", 200), ("clinician_b", 200), ("admin", 200),
                                              ("anonymous", 401)])
def test_every_signed_in_persona_lists_the_models(persona, expected, personas):
    assert token_client(personas[persona]).get("/api/v1/models/").status_code == expected


def test_refused_reads_leave_no_viewed_event(api_b, study_a, patient_a):
    for url in urls_of(study_a, patient_a).values():
        api_b.get(url)
    viewed = {AuditEvent.Action.STUDY_VIEWED, AuditEvent.Action.IMAGE_VIEWED, AuditEvent.Action.HEATMAP_VIEWED,
              AuditEvent.Action.PATIENT_VIEWED}
    assert not AuditEvent.objects.filter(action__in=viewed).exists()
