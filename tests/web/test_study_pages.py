"""The study page and its parts: heatmap controls, probability bar, model link, texture features, live status."""

import json

import pytest
from django.template import Context, Template
from django.urls import reverse

from diagnosis.models import AuditEvent, Prediction, Study
from diagnosis.selectors import model_card
from diagnosis.templatetags.diagnosis_extras import feature_table, figure, probability_meter
from tests.conftest import logged_in
from tests.factories import StudyFactory
from tests.web.conftest import assessed_study

pytestmark = pytest.mark.django_db


def detail(study):
    return reverse("study-detail", args=[study.pk])


def test_completed_study_page_shows_everything_a_clinician_reads(client_a, completed_study):
    response = client_a.get(detail(completed_study))
    assert response.status_code == 200
    page = response.content.decode()
    predictions = Prediction.objects.filter(image__study=completed_study)
    assert predictions.count() == 2
    for prediction in predictions:
        image = prediction.image
        assert reverse("study-heatmap", args=[completed_study.pk, image.pk]) in page
        assert f'alt="MRI slice {image.position + 1} of study {completed_study.short_id}"' in page
        assert f'<label for="heatmap-opacity-{image.pk}">Opacity</label>' in page
        assert f'id="heatmap-toggle-{image.pk}" data-heatmap-toggle checked' in page
        assert prediction.model_version in page
    assert page.count('class="meter-bar"') == 2
    assert "threshold" in page and "Tumor probability" in page
    assert page.count("<details class=\"features\">") == 2
    assert "Record my reading" in page and "Final finding" in page
    assert 'id="print-button"' in page and "Reviewed by" in page
    assert AuditEvent.objects.filter(action=AuditEvent.Action.STUDY_VIEWED, object_id=str(completed_study.pk)).exists()


def test_pending_study_page_says_it_updates_by_itself(client_a, clinician_a, patient_a):
    study = StudyFactory(patient=patient_a, submitted_by=clinician_a, images=1)
    page = client_a.get(detail(study)).content.decode()
    assert 'data-status="queued"' in page
    assert "updates by itself" in page
    assert "Record my reading" not in page
    status = client_a.get(reverse("study-status", args=[study.pk])).json()
    assert status == {"status": "queued", "label": "", "probability": None, "active": True,
                      "progress": {"done": 0, "total": 1}}


def test_status_and_panel_follow_the_study(client_a, completed_study):
    status = client_a.get(reverse("study-status", args=[completed_study.pk])).json()
    assert status["status"] == "completed" and status["active"] is False
    assert status["probability"] == pytest.approx(completed_study.probability)
    panel = client_a.get(reverse("study-panel", args=[completed_study.pk])).content.decode()
    assert "<html" not in panel and 'id="result-badge"' in panel


@pytest.mark.parametrize("persona", ["clinician_a", "admin"])
@pytest.mark.parametrize("code,offered", [("service_unavailable", True), ("attempts_exhausted", True),
                                          ("unreadable_image", False)])
def test_failed_study_explains_and_offers_a_new_attempt_only_when_it_can_help(persona, code, offered, personas,
                                                                               clinician_a, patient_a):
    study = StudyFactory(patient=patient_a, submitted_by=clinician_a, images=1, status=Study.Status.FAILED,
                         error_code=code, error="Why it failed, for the clinician.")
    client = logged_in(personas[persona])
    for name in ("study-detail", "study-panel"):
        page = client.get(reverse(name, args=[study.pk])).content.decode()
        assert "The analysis failed." in page and "Why it failed, for the clinician." in page
        assert (reverse("study-retry", args=[study.pk]) in page) is offered
        assert ("Run the analysis again" in page) is offered


def test_another_clinician_gets_no_failed_study_nor_its_retry(client_b, clinician_a, patient_a):
    study = StudyFactory(patient=patient_a, submitted_by=clinician_a, images=1, status=Study.Status.FAILED,
                         error_code="service_unavailable", error="The analysis service was unavailable.")
    assert client_b.get(detail(study)).status_code == 404
    assert client_b.post(reverse("study-retry", args=[study.pk])).status_code == 404
    assert Study.objects.get(pk=study.pk).status == Study.Status.FAILED


@pytest.mark.parametrize("persona", ["clinician_a", "admin"])
@pytest.mark.parametrize("status,code", [("queued", ""), ("processing", ""), ("failed", "unreadable_image"),
                                         ("failed", "service_unavailable"), ("cancelled", "consent_withdrawn")])
def test_the_uploaded_image_can_be_downloaded_before_and_without_a_result(persona, status, code, personas,
                                                                          clinician_a, patient_a):
    study = StudyFactory(patient=patient_a, submitted_by=clinician_a, images=1, status=status, error_code=code)
    image = study.images.get()
    client = logged_in(personas[persona])
    download = reverse("study-image", args=[study.pk, image.pk]) + "?download=1"
    page = client.get(detail(study)).content.decode()
    assert f'<a href="{download}">Download image</a>' in page
    assert "Show heatmap" not in page  # no prediction, so no heatmap controls
    response = client.get(download)
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="study-{study.short_id}-image-1.png"'
    assert b"".join(response.streaming_content)[:4] == b"\x89PNG"
    event = AuditEvent.objects.get(action=AuditEvent.Action.IMAGE_VIEWED)
    assert (event.actor, event.object_id, event.details) == (personas[persona], str(image.pk), {"download": True})


