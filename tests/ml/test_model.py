"""Training, export and serving of a tiny network on phantoms, through the release pipeline."""

import io
import json

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from ml.explain import MAX_ALPHA, heatmap_png
from ml.folder_eval import evaluate_folder
from ml.imaging import downsize
from ml.model import build_network, build_serving_model
from ml.phantoms import make_phantom, write_phantom_folder
from ml.predictor import Predictor
from ml.preprocess import WORK_SIDE, preprocess
from ml.registry import ModelRegistry, RegistryError

pytestmark = pytest.mark.no_db


def test_tiny_model_separates_held_out_phantoms(tiny_model, tmp_path):
    root, version = tiny_model
    held_out = write_phantom_folder(tmp_path / "held-out", per_class=40, seed=77)  # seeds never trained on
    result = evaluate_folder(Predictor(version), held_out)
    assert result["n"] == 80 and result["unusable"] <= 5  # a gate trained on 168 phantoms is rough at its edge
    assert result["auc"] >= 0.9, result
    assert result["accuracy"] >= 0.75, result


def test_the_probability_is_the_smooth_maximum_of_the_map_it_shows():
    """The served probability is sigmoid(log-mean-exp) of the calibrated map: evidence nowhere means a low
    probability, and the temperature divides the trained logit exactly."""
    network = build_network(128, (4, 4, 8, 8, 8), 8)
    images = np.stack([preprocess(make_phantom(seed, seed % 2 == 0)) for seed in range(4)])
    cells = np.asarray(network(images, training=False), np.float64)[..., 0]
    for temperature in (1.0, 2.5):
        probability, evidence = build_serving_model(network, temperature, sharpness=4.0)(images, training=False)
        flat = 4.0 * cells.reshape(4, -1)
        logit = (np.log(np.exp(flat).mean(axis=1))) / 4.0 / temperature
        np.testing.assert_allclose(np.asarray(probability)[:, 0], 1 / (1 + np.exp(-logit)), atol=1e-5)
        np.testing.assert_allclose(np.asarray(evidence)[..., 0], 1 / (1 + np.exp(-cells / temperature)), atol=1e-5)


def test_card_records_data_split_hyperparameters_metrics_calibration_and_gate(tiny_model):
    root, version = tiny_model
    card = version.card
    for key in ("data", "split", "hyperparameters", "history", "metrics", "threshold", "calibration",
                "training_seconds",
                "sha256", "feature_model", "feature_ranges", "limitations", "environment", "stress", "quality_gate",
                "localization"):
        assert key in card, key
    assert card["data"]["images"] == 240 and card["data"]["near_duplicates"]["groups"] >= 1
    assert len(card["split"]["test_files"]) == card["metrics"]["test"]["n"]
    [collection] = card["data"]["collections"]
    assert all(name.startswith(f"{collection}/") for name in card["split"]["test_files"])
    assert len(card["history"]) >= 1 and {"loss", "val_auc"} <= set(card["history"][0])
    assert card["architecture"]["networks"] == 1 and card["architecture"]["passes_per_slice"] == 1
    test = card["metrics"]["test"]
    assert {"auc", "sensitivity", "specificity", "ci95"} <= set(test)
    assert card["threshold"]["rationale"] and 0 < card["threshold"]["value"] < 1
    calibration = card["calibration"]
    assert calibration["temperature"] > 0 and 0 <= calibration["validation_after"]["ece"] <= 1
    assert calibration["validation_after"]["brier"] <= calibration["validation_before"]["brier"] + 1e-9
    assert set(card["stress"]["families"]) >= {"clean", "jpeg", "ghosting", "spikes"}
    assert card["quality_gate"]["file"] == "gate.onnx" and 0 < card["quality_gate"]["threshold"] < 1
    assert set(card["feature_model"]["importance"]) == set(card["feature_ranges"])
    json.dumps(card)  # plain JSON, no numpy leftovers


def test_version_folder_has_weights_gate_card_and_checksums_over_all_of_them(tiny_model):
    root, version = tiny_model
    files = {"model.keras", "model.onnx", "model.int8.onnx", "gate.onnx", "card.json"}
    assert {p.name for p in version.path.iterdir()} == files | {"SHA256SUMS"}
    assert set(version.checksums()) == files
    version.verify()
    assert ModelRegistry(root).active().name == version.name


