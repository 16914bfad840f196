"""Training, export and serving of a tiny network on phantoms."""

import json

import numpy as np
import pytest

from ml.folder_eval import evaluate_folder
from ml.imaging import read_image
from ml.phantoms import make_phantom, write_phantom_folder
from ml.predictor import Predictor
from ml.registry import ModelRegistry, RegistryError

pytestmark = pytest.mark.no_db


def test_tiny_model_separates_held_out_phantoms(tiny_model, tmp_path):
    root, version = tiny_model
    held_out = write_phantom_folder(tmp_path / "held-out", per_class=40, seed=77)  # seeds never trained on
    result = evaluate_folder(Predictor(version), held_out)
    assert result["n"] == 80
    assert result["accuracy"] >= 0.8, result
    assert result["auc"] >= 0.9, result


def test_card_records_data_split_hyperparameters_metrics_threshold_and_time(tiny_model):
    root, version = tiny_model
    card = version.card
    for key in ("data", "split", "hyperparameters", "history", "metrics", "threshold", "training_seconds",
                "sha256", "feature_model", "feature_ranges", "limitations", "environment"):
        assert key in card, key
    assert card["data"]["images"] == 240 and card["data"]["near_duplicates"]["groups"] >= 1
    assert card["split"]["summary"]["test"]["images"] == len(card["split"]["test_files"])
    assert len(card["history"]) >= 1 and {"loss", "val_loss", "auc", "val_auc"} <= set(card["history"][0])
    assert [network["seed"] for network in card["ensemble"]] == [0, 1] and card["architecture"]["networks"] == 2
    test = card["metrics"]["test"]
    assert {"auc", "sensitivity", "specificity", "ci95"} <= set(test)
    assert card["threshold"]["rationale"] and 0 < card["threshold"]["value"] < 1
    assert set(card["feature_model"]["importance"]) == set(card["feature_ranges"])
    json.dumps(card)  # plain JSON, no numpy leftovers


def test_version_folder_has_weights_card_and_checksums(tiny_model):
    root, version = tiny_model
    assert {p.name for p in version.path.iterdir()} == {"model.keras", "model.onnx", "card.json", "SHA256SUMS"}
    version.verify()
    registry = ModelRegistry(root)
    assert registry.active().name == version.name


def test_tampered_weights_are_detected(tiny_model, tmp_path):
    import shutil

    root, version = tiny_model
    copy = tmp_path / "registry"
    shutil.copytree(root, copy)
    tampered = ModelRegistry(copy).get(version.name)
    with open(tampered.onnx_path, "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(RegistryError, match="sha256"):
        tampered.verify()


def test_onnx_serving_matches_keras_within_1e_4(tiny_model):
    from ml.model import load_serving_model
    from ml.preprocess import preprocess

    root, version = tiny_model
    serving = load_serving_model(version.keras_path)
    batch = np.stack([preprocess(make_phantom(500 + i, i % 2 == 0))[0] for i in range(16)])
    expected = np.asarray(serving(batch, training=False)[0]).reshape(-1)
    served, cams = Predictor(version).network(batch)
    assert np.abs(served - expected).max() < 1e-4
    # The activation map's mean is the logit: the heatmap explains exactly this prediction.
    logits = np.log(served / (1 - served))
    np.testing.assert_allclose(cams.reshape(16, -1).mean(axis=1), logits, atol=1e-3)


def test_assessment_carries_heatmap_features_version_and_hash(tiny_model):
    root, version = tiny_model
    gray = make_phantom(901, True, size=240)
    assessment = Predictor(version).assess([gray])[0]
    assert assessment.heatmap.shape == gray.shape and 0 <= assessment.heatmap.min() <= assessment.heatmap.max() <= 1
    assert assessment.label in ("tumor", "no_tumor")
    assert assessment.model_version == version.name and assessment.model_sha256 == version.card["sha256"]["model.onnx"]
    assert len(assessment.features) == 13 and assessment.feature_contributions
    assert {"preprocess", "inference", "heatmap", "features", "total"} <= set(assessment.timings_ms)


def test_batch_and_single_assessments_agree(tiny_model):
    root, version = tiny_model
    predictor = Predictor(version)
    grays = [make_phantom(700 + i, i % 2 == 0) for i in range(5)]
    batch = [a.probability for a in predictor.assess(grays, with_features=False)]
    single = [predictor.assess([g], with_features=False)[0].probability for g in grays]
    np.testing.assert_allclose(batch, single, atol=1e-5)


def test_heatmap_lights_up_the_lesion_more_than_the_rest(tiny_model):
    """On phantoms the lesion is known: the evidence inside it should exceed the evidence outside."""
    root, version = tiny_model
    predictor = Predictor(version)
    hits = 0
    for seed in range(10):
        with_lesion = make_phantom(1000 + seed, True)
        without = make_phantom(1000 + seed, False)
        lesion_mask = np.abs(with_lesion - without) > 0.1
        heat = predictor.assess([with_lesion], with_features=False)[0].heatmap
        hits += heat[lesion_mask].mean() > heat[~lesion_mask & (with_lesion > 0.05)].mean()
    assert hits >= 7


def test_reading_a_stored_png_equals_reading_the_array(tmp_path):
    from ml.imaging import encode_png

    gray = make_phantom(3, False)
    path = tmp_path / "x.png"
    path.write_bytes(encode_png(gray))
    np.testing.assert_allclose(read_image(path), np.rint(gray * 255) / 255, atol=1e-6)


def test_serving_treats_a_slice_and_its_mirror_image_alike(tiny_model):
    """The served graph averages the slice and its mirror: flipping the input flips the heatmap only."""
    root, version = tiny_model
    predictor = Predictor(version)
    gray = make_phantom(1200, True)
    direct, mirrored = predictor.assess([gray, gray[:, ::-1].copy()], with_features=False)
    # Only the head crop's rounding to whole pixels differs between the two.
    assert direct.probability == pytest.approx(mirrored.probability, abs=2e-3)
    assert np.abs(direct.heatmap - mirrored.heatmap[:, ::-1]).mean() < 0.01


def test_heatmap_stays_on_the_head(tiny_model):
    root, version = tiny_model
    gray = np.zeros((300, 300), np.float32)
    gray[40:264, 60:284] = make_phantom(1300, True)
    heat = Predictor(version).assess([gray], with_features=False)[0].heatmap
    assert heat[gray == 0].max() == 0.0
