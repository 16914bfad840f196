import numpy as np
import pytest

from ml import evaluate

pytestmark = pytest.mark.no_db


def test_auc_on_known_inputs():
    assert evaluate.auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert evaluate.auc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert evaluate.auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    # One of four positive/negative pairs is misordered.
    assert evaluate.auc([0, 0, 1, 1], [0.1, 0.6, 0.5, 0.9]) == 0.75


def test_auc_matches_scikit_learn_on_random_scores():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 500)
    scores = np.round(rng.random(500) + labels * 0.3, 2)  # with ties
    assert evaluate.auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_confusion_and_rates():
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    scores = np.array([0.9, 0.8, 0.4, 0.7, 0.1, 0.6, 0.2, 0.3, 0.2, 0.1])
    result = evaluate.metrics(labels, scores, threshold=0.5)
    assert (result["tp"], result["fn"], result["fp"], result["tn"]) == (3, 1, 1, 5)
    assert result["sensitivity"] == 0.75 and result["specificity"] == pytest.approx(5 / 6)
    assert result["accuracy"] == 0.8 and result["n"] == 10
    low, high = result["ci95"]["sensitivity"]
    assert low < 0.75 < high


def test_wilson_interval_known_value():
    low, high = evaluate.wilson_interval(81, 263)
    assert low == pytest.approx(0.2553, abs=1e-3) and high == pytest.approx(0.3662, abs=1e-3)
    assert evaluate.wilson_interval(10, 10)[1] == pytest.approx(1.0)


def test_threshold_keeps_the_target_sensitivity_and_is_as_high_as_possible():
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(200, int), np.zeros(200, int)]
    scores = np.r_[rng.beta(5, 2, 200), rng.beta(2, 5, 200)]
    threshold, rationale = evaluate.choose_threshold(labels, scores, target_sensitivity=0.95)
    chosen = evaluate.metrics(labels, scores, threshold)
    assert chosen["sensitivity"] >= 0.95
    higher = evaluate.metrics(labels, scores, np.nextafter(threshold, 1))
    assert higher["sensitivity"] < 0.95
    assert "sensitivity" in rationale and f"{threshold:.4f}" in rationale


def test_recall_by_group():
    recall = evaluate.recall_by_group([1, 1, 0, 0], [0.9, 0.1, 0.2, 0.8], 0.5, ["glioma", "glioma", "no", "no"])
    assert recall == {"glioma": 0.5, "no": 0.5}


def test_threshold_keeps_each_collections_own_target():
    rng = np.random.default_rng(1)
    labels = np.r_[np.ones(300, int), np.zeros(300, int)]
    scores = np.r_[rng.beta(6, 2, 150), rng.beta(3, 2, 150), rng.beta(2, 6, 300)]
    groups = np.array(["easy"] * 150 + ["hard"] * 150 + ["easy"] * 150 + ["hard"] * 150, dtype=object)
    threshold, rationale = evaluate.choose_threshold(labels, scores, 0.95, groups=groups, targets={"hard": 0.8})
    easy, hard = groups == "easy", groups == "hard"
    assert evaluate.metrics(labels[easy], scores[easy], threshold)["sensitivity"] >= 0.95
    assert evaluate.metrics(labels[hard], scores[hard], threshold)["sensitivity"] >= 0.8
    assert "easy (target 0.95)" in rationale and "hard (target 0.80)" in rationale


def test_patient_intervals_are_wider_than_slice_intervals_when_patients_differ():
    """Slices of one patient are alike; resampling patients shows the uncertainty that slices hide."""
    rng = np.random.default_rng(2)
    patients = np.repeat([f"P{i}" for i in range(12)], 40)
    labels = np.tile(np.r_[np.ones(15, int), np.zeros(25, int)], 12)
    patient_effect = np.repeat(rng.normal(0, 1.5, 12), 40)
    scores = 1 / (1 + np.exp(-(2.5 * (labels - 0.5) * 2 + patient_effect + rng.normal(0, 0.5, len(labels)))))
    by_slice = evaluate.metrics(labels, scores, 0.5)
    by_patient = evaluate.metrics(labels, scores, 0.5, clusters=patients)
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert width(by_patient["ci95"]["sensitivity"]) > 1.5 * width(by_slice["ci95"]["sensitivity"])
    assert by_patient["patients"] == 12 and by_patient["sensitivity"] == by_slice["sensitivity"]


def test_rates_say_none_where_there_is_nothing_to_count():
    assert evaluate.rates([0, 0], [0.9, 0.1], 0.5) == {"n": 2, "sensitivity": None, "specificity": 0.5,
                                                      "tp": 0, "fp": 1, "tn": 1, "fn": 0}
