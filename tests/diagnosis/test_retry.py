"""Running a failed study again: allowed when a new run can help, refused alike on the web and the API otherwise."""

import pytest
from django.urls import reverse

from diagnosis import services
from diagnosis.models import AuditEvent, Study
from tests.api.helpers import error_of, token_client
from tests.conftest import logged_in
from tests.factories import StudyFactory

pytestmark = pytest.mark.django_db

UNREADABLE = "Image 1 could not be read from storage (truncated file). Upload the scan again in a new study."


def failed(patient, clinician, code: str, error: str = "Why it failed.") -> Study:
    return StudyFactory(patient=patient, submitted_by=clinician, images=1, status=Study.Status.FAILED,
                        error_code=code, error=error, attempts=3)


def assert_unchanged(study: Study) -> None:
    fresh = Study.objects.get(pk=study.pk)
    assert (fresh.status, fresh.error_code, fresh.error) == (study.status, study.error_code, study.error)
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.STUDY_RETRIED).exists()


@pytest.mark.parametrize("persona", ["clinician_a", "admin"])
def test_a_study_whose_scan_cannot_be_read_is_not_run_again(persona, personas, clinician_a, patient_a):
    study = failed(patient_a, clinician_a, "unreadable_image", UNREADABLE)
    assert not services.can_retry(study)
    with pytest.raises(services.InvalidState, match="Upload the scan again in a new study"):
        services.retry_study(user=personas[persona], study=study)
    assert_unchanged(study)


@pytest.mark.parametrize("persona", ["clinician_a", "admin"])
def test_the_web_page_says_why_the_study_is_not_run_again(persona, personas, clinician_a, patient_a):
    study = failed(patient_a, clinician_a, "unreadable_image", UNREADABLE)
    response = logged_in(personas[persona]).post(reverse("study-retry", args=[study.pk]), follow=True)
    assert response.redirect_chain == [(reverse("study-detail", args=[study.pk]), 302)]
    assert "This study cannot be run again" in response.content.decode()
    assert_unchanged(study)


@pytest.mark.parametrize("persona", ["clinician_a", "admin"])
def test_the_api_refuses_with_the_service_message(persona, personas, clinician_a, patient_a):
    study = failed(patient_a, clinician_a, "unreadable_image", UNREADABLE)
    response = token_client(personas[persona]).post(f"/api/v1/studies/{study.pk}/retry/")
    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "invalid_state" and "Upload the scan again in a new study" in error["message"]
    assert_unchanged(study)


@pytest.mark.parametrize("persona", ["clinician_a", "admin"])
@pytest.mark.parametrize("code", ["service_unavailable", "attempts_exhausted"])
def test_a_study_that_may_succeed_next_time_is_run_again(persona, code, personas, clinician_a, patient_a):
    study = failed(patient_a, clinician_a, code)
    assert services.can_retry(study)
    services.retry_study(user=personas[persona], study=study)
    study.refresh_from_db()
    assert (study.status, study.error_code, study.attempts) == (Study.Status.QUEUED, "", 0)
    event = AuditEvent.objects.get(action=AuditEvent.Action.STUDY_RETRIED)
    assert event.actor == personas[persona] and event.details == {"previous_error": code}


@pytest.mark.parametrize("code", ["service_unavailable", "unreadable_image"])
def test_clinician_b_cannot_run_a_study_of_clinician_a_again(code, client_b, clinician_a, clinician_b, patient_a):
    study = failed(patient_a, clinician_a, code)
    assert client_b.post(reverse("study-retry", args=[study.pk])).status_code == 404
    assert token_client(clinician_b).post(f"/api/v1/studies/{study.pk}/retry/").status_code == 404
    with pytest.raises(services.ServiceError):
        services.retry_study(user=clinician_b, study=study)
    assert_unchanged(study)


def test_a_retry_that_meanwhile_failed_for_good_stays_failed(clinician_a, patient_a):
    study = failed(patient_a, clinician_a, "service_unavailable")
    # Another retry ran in the meantime and found the scan unreadable; this request still holds the old state.
    Study.objects.filter(pk=study.pk).update(error_code="unreadable_image", error=UNREADABLE)
    with pytest.raises(services.InvalidState):
        services.retry_study(user=clinician_a, study=study)
    assert Study.objects.get(pk=study.pk).status == Study.Status.FAILED
