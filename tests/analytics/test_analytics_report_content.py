"""What the model report derives from a card: calibration, hypotheses, metric rows."""

import numpy as np
import pytest

from analytics import model_report

pytestmark = pytest.mark.no_db


def card_with(test: dict, targets: dict) -> dict:
    return {"metrics": {"test": test}, "targets": targets}


def test_calibration_bins_count_every_score_once_with_observed_shares():
    labels = np.array([0, 0, 1, 1, 1, 0, 1])
    scores = np.array([0.02, 0.08, 0.15, 0.55, 0.58, 0.61, 1.0])
    bins = model_report.calibration_bins(labels, scores)
    assert sum(b["count"] for b in bins) == 7
    assert bins[0]["count"] == 2 and bins[0]["observed"] == 0
    assert bins[5]["count"] == 2 and bins[5]["observed"] == 1.0
    assert bins[6]["count"] == 1 and bins[6]["observed"] == 0
    assert bins[9]["count"] == 1 and bins[9]["mean_predicted"] == 1.0
    assert bins[3]["count"] == 0 and bins[3]["observed"] is None
    assert all(b["ci_low"] <= b["observed"] <= b["ci_high"] for b in bins if b["count"])
    assert model_report.expected_calibration_error(bins) == pytest.approx(
        (2 * 0.05 + 1 * 0.85 + 2 * (1 - 0.565) + 1 * 0.61 + 0) / 7)


def test_h1_is_supported_only_when_every_target_is_met():
    ci = {"auc": [0.985, 0.997], "sensitivity": [0.96, 0.99], "specificity": [0.955, 0.98]}
    met = card_with({"auc": 0.992, "sensitivity": 0.975, "specificity": 0.97, "ci95": ci, "n": 900},
                    {"auc": 0.99, "sensitivity": 0.97, "specificity": 0.95, "met_on_test": {}})
    h1 = model_report.hypothesis_one(met)
    assert h1["verdict"] == "supported"
    assert "AUC, Sensitivity" in h1["explanation"]  # their CIs reach below the target
    missed = card_with({**met["metrics"]["test"], "sensitivity": 0.95}, met["targets"])
    h1 = model_report.hypothesis_one(missed)
    assert h1["verdict"] == "not supported" and h1["explanation"] == "Below target on the test split for Sensitivity."
    assert model_report.hypothesis_one({})["verdict"] == "not recorded"


def test_h2_is_absent_without_an_ablation():
    assert model_report.hypothesis_two({}) is None
    assert model_report.hypothesis_two({"ablation": None}) is None


def test_metric_rows_skip_splits_the_card_lacks():
    rows = model_report.metric_rows({"metrics": {"test": {"n": 3, "accuracy": 1.0, "ci95": {"accuracy": [0.4, 1]}}}})
    assert [row["split"] for row in rows] == ["Test (grouped split)"]
    assert rows[0]["cells"][0] == {"name": "Accuracy", "value": 1.0, "ci": [0.4, 1]}
    assert rows[0]["cells"][1]["value"] is None
