"""The committed release model, evaluated on its own held-out grouped test split of the shared dataset.

Runs where the dataset is present (CI); a user's clone without ../shared skips it with the reason.
"""

import pytest
from django.conf import settings

from ml.folder_eval import evaluate_folder
from ml.predictor import Predictor
from ml.registry import ModelRegistry

pytestmark = [pytest.mark.no_db, pytest.mark.dataset]
TOLERANCE = {"auc": 0.005, "sensitivity": 0.01, "specificity": 0.01, "accuracy": 0.01}


@pytest.fixture(scope="module")
def release():
    version = ModelRegistry(settings.MODEL_DIR).active()
    card = version.card
    assert card["data"]["folder"] == "brain-mri", "the active model must be the release model trained on brain-mri"
    return version


def test_release_model_is_small_and_intact(release):
    release.verify()
    for path in (release.onnx_path, release.keras_path):
        assert path.stat().st_size <= 20 * 1024 * 1024


def test_release_model_reaches_its_card_figures_on_the_grouped_test_split(release, dataset_dir):
    card = release.card
    result = evaluate_folder(Predictor(release), dataset_dir, only=set(card["split"]["test_files"]))
    claimed = card["metrics"]["test"]
    assert result["n"] == claimed["n"] == len(card["split"]["test_files"])
    for metric, tolerance in TOLERANCE.items():
        assert result[metric] >= claimed[metric] - tolerance, (metric, result[metric], claimed[metric])