def test_another_clinician_cannot_download_an_image_of_a_pending_study(client_b, clinician_a, patient_a):
    study = StudyFactory(patient=patient_a, submitted_by=clinician_a, images=1)
    image = study.images.get()
    response = client_b.get(reverse("study-image", args=[study.pk, image.pk]) + "?download=1")
    assert response.status_code == 404
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.IMAGE_VIEWED).exists()


@pytest.mark.parametrize("name", ["study-detail", "study-panel", "study-status"])
def test_another_clinicians_study_is_not_found(client_b, completed_study, name):
    assert client_b.get(reverse(name, args=[completed_study.pk])).status_code == 404


def test_another_clinician_cannot_fetch_the_images(client_b, completed_study):
    image = completed_study.images.first()
    for name in ("study-image", "study-heatmap"):
        assert client_b.get(reverse(name, args=[completed_study.pk, image.pk])).status_code == 404


def test_the_administrator_may_open_any_study(admin_client_, completed_study):
    assert admin_client_.get(detail(completed_study)).status_code == 200


def test_anonymous_visit_to_a_study_goes_to_login(anonymous, completed_study):
    response = anonymous.get(detail(completed_study))
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={detail(completed_study)}"


def test_features_are_compared_with_the_model_cards_typical_ranges(completed_study):
    prediction = Prediction.objects.filter(image__study=completed_study).first()
    ranges = model_card(prediction.model_version)["feature_ranges"]
    context = feature_table(prediction, 1)
    assert context["has_ranges"] and len(context["rows"]) == len(prediction.features) == 13
    for row in context["rows"]:
        assert row["typical_no_tumor"] == ranges[row["name"]]["no_tumor"]
        assert row["typical_tumor"] == ranges[row["name"]]["tumor"]
        marker = float(row["strip"]["value"].rstrip("%"))
        assert 0 <= marker <= 100
        for band in ("no_tumor", "tumor"):
            start = float(row["strip"][band]["x"].rstrip("%"))
            end = start + float(row["strip"][band]["width"].rstrip("%"))
            low, high = ranges[row["name"]][band]
            assert 0 <= start <= end <= 100.7
            assert (start - 0.01 <= marker <= end + 0.01) == (low <= row["value"] <= high)


def test_feature_comparison_in_words():
    prediction = Prediction(model_version="not-installed", features={"mean": 0.5}, feature_contributions=[])
    assert feature_table(prediction)["has_ranges"] is False  # no card, no ranges: numbers only
    from diagnosis.templatetags.diagnosis_extras import _comparison
    assert _comparison(0.5, [0.4, 0.6], [0.55, 0.7]) == "typical of no tumor"
    assert _comparison(0.65, [0.4, 0.6], [0.55, 0.7]) == "typical of tumor"
    assert _comparison(0.57, [0.4, 0.6], [0.55, 0.7]) == "within both typical ranges"
    assert _comparison(0.1, [0.4, 0.6], [0.55, 0.7]) == "below both typical ranges"
    assert _comparison(0.9, [0.4, 0.6], [0.55, 0.7]) == "above both typical ranges"
    assert _comparison(0.5, [0.1, 0.2], [0.7, 0.8]) == "between the two typical ranges"


def test_probability_meter_marks_the_threshold():
    context = probability_meter(Prediction(probability=0.734, threshold=0.35, label="tumor"))
    assert context["fill"] == "73.40%" and context["mark"] == "35.00%" and context["above"] is True
    assert context["anchor"] == "middle"
    assert probability_meter(Prediction(probability=0.01, threshold=0.05, label="no_tumor"))["anchor"] == "start"


def test_measurements_keep_four_significant_digits():
    assert figure(0.0577123) == "0.05771"
    assert figure(45.678) == "45.68"
    assert figure(None) == "—"


def test_model_version_links_to_its_report():
    rendered = Template("{% load diagnosis_extras %}{% model_report_link 'v1.2 beta' %}").render(Context())
    assert rendered == f'<a href="{reverse("analytics:model-report")}?version=v1.2+beta">v1.2 beta</a>'


def test_status_json_is_plain_json(client_a, completed_study):
    response = client_a.get(reverse("study-status", args=[completed_study.pk]))
    assert response["Content-Type"] == "application/json"
    assert set(json.loads(response.content)) == {"status", "label", "probability", "active", "progress"}


def test_a_second_clinicians_study_of_a_shared_patient_is_visible(client_b, clinician_a, clinician_b):
    from tests.factories import PatientFactory

    shared = PatientFactory(care_team=[clinician_a, clinician_b])
    study = assessed_study(shared, clinician_a, images=1)
    assert client_b.get(detail(study)).status_code == 200
