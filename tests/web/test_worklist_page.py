"""The worklist: who sees which studies, search by patient code, status filter, newest first and triage order."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from diagnosis.models import AuditEvent, Study
from tests.factories import PatientFactory, StudyFactory

pytestmark = pytest.mark.django_db
URL = reverse("worklist")


def listed(response) -> list[str]:
    return [str(study.pk) for study in response.context["page"].object_list]


def study(patient, clinician, minutes_ago: int, **fields) -> Study:
    return StudyFactory(patient=patient, submitted_by=clinician, images=0,
                        created_at=timezone.now() - timedelta(minutes=minutes_ago), **fields)


def test_anonymous_is_sent_to_the_login_page(anonymous):
    response = anonymous.get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_a_clinician_sees_only_their_studies_newest_first(client_a, clinician_a, clinician_b, patient_a, patient_b):
    older = study(patient_a, clinician_a, 30)
    newer = study(patient_a, clinician_a, 5)
    study(patient_b, clinician_b, 1)
    response = client_a.get(URL)
    assert response.status_code == 200
    assert listed(response) == [str(newer.pk), str(older.pk)]
    assert AuditEvent.objects.filter(action=AuditEvent.Action.STUDY_LISTED, actor=clinician_a).exists()


def test_team_scope_adds_colleagues_studies_of_my_patients_only(client_a, clinician_a, clinician_b, patient_b):
    shared = PatientFactory(care_team=[clinician_a, clinician_b])
    colleague = study(shared, clinician_b, 3)
    study(patient_b, clinician_b, 2)
    assert listed(client_a.get(URL)) == []
    assert listed(client_a.get(URL, {"scope": "team"})) == [str(colleague.pk)]


def test_the_administrator_sees_every_study(admin_client_, clinician_a, clinician_b, patient_a, patient_b):
    studies = {str(study(patient_a, clinician_a, 2).pk), str(study(patient_b, clinician_b, 1).pk)}
    assert set(listed(admin_client_.get(URL))) == studies


def test_search_by_part_of_the_patient_code(client_a, clinician_a):
    wanted = PatientFactory(code="P-SEARCH01", care_team=[clinician_a])
    other = PatientFactory(code="P-OTHER001", care_team=[clinician_a])
    hit = study(wanted, clinician_a, 2)
    study(other, clinician_a, 1)
    response = client_a.get(URL, {"q": " search0 "})
    assert listed(response) == [str(hit.pk)]
    assert "P-SEARCH01" in response.content.decode()
    assert "No study matches" in client_a.get(URL, {"q": "nobody"}).content.decode()


def test_status_filter(client_a, clinician_a, patient_a):
    failed = study(patient_a, clinician_a, 2, status=Study.Status.FAILED, error="Could not read the image.")
    study(patient_a, clinician_a, 1)
    assert listed(client_a.get(URL, {"status": "failed"})) == [str(failed.pk)]


def test_triage_order_puts_likely_tumors_first_and_pending_studies_last(client_a, clinician_a, patient_a):
    done = dict(status=Study.Status.COMPLETED)
    low = study(patient_a, clinician_a, 1, probability=0.08, label="no_tumor", **done)
    high = study(patient_a, clinician_a, 20, probability=0.93, label="tumor", **done)
    middle = study(patient_a, clinician_a, 10, probability=0.55, label="tumor", **done)
    pending = study(patient_a, clinician_a, 0)
    assert listed(client_a.get(URL)) == [str(s.pk) for s in (pending, low, middle, high)]
    response = client_a.get(URL, {"order": "triage"})
    assert listed(response) == [str(s.pk) for s in (high, middle, low, pending)]
    page = response.content.decode()
    assert "Highest tumor probability first" in page
    assert '<option value="triage" selected>' in page
    assert page.index("93.0%") < page.index("55.0%") < page.index("8.0%")


def test_rows_show_status_result_and_probability(client_a, clinician_a, patient_a):
    study(patient_a, clinician_a, 1, status=Study.Status.COMPLETED, probability=0.8123, label="tumor")
    page = client_a.get(URL).content.decode()
    assert "Completed" in page and "Tumor suspected" in page and "81.2%" in page
    assert 'class="row-tumor"' in page
