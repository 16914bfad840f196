"""CSV export of a worklist selection: what is exported, to whom, and that no cell can run as a formula."""

import csv
import io

import pytest
from django.urls import reverse
from django.utils import timezone

from diagnosis import selectors
from diagnosis.models import AuditEvent, Prediction, Study
from diagnosis.selectors import EXPORT_COLUMNS
from tests.conftest import logged_in
from tests.factories import PatientFactory, StudyFactory, UserFactory

pytestmark = pytest.mark.django_db
URL = reverse("study-export")


def rows(response) -> list[dict]:
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="brainscan-studies.csv"'
    assert response.streaming  # written while it is read from the database, never held whole in memory
    reader = csv.reader(io.StringIO(response.getvalue().decode()))
    header = next(reader)
    assert header == EXPORT_COLUMNS
    return [dict(zip(header, row)) for row in reader]


def test_only_the_ticked_studies_are_exported(client_a, clinician_a, patient_a):
    studies = [StudyFactory(patient=patient_a, submitted_by=clinician_a, images=1) for _ in range(3)]
    exported = rows(client_a.get(URL, {"id": [str(studies[0].pk), str(studies[2].pk)]}))
    assert {row["study"] for row in exported} == {str(studies[0].pk), str(studies[2].pk)}
    assert all(row["patient"] == patient_a.code and row["images"] == "1" for row in exported)
    event = AuditEvent.objects.get(action=AuditEvent.Action.STUDY_EXPORTED)
    assert event.actor == clinician_a and event.details == {"studies": 2}


def test_without_a_selection_the_filtered_worklist_is_exported_in_its_order(client_a, clinician_a):
    wanted = PatientFactory(code="P-EXPORT01", care_team=[clinician_a])
    other = PatientFactory(code="P-OTHER002", care_team=[clinician_a])
    done = dict(status=Study.Status.COMPLETED, finished_at=timezone.now())
    low = StudyFactory(patient=wanted, submitted_by=clinician_a, images=0, probability=0.2, label="no_tumor", **done)
    high = StudyFactory(patient=wanted, submitted_by=clinician_a, images=0, probability=0.9, label="tumor", **done)
    StudyFactory(patient=other, submitted_by=clinician_a, images=0)
    exported = rows(client_a.get(URL, {"q": "export", "order": "triage"}))
    assert [row["study"] for row in exported] == [str(high.pk), str(low.pk)]
    assert exported[0]["probability"] == "0.9000" and exported[0]["result"] == "tumor"


def test_every_listed_study_is_exported_across_database_chunks(client_a, clinician_a, patient_a, monkeypatch):
    monkeypatch.setattr(selectors, "EXPORT_CHUNK_SIZE", 2)
    studies = [StudyFactory(patient=patient_a, submitted_by=clinician_a, images=1) for _ in range(5)]
    for number, study in enumerate(studies):  # each study's own model version, whichever chunk it falls in
        Prediction.objects.create(image=study.images.get(), model_version=f"v{number}", model_sha256="0" * 64,
                                  probability=0.1, label="no_tumor", threshold=0.5, heatmap="heatmaps/x.png",
                                  inference_ms=1, latency_ms=1)
    exported = rows(client_a.get(URL))
    assert [row["study"] for row in exported] == [str(study.pk) for study in reversed(studies)]  # newest first
    assert [row["model_version"] for row in exported] == [f"v{number}" for number in reversed(range(5))]
    event = AuditEvent.objects.get(action=AuditEvent.Action.STUDY_EXPORTED)
    assert event.actor == clinician_a and event.details == {"studies": 5}


def test_another_clinicians_studies_never_appear(client_a, clinician_a, clinician_b, patient_a, patient_b):
    mine = StudyFactory(patient=patient_a, submitted_by=clinician_a, images=0)
    theirs = StudyFactory(patient=patient_b, submitted_by=clinician_b, images=0)
    exported = rows(client_a.get(URL, {"id": [str(mine.pk), str(theirs.pk)]}))
    assert [row["study"] for row in exported] == [str(mine.pk)]
    assert rows(client_a.get(URL, {"id": [str(theirs.pk)]})) == []
    assert rows(client_a.get(URL, {"scope": "team"})) == [rows(client_a.get(URL))[0]]


def test_a_malformed_id_is_a_clear_error(client_a):
    response = client_a.get(URL, {"id": "1 OR 1=1"})
    assert response.status_code == 400
    assert response.content == b"A selected study id is not valid."


def test_anonymous_export_goes_to_login(anonymous):
    response = anonymous.get(URL)
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("dangerous", ["=HYPERLINK(\"x\")", "+1+cmd", "-2+3", "@SUM(A1)", "\t=1", "\r=1"])
def test_cells_that_a_spreadsheet_would_run_are_neutralised(dangerous):
    clinician = UserFactory()
    patient = PatientFactory(code=dangerous[:32], care_team=[clinician])
    study = StudyFactory(patient=patient, submitted_by=clinician, images=0, status=Study.Status.FAILED,
                         error=dangerous)
    exported = rows(logged_in(clinician).get(URL, {"id": [str(study.pk)]}))
    assert exported[0]["patient"] == "'" + dangerous[:32]
    assert exported[0]["error"] == "'" + dangerous
    assert exported[0]["status"] == "failed"


def test_a_username_that_looks_like_a_formula_is_neutralised():
    clinician = UserFactory(username="@evil")
    patient = PatientFactory(care_team=[clinician])
    study = StudyFactory(patient=patient, submitted_by=clinician, images=0)
    assert rows(logged_in(clinician).get(URL, {"id": [str(study.pk)]}))[0]["submitted_by"] == "'@evil"
