"""The clinician's reading: recorded, updated, audited, and refused where it makes no sense."""

import pytest
from django.urls import reverse

from diagnosis.models import AuditEvent, Reading
from tests.factories import StudyFactory

pytestmark = pytest.mark.django_db


def url(study):
    return reverse("study-reading", args=[study.pk])


def test_a_reading_is_recorded_audited_and_shown(client_a, clinician_a, completed_study):
    response = client_a.post(url(completed_study), {"agrees_with_model": "no", "finding": "uncertain",
                                                    "comment": "  Motion artefact; repeat with contrast.  "})
    assert response.status_code == 302
    assert response["Location"] == reverse("study-detail", args=[completed_study.pk]) + "#reading"
    reading = Reading.objects.get()
    assert (reading.clinician, reading.agrees_with_model, reading.finding) == (clinician_a, False, "uncertain")
    assert reading.comment == "Motion artefact; repeat with contrast."
    event = AuditEvent.objects.get(action=AuditEvent.Action.READING_RECORDED)
    assert event.actor == clinician_a and event.object_id == str(completed_study.pk)
    assert event.details == {"agrees_with_model": False, "finding": "uncertain", "updated": False}
    page = client_a.get(response["Location"]).content.decode()
    assert "Your reading was recorded." in page
    assert "disagrees with the model" in page and "Uncertain, needs further imaging" in page
    assert "Update my reading" in page
    assert 'value="no" id="id_agrees_with_model_1" required checked' in page  # the form shows the stored answer
    assert '<option value="uncertain" selected>' in page


def test_a_second_reading_by_the_same_clinician_updates_the_first(client_a, completed_study):
    client_a.post(url(completed_study), {"agrees_with_model": "yes", "finding": "tumor"})
    client_a.post(url(completed_study), {"agrees_with_model": "no", "finding": "no_tumor"})
    reading = Reading.objects.get()
    assert (reading.agrees_with_model, reading.finding) == (False, "no_tumor")
    updates = AuditEvent.objects.filter(action=AuditEvent.Action.READING_RECORDED).order_by("id")
    assert [event.details["updated"] for event in updates] == [False, True]


def test_an_incomplete_reading_says_what_is_missing(client_a, completed_study):
    response = client_a.post(url(completed_study), {"agrees_with_model": "yes"}, follow=True)
    assert "The reading was not recorded: Final finding: This field is required." in response.content.decode()
    assert not Reading.objects.exists()


def test_no_reading_before_the_assessment_is_complete(client_a, clinician_a, patient_a):
    study = StudyFactory(patient=patient_a, submitted_by=clinician_a, images=1)
    response = client_a.post(url(study), {"agrees_with_model": "yes", "finding": "tumor"}, follow=True)
    assert "A reading can be recorded once the assessment is complete." in response.content.decode()
    assert not Reading.objects.exists()


def test_another_clinician_cannot_read_my_study(client_b, completed_study):
    assert client_b.post(url(completed_study), {"agrees_with_model": "yes", "finding": "tumor"}).status_code == 404
    assert not Reading.objects.exists()


def test_anonymous_reading_goes_to_login(anonymous, completed_study):
    response = anonymous.post(url(completed_study), {"agrees_with_model": "yes", "finding": "tumor"})
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_reading_only_by_post(client_a, completed_study):
    assert client_a.get(url(completed_study)).status_code == 405
