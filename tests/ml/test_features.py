import numpy as np
import pytest

from ml.feature_model import contributions, feature_probability, fit_feature_model
from ml.features import FEATURE_DESCRIPTIONS, FEATURE_NAMES, coarseness, texture_features

pytestmark = pytest.mark.no_db


def test_thirteen_documented_features():
    assert len(FEATURE_NAMES) == 13
    assert all(len(FEATURE_DESCRIPTIONS[name]) > 30 for name in FEATURE_NAMES)
    values = texture_features(np.random.default_rng(0).random((64, 64)))
    assert list(values) == list(FEATURE_NAMES) and all(np.isfinite(v) for v in values.values())


def test_flat_image():
    values = texture_features(np.full((32, 32), 0.5, np.float32))
    assert values["mean"] == pytest.approx(0.5) and values["variance"] == 0 and values["std"] == 0
    assert values["contrast"] == 0 and values["dissimilarity"] == 0
    assert values["homogeneity"] == 1 and values["energy"] == 1 and values["asm"] == 1 and values["entropy"] == 0


def test_first_order_statistics_over_the_head():
    image = np.zeros((40, 40), np.float32)
    image[10:30, 10:30] = np.linspace(0.2, 0.8, 400).reshape(20, 20)
    values = texture_features(image)
    head = image[10:30, 10:30].ravel()
    assert values["mean"] == pytest.approx(head.mean(), rel=1e-5)
    assert values["std"] == pytest.approx(head.std(), rel=1e-5)
    assert values["skewness"] == pytest.approx(0, abs=1e-5)
    assert values["kurtosis"] == pytest.approx(-1.2, abs=0.01)  # a uniform distribution


def test_checkerboard_contrast():
    board = (np.indices((32, 32)).sum(axis=0) % 2).astype(np.float32) * 0.9999
    values = texture_features(board)
    # Neighbours horizontally and vertically always differ by 63 levels, diagonally never: the four
    # directions average to half the squared difference, and perfect anti- and positive correlation cancel.
    assert values["contrast"] == pytest.approx((63**2 * 2) / 4, rel=0.02)
    assert values["correlation"] == pytest.approx(0.0, abs=0.05)


def test_coarseness_grows_with_texture_size():
    rng = np.random.default_rng(0)
    fine = rng.random((64, 64))
    coarse = np.kron(rng.random((8, 8)), np.ones((8, 8)))
    assert coarseness(coarse) > coarseness(fine)


def test_feature_model_separates_and_explains():
    rng = np.random.default_rng(1)
    labels = np.r_[np.ones(100, int), np.zeros(100, int)]
    features = rng.normal(size=(200, 13))
    features[:, 5] += labels * 3  # only "contrast" carries the signal
    params = fit_feature_model(features, labels)
    assert max(params["importance"], key=params["importance"].get) == "contrast"
    probabilities = feature_probability(params, features)
    assert ((probabilities > 0.5) == labels).mean() > 0.9
    parts = contributions(params, dict(zip(FEATURE_NAMES, features[0])))
    assert parts[0]["feature"] == "contrast" and parts[0]["contribution"] > 0
