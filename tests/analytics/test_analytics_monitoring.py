"""Live monitoring: cheap aggregates over the studies the user may see."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from analytics import charts, selectors
from diagnosis.models import Prediction, Reading, Study
from tests.factories import StudyFactory

pytestmark = pytest.mark.django_db
COMPLETED = Study.Status.COMPLETED


def completed_study(patient, user, probability: float, days_ago: int = 0, threshold: float = 0.5) -> Study:
    label = "tumor" if probability >= threshold else "no_tumor"
    study = StudyFactory(patient=patient, submitted_by=user, status=COMPLETED, probability=probability, label=label,
                         created_at=timezone.now() - timedelta(days=days_ago), images=1)
    Prediction.objects.create(image=study.images.get(), model_version="cnn-test", model_sha256="0" * 64,
                              probability=probability, label=label, threshold=threshold, inference_ms=5,
                              latency_ms=20)
    return study


@pytest.fixture
def department(clinician_a, clinician_b, patient_a, patient_b):
    """Clinician A's patient has four studies over three days, clinician B's one."""
    studies = [completed_study(patient_a, clinician_a, p, d) for p, d in ((0.95, 0), (0.15, 0), (0.72, 1), (0.05, 3))]
    StudyFactory(patient=patient_a, submitted_by=clinician_a, status=Study.Status.FAILED, images=0)
    completed_study(patient_b, clinician_b, 0.99)
    Reading.objects.create(study=studies[0], clinician=clinician_a, agrees_with_model=True, finding="tumor")
    Reading.objects.create(study=studies[1], clinician=clinician_a, agrees_with_model=False, finding="tumor")
    Reading.objects.create(study=studies[2], clinician=clinician_a, agrees_with_model=False, finding="uncertain")
    return studies


def test_monitoring_counts_what_clinician_a_may_see(clinician_a, department):
    data = selectors.monitoring(clinician_a, days=7, threshold=0.5)
    assert data["totals"] == {"total": 5, "completed": 4, "positive": 2, "failed": 1, "unassessable": 0, "waiting": 0}
    assert data["positive_share"] == 0.5
    assert len(data["per_day"]) == 7
    assert [(row["total"], row["positive"]) for row in data["per_day"][-4:]] == [(1, 0), (0, 0), (1, 1), (3, 1)]
    assert [b["count"] for b in data["histogram"]] == [1, 1, 0, 0, 0, 0, 0, 1, 0, 1]
    agreement = data["agreement"]
    assert (agreement["readings"], agreement["agrees"], agreement["missed_by_model"]) == (3, 1, 1)
    assert agreement["rate"] == pytest.approx(1 / 3)
    assert [row["counts"] for row in agreement["table"]] == [[1, 0, 1], [1, 0, 0]]
    assert data["versions"] == [{"model_version": "cnn-test", "studies": 4, "images": 4, "positive_images": 2,
                                 "rejected_images": 0}]
    assert data["gate"]["images"] == 4 and data["gate"]["rejected"] == 0 and data["gate"]["reasons"] == []


def test_monitoring_keeps_to_the_window_and_to_the_access_rules(clinician_b, admin_user, department):
    assert selectors.monitoring(clinician_b, days=7)["totals"]["total"] == 1
    assert selectors.monitoring(admin_user, days=7)["totals"]["total"] == 6
    assert selectors.monitoring(admin_user, days=1)["totals"]["total"] == 4  # today only


def test_a_probability_of_exactly_one_lands_in_the_last_bin(clinician_a, patient_a):
    completed_study(patient_a, clinician_a, 1.0)
    assert selectors.monitoring(clinician_a)["histogram"][-1]["count"] == 1


def test_monitoring_page_draws_svg_bars_in_few_queries(client_a, department, django_assert_max_num_queries):
    client_a.get(reverse("analytics:monitoring"))
    # Session, user, 5 for the audit event; totals, per day, gate per day, gate reasons, histogram, readings,
    # versions.
    with django_assert_max_num_queries(14):
        response = client_a.get(reverse("analytics:monitoring"), {"days": 7})
    html = response.content.decode()
    assert response.status_code == 200
    assert html.count('<rect class="bar"') == 7 + 10 + 7  # studies per day, histogram, gate outcomes per day
    assert "1 time a clinician found a tumor" in html
    assert "33.3%" in html
    assert "style=" not in html.split("<main", 1)[1]  # the CSP forbids inline styles


def test_an_unknown_window_falls_back_to_thirty_days(client_a):
    assert client_a.get(reverse("analytics:monitoring"), {"days": "abc"}).context["data"]["days"] == 30
    assert client_a.get(reverse("analytics:monitoring"), {"days": "3"}).context["data"]["days"] == 30


@pytest.mark.no_db
def test_column_geometry():
    assert charts.nice_ceiling(0) == 1 and charts.nice_ceiling(3) == 5 and charts.nice_ceiling(11) == 20
    chart = charts.column_chart([("a", 4, 1), ("b", 0, 0), ("c", 2, 2)], marker=0.5)
    a, b, c = chart["bars"]
    assert a["height"] == pytest.approx(4 / 5 * (charts.HEIGHT - charts.TOP - charts.BOTTOM), abs=0.01)
    assert b["height"] == 0 and c["part_height"] == c["height"]
    assert a["y"] + a["height"] == pytest.approx(chart["baseline"])
    assert chart["marker_x"] == pytest.approx(charts.LEFT + (charts.WIDTH - charts.LEFT - charts.RIGHT) / 2, abs=0.01)


def test_rejections_are_counted_per_day_with_their_reasons(client_a, clinician_a, patient_a):
    """A sudden rise of refused images means a new scanner or a broken feed: the page shows it per day."""
    study = StudyFactory(patient=patient_a, submitted_by=clinician_a, status=Study.Status.UNASSESSABLE, images=3)
    for image, code in zip(study.images.all(), ("not_brain_mri", "not_brain_mri", "empty")):
        Prediction.objects.create(image=image, model_version="cnn-test", model_sha256="0" * 64, probability=0.9,
                                  label="tumor", threshold=0.5, inference_ms=5, latency_ms=20,
                                  quality=Prediction.Quality.REJECTED, quality_code=code)
    data = selectors.monitoring(clinician_a, days=7)
    assert data["totals"]["unassessable"] == 1 and data["totals"]["positive"] == 0
    assert data["gate"]["images"] == data["gate"]["rejected"] == 3
    assert data["gate"]["reasons"] == [{"quality_code": "not_brain_mri", "n": 2}, {"quality_code": "empty", "n": 1}]
    assert data["per_day"][-1]["rejected"] == 3 and sum(row["rejected"] for row in data["per_day"]) == 3
    assert data["versions"][0]["rejected_images"] == 3 and data["versions"][0]["positive_images"] == 0
    html = client_a.get(reverse("analytics:monitoring"), {"days": 7}).content.decode()
    assert '<th scope="row">Not a brain MRI slice</th><td>2</td>' in html
    assert '<th scope="row">Empty or uniform</th><td>1</td>' in html