@pytest.mark.parametrize("name", ["model.onnx", "model.int8.onnx", "card.json", "gate.onnx"])
def test_any_changed_file_of_a_version_is_detected(tiny_model, tmp_path, name):
    """The card holds the threshold and calibration the predictor applies: editing it is tampering too."""
    import shutil

    root, version = tiny_model
    copy = tmp_path / "registry"
    shutil.copytree(root, copy)
    tampered = ModelRegistry(copy).get(version.name)
    with open(tampered.path / name, "ab") as handle:
        handle.write(b" ")
    with pytest.raises(RegistryError, match="sha256"):
        tampered.verify()


def test_onnx_serving_matches_keras_within_1e_4(tiny_model):
    from ml.model import load_serving_model

    root, version = tiny_model
    serving = load_serving_model(version.keras_path)
    batch = np.stack([preprocess(make_phantom(500 + i, i % 2 == 0)) for i in range(16)])
    expected = np.asarray(serving(batch, training=False)[0]).reshape(-1)
    served, maps = Predictor(version).network(batch)
    assert np.abs(served - expected).max() < 1e-4
    assert maps.shape == (16, 32, 32) and 0 <= maps.min() and maps.max() <= 1


def test_assessment_carries_heatmap_features_quality_version_and_hash(tiny_model):
    root, version = tiny_model
    gray = make_phantom(901, True, size=240)
    assessment = Predictor(version).assess([gray])[0]
    assert assessment.heatmap.shape == gray.shape and 0 <= assessment.heatmap.min() <= assessment.heatmap.max() <= 1
    assert assessment.label in ("tumor", "no_tumor") and assessment.usable
    assert assessment.quality.as_dict() == {"status": "ok", "code": "", "message": ""}
    assert assessment.model_version == version.name and assessment.model_sha256 == version.card["sha256"]["model.onnx"]
    assert len(assessment.features) == 13 and assessment.feature_contributions
    assert {"preprocess", "gate", "inference", "heatmap", "features", "total"} <= set(assessment.timings_ms)


def test_batch_and_single_assessments_agree(tiny_model):
    root, version = tiny_model
    predictor = Predictor(version)
    grays = [make_phantom(700 + i, i % 2 == 0) for i in range(5)]
    batch = [a.probability for a in predictor.assess(grays, with_features=False)]
    single = [predictor.assess([g], with_features=False)[0].probability for g in grays]
    np.testing.assert_allclose(batch, single, atol=1e-5)


def test_heatmap_stays_on_the_head_and_a_large_slice_gets_a_small_one(tiny_model):
    root, version = tiny_model
    gray = np.zeros((600, 600), np.float32)
    gray[80:528, 120:568] = np.kron(make_phantom(1300, True), np.ones((2, 2), np.float32))
    assessment = Predictor(version).assess([gray], with_features=False)[0]
    heat = assessment.heatmap
    assert heat.shape == (256, 256)  # the working size: the page scales it over the scan
    # The head mask is found at half the working size and smoothed: its edge may lie a few pixels out.
    near_head = ndimage.binary_dilation(downsize(gray, WORK_SIDE) > 0.005, iterations=8)
    assert heat[~near_head].max() == 0.0 and heat[near_head].max() > 0


def test_heatmap_png_is_clear_without_evidence_and_reddens_with_it():
    """The overlay the page lays over the scan: a palette PNG whose opacity and redness grow with the map."""
    heat = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (16, 1))
    image = Image.open(io.BytesIO(heatmap_png(heat)))
    assert image.size == (64, 16) and image.mode == "P"
    rgba = np.asarray(image.convert("RGBA")).astype(int)[0]
    assert rgba[0, 3] == 0 and rgba[-1, 3] == round(MAX_ALPHA * 255)
    assert np.all(np.diff(rgba[:, 3]) >= 0) and np.all(np.diff(rgba[:, 1]) <= 0)  # more opaque, less green
    assert rgba[-1, 0] > rgba[-1, 1] + 150  # full evidence is deep red
