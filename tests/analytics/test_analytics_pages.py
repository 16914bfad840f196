"""Analytics pages: login required everywhere, fast reads of what the commands stored."""

import json
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.urls import reverse

from analytics.models import DatasetStudy, ModelReport
from diagnosis.models import AuditEvent

pytestmark = pytest.mark.django_db

PAGES = ("analytics:dataset", "analytics:model-report", "analytics:monitoring")
# Session and user (2), and the audit event of the view (savepoint, chain head, insert, head update, release: 5).
BASELINE_QUERIES = 7


@pytest.fixture
def built_study(phantom_folder):
    call_command("build_analytics", data=str(phantom_folder), seed=3, verbosity=0)
    return DatasetStudy.objects.get()


def figure_urls(html: str) -> list[str]:
    return re.findall(r'src="(/analytics/figures/[^"]+)"', html)


@pytest.mark.parametrize("page", PAGES)
def test_anonymous_visitors_are_sent_to_the_login_page(anonymous, page):
    response = anonymous.get(reverse(page))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse(settings.LOGIN_URL) + "?next=")


def test_figures_need_a_login_too(anonymous, client_a, built_study):
    url = reverse("analytics:figure", args=[built_study.numbers["difference"]["name"]])
    response = anonymous.get(url)
    assert response.status_code == 302 and response["Location"].startswith(reverse(settings.LOGIN_URL))
    response = client_a.get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["Cache-Control"] == "private, max-age=86400"
    assert b"".join(response.streaming_content).startswith(b"\x89PNG")


@pytest.mark.parametrize("name", ["../studies/x/y.png", "dataset/../../studies/a.png", "dataset/arrays.npz",
                                  "x.png", ".hidden/a.png", "dataset/a.png/"])
def test_only_analytics_figure_names_are_served(client_a, name):
    assert client_a.get(f"/analytics/figures/{name}").status_code == 404


@pytest.mark.parametrize("page", PAGES)
def test_pages_answer_a_clinician_before_anything_was_built(client_a, registry_copy, page):
    response = client_a.get(reverse(page))
    assert response.status_code == 200
    assert b"Analytics" in response.content  # the nav link


def test_dataset_page_shows_the_stored_study_in_few_queries(client_a, clinician_a, built_study,
                                                            django_assert_max_num_queries):
    client_a.get(reverse("analytics:dataset"))  # session and first-request work out of the way
    with django_assert_max_num_queries(BASELINE_QUERIES + 1):  # the newest study
        response = client_a.get(reverse("analytics:dataset"))
    html = response.content.decode()
    assert response.status_code == 200
    assert "Average tumor minus average no-tumor image" in html
    assert 'alt="Difference of average images on a blue-white-red scale' in html
    urls = figure_urls(html)
    assert len(urls) >= 7 + 12
    for url in set(urls):
        assert client_a.get(url).status_code == 200
    assert AuditEvent.objects.filter(action=AuditEvent.Action.ANALYTICS_VIEWED, actor=clinician_a).count() == 2
    for feature in ("homogeneity", "coarseness", "Tamura coarseness"):
        assert feature in html


def test_the_montage_reshuffles_within_the_stored_pool(client_a, built_study):
    pool = {image["name"] for image in built_study.numbers["montage"]["tumor"]}
    shown = []
    for shuffle in (1, 2, 3, 4):
        html = client_a.get(reverse("analytics:dataset"), {"shuffle": shuffle}).content.decode()
        shown.append(tuple(url.split("/analytics/figures/")[1] for url in figure_urls(html) if "/montage/" in url))
    assert all(set(names) <= pool | {i["name"] for i in built_study.numbers["montage"]["no_tumor"]}
               for names in shown)
    assert len(set(shown)) > 1  # another subset, not the same images again
    assert 'data-pool="[{&quot;src&quot;: &quot;/analytics/figures/dataset/' in html


