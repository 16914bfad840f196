"""The committed release model, served exactly as clinicians are served, on its own held-out test split.

The card's test figures were computed by the training pipeline on its cached, preprocessed arrays; here every
test file is read again from disk and goes through the serving path (file reader, preprocess, ONNX graph), which
must give the same scores and so the same figures. Runs where the collections are present (CI); a user's clone
without ../shared skips it with the reason.
"""

from pathlib import Path

import pytest

from ml.folder_eval import evaluate_folder
from ml.predictor import Predictor

pytestmark = [pytest.mark.no_db, pytest.mark.dataset]
TOLERANCE = {"auc": 0.005, "sensitivity": 0.01, "specificity": 0.01, "accuracy": 0.01}


@pytest.fixture(scope="module")
def release(dataset_dir):
    from ml.registry import ModelRegistry

    version = ModelRegistry(Path(__file__).resolve().parents[2] / "models").active()
    assert set(version.card["data"]["collections"]) == {"brain-mri", "tcga-lgg"}
    return version


def test_release_model_is_small_intact_and_says_what_it_serves(release):
    release.verify()
    assert release.onnx_path.stat().st_size <= 20 * 1024 * 1024
    serving = release.card["serving"]
    assert (release.path / serving["file"]).is_file()
    assert serving["precision"] in ("fp32", "int8")


@pytest.mark.parametrize("collection", ["brain-mri", "tcga-lgg"])
def test_serving_path_reproduces_the_card_on_the_test_split(release, dataset_dir, collection):
    root = Path(dataset_dir).parent / collection
    if not root.is_dir():
        pytest.skip(f"{collection} is not at {root}")
    card = release.card
    prefix = f"{collection}/"
    files = {name.removeprefix(prefix) for name in card["split"]["test_files"] if name.startswith(prefix)}
    result = evaluate_folder(Predictor(release), root, only=files)
    claimed = card["metrics"]["test_by_source"][collection]["all"]
    assert result["n"] == claimed["n"] == len(files)
    for metric, tolerance in TOLERANCE.items():
        assert abs(result[metric] - claimed[metric]) <= tolerance, (metric, result[metric], claimed[metric])
