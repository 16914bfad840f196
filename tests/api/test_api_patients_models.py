"""Patients and consent (administrators write, clinicians read their own) and the model registry."""

import pytest

from diagnosis.models import AuditEvent, Patient
from tests.api.helpers import error_of

pytestmark = pytest.mark.django_db

PATIENTS = "/api/v1/patients/"


def test_a_clinician_sees_their_patients_with_consent_status(api_a, patient_a):
    body = api_a.get(PATIENTS).json()
    assert body["count"] == 1
    row = body["results"][0]
    assert row["code"] == patient_a.code and row["ai_consent"] is True
    assert row["care_team"] == ["clinician_a"]
    assert row["consents"][0]["scope"] == "ai_analysis" and row["consents"][0]["active"] is True
    assert row["url"] == f"http://testserver{PATIENTS}{patient_a.code}/"
    listed = AuditEvent.objects.get(action=AuditEvent.Action.PATIENT_VIEWED)
    assert listed.via == "api" and listed.details == {"page": 1, "shown": 1}


def test_an_administrator_creates_a_patient_and_records_consent(api_admin, clinician_a):
    response = api_admin.post(PATIENTS, {"care_team": ["clinician_a"]}, format="json")
    assert response.status_code == 201
    body = response.json()
    patient = Patient.objects.get(code=body["code"])
    assert body["code"].startswith("P-") and body["ai_consent"] is False and body["care_team"] == ["clinician_a"]
    assert response["Location"] == body["url"]
    created = AuditEvent.objects.get(action=AuditEvent.Action.PATIENT_CREATED)
    assert created.via == "api" and created.patient_code == patient.code
    assert created.details == {"care_team": ["clinician_a"]}

    granted = api_admin.post(f"{PATIENTS}{patient.code}/consent/", {}, format="json")
    assert granted.status_code == 201 and granted.json()["active"] is True
    assert api_admin.get(f"{PATIENTS}{patient.code}/").json()["ai_consent"] is True
    assert AuditEvent.objects.filter(action=AuditEvent.Action.CONSENT_GRANTED, via="api").count() == 1

    withdrawn = api_admin.delete(f"{PATIENTS}{patient.code}/consent/")
    assert withdrawn.json() == {"withdrawn": 1, "studies_cancelled": 0}
    assert api_admin.delete(f"{PATIENTS}{patient.code}/consent/").json()["withdrawn"] == 0
    assert api_admin.get(f"{PATIENTS}{patient.code}/").json()["ai_consent"] is False


def test_patient_codes_are_checked(api_admin, patient_a):
    taken = api_admin.post(PATIENTS, {"code": patient_a.code}, format="json")
    assert taken.status_code == 400
    assert error_of(taken)["fields"] == {"code": ["A patient with this code already exists."]}
    odd = api_admin.post(PATIENTS, {"code": "Jane Doe 1970", "care_team": ["nobody", "\x00"]}, format="json")
    assert odd.status_code == 400 and set(error_of(odd)["fields"]) == {"code", "care_team"}
    assert api_admin.post(PATIENTS, {"code": "WARD7-0042"}, format="json").status_code == 201


def test_an_unknown_consent_scope_is_400(api_admin, patient_a):
    response = api_admin.post(f"{PATIENTS}{patient_a.code}/consent/", {"scope": "marketing"}, format="json")
    assert response.status_code == 400 and "scope" in error_of(response)["fields"]


def test_consent_of_an_unknown_patient_is_404(api_admin):
    assert api_admin.post(f"{PATIENTS}P-NOSUCH00/consent/").status_code == 404


def test_the_models_list_shows_cards_without_the_bulky_test_lists(api_a, settings, tmp_path):
    from diagnosis.selectors import registered_models

    models = registered_models()
    assert models, "the repository ships at least one model"
    body = api_a.get("/api/v1/models/").json()
    assert [row["version"] for row in body] == [m["version"] for m in models]
    assert sum(row["active"] for row in body) == 1
    for row in body:
        assert "test_predictions" not in row["card"]
        assert "test_files" not in row["card"].get("split", {})
        assert row["card"]["version"] == row["version"]
    assert "test_files" in models[0]["card"]["split"]  # it was there to omit
    listed = AuditEvent.objects.get(action=AuditEvent.Action.MODEL_LISTED)
    assert listed.via == "api" and listed.details == {"versions": len(models)}