def test_report_is_asked_of_a_worker_then_shows_its_figures(client_a, served_model, django_assert_max_num_queries):
    version = served_model.name
    first = client_a.get(reverse("analytics:model-report"), {"version": version})
    assert first.status_code == 200
    assert "being prepared by a worker" in first.content.decode()
    assert ModelReport.objects.get(version=version).status == ModelReport.Status.PREPARING

    call_command("build_model_report", "--version", version, verbosity=0)  # what the worker's task runs
    report = ModelReport.objects.get(version=version)
    assert set(report.figures) >= {"history", "confusion", "roc", "pr", "reliability", "scores"}
    assert report.inference["median_ms"]["total"] > 0
    with django_assert_max_num_queries(BASELINE_QUERIES + 2):  # the stored report, the newest learning curve
        response = client_a.get(reverse("analytics:model-report"), {"version": version})
    html = response.content.decode()
    assert "being prepared" not in html
    for text in ("Targets", "Performance on held-out data", "Calibration", "Where the evidence lies",
                 "Stress suite", "Quality gate", "External validation", "Series rule", "build_learning_curve",
                 "Sensitivity and specificity per perturbation family", "Where the errors fall",
                 "No collection of whole volumes on the test split."):  # phantoms are single slices
        assert text in html, text
    assert ModelReport.objects.count() == 1
    for url in set(figure_urls(html)):
        assert client_a.get(url).status_code == 200


def test_report_defaults_to_the_served_version_and_offers_the_others(client_a, registry_copy):
    registry_copy("cnn-a")
    registry_copy("cnn-b")
    registry_copy.registry().activate("cnn-a")
    html = client_a.get(reverse("analytics:model-report")).content.decode()
    assert '<option value="cnn-a" selected>cnn-a (in service)</option>' in html
    assert '<option value="cnn-b" >cnn-b</option>' in html
    assert client_a.get(reverse("analytics:model-report"), {"version": "cnn-c"}).status_code == 404
    assert client_a.get(reverse("analytics:model-report"), {"version": "../cnn-a"}).status_code == 404


def test_report_without_an_ablation_says_so(client_a, registry_copy):
    registry_copy("no-ablation")  # cards of the current recipe record none
    call_command("build_model_report", "--version", "no-ablation", verbosity=0)
    html = client_a.get(reverse("analytics:model-report"), {"version": "no-ablation"}).content.decode()
    assert "this version was not also trained without augmentation" in html
    assert "ablation" not in ModelReport.objects.get(version="no-ablation").figures


def test_report_with_an_ablation_shows_both_arms_side_by_side(client_a, registry_copy):
    arm = {"test": {"auc": 0.95, "sensitivity": 0.9, "specificity": 0.8, "accuracy": 0.85,
                    "ci95": {"auc": [0.9, 0.98], "sensitivity": [0.8, 0.95], "specificity": [0.7, 0.88],
                             "accuracy": [0.78, 0.9]}},
           "validation_auc": 0.94, "best_epoch": 5, "threshold": 0.4, "history": []}
    weaker = {**arm, "test": {**arm["test"], "auc": 0.91}, "best_epoch": 3}
    ablation = {"hypothesis": "H2: data augmentation improves generalisation to unseen (grouped) test images",
                "with_augmentation": arm, "without_augmentation": weaker, "test_auc_gain": 0.04,
                "verdict": "inconclusive (within the confidence interval)"}
    registry_copy("with-ablation", changes={"ablation": ablation})
    call_command("build_model_report", "--version", "with-ablation", verbosity=0)
    html = client_a.get(reverse("analytics:model-report"), {"version": "with-ablation"}).content.decode()
    assert "inconclusive (within the confidence interval)" in html
    assert "0.950 (0.900–0.980)" in html and "0.910 (0.900–0.980)" in html
    assert "With vs without augmentation (test split, 95% CI)" in html
    assert "ablation" in ModelReport.objects.get(version="with-ablation").figures


def test_a_card_without_test_predictions_still_renders(client_a, registry_copy):
    name = registry_copy("old-card", remove=("history",))
    path = Path(settings.MODEL_DIR) / name / "card.json"
    card = json.loads(path.read_text())
    del card["metrics"]["test_predictions"]
    path.write_text(json.dumps(card))
    call_command("build_model_report", "--version", name, verbosity=0)
    html = client_a.get(reverse("analytics:model-report"), {"version": name}).content.decode()
    assert "records no test predictions" in html and "records no per-epoch history" in html
    assert set(ModelReport.objects.get(version=name).figures) >= {"confusion"}  # drawn from the card's counts


def test_build_model_report_command_builds_every_version(registry_copy):
    registry_copy("cnn-x")
    registry_copy("cnn-y")
    call_command("build_model_report", verbosity=0)
    assert sorted(ModelReport.objects.values_list("version", flat=True)) == ["cnn-x", "cnn-y"]
    call_command("build_model_report", "--version", "cnn-x", verbosity=0)
    assert ModelReport.objects.count() == 2  # the same card is drawn again in place, not twice
