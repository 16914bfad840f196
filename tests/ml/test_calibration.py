import numpy as np
import pytest

from ml import calibration, evaluate

pytestmark = pytest.mark.no_db


def overconfident(seed: int = 0, n: int = 4000):
    """Labels drawn from true probabilities sigmoid(z), scored with logits 3 z: a model too sure of itself."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, n)
    labels = (rng.random(n) < calibration.sigmoid(z)).astype(int)
    return labels, 3.0 * z


def test_temperature_scaling_recovers_the_overconfidence_and_keeps_the_ranking():
    labels, logits = overconfident()
    temperature = calibration.fit_temperature(labels, logits)
    assert temperature == pytest.approx(3.0, rel=0.12)
    before, after = calibration.sigmoid(logits), calibration.sigmoid(logits / temperature)
    ece = calibration.expected_calibration_error
    assert ece(labels, after) < ece(labels, before) / 2
    assert calibration.brier_score(labels, after) < calibration.brier_score(labels, before)
    assert evaluate.auc(labels, after) == pytest.approx(evaluate.auc(labels, before))


def test_reliability_bins_count_every_slice_once():
    labels, logits = overconfident(1, 500)
    rows = calibration.reliability(labels, calibration.sigmoid(logits))
    assert len(rows) == 10 and sum(row["n"] for row in rows) == 500
    for row in rows:
        if row["n"]:
            assert row["low"] <= row["confidence"] <= row["high"] and 0 <= row["frequency"] <= 1


def test_a_perfectly_calibrated_model_has_a_small_ece():
    rng = np.random.default_rng(3)
    p = rng.random(20_000)
    labels = (rng.random(20_000) < p).astype(int)
    assert calibration.expected_calibration_error(labels, p) < 0.02
