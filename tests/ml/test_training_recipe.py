"""Recipe settings: what a recipe's fingerprint hashes, and the moving average of the weights."""

import json
from pathlib import Path

import numpy as np
import pytest

from ml.data import load_dataset
from ml.model import build_network
from ml.phantoms import write_phantom_folder
from ml.registry import ModelRegistry
from ml.train import TrainConfig, fit, make_split

pytestmark = pytest.mark.no_db


def test_the_release_recipe_read_back_hashes_exactly_the_settings_its_card_recorded():
    # Settings added since (split seed, intensity reference, weight average) sit at the value the release
    # had, so they stay out of the fingerprint and a fold of the release recipe files under the same recipe.
    recorded = ModelRegistry(Path(__file__).resolve().parents[2] / "models").active().card["hyperparameters"]
    settings = TrainConfig.from_card({"hyperparameters": recorded}).recipe_settings()
    assert json.dumps(settings, sort_keys=True, default=list) == json.dumps(
        {key: recorded[key] for key in settings}, sort_keys=True)
    names = {key for key in recorded if key in TrainConfig.__dataclass_fields__} - set(TrainConfig.NOT_RECIPE)
    assert set(settings) == names
    assert TrainConfig().recipe_settings() == settings


def test_a_later_setting_enters_the_fingerprint_once_it_differs():
    base = TrainConfig().recipe_settings()
    assert TrainConfig(weight_average=0.999).recipe_settings() == {**base, "weight_average": 0.999}
    assert TrainConfig(split_seed=0).recipe_settings() == {**base, "split_seed": 0}
    assert TrainConfig(intensity_reference="interior").recipe_settings()["intensity_reference"] == "interior"
    assert TrainConfig(epochs=12, patience=5).recipe_settings() == base  # a shortened fold is the same recipe


def test_with_a_weight_average_training_validates_and_keeps_the_average(tmp_path):
    dataset = load_dataset(write_phantom_folder(tmp_path, per_class=16, seed=7), size=32)
    recipe = dict(epochs=3, patience=3, widths=(4, 4, 8, 8), decoder_width=8, batch_size=4, augment=False, seed=3)
    _, split, _ = make_split(dataset, TrainConfig(**recipe))
    raw = fit(dataset, split, TrainConfig(**recipe), verbose=0)
    averaged = fit(dataset, split, TrainConfig(**recipe, weight_average=0.9999), verbose=0)

    import keras

    keras.utils.set_random_seed(3)  # the network fit starts from
    initial = build_network(32, recipe["widths"], recipe["decoder_width"], TrainConfig.dropout)

    def moved(result) -> float:
        return sum(float(np.abs(np.asarray(kept) - np.asarray(start)).sum())
                   for kept, start in zip(result.network.trainable_weights, initial.trainable_weights))

    # Both runs take the very same steps (the average does not steer them). An average this slow stays next to
    # the first step's weights (about 0.4 of the raw distance here); had training kept the raw weights, the two
    # distances would be equal.
    assert 0 < moved(averaged) < 0.75 * moved(raw)
    assert len(averaged.history) == len(raw.history) == 3
    assert all(0 <= row["val_auc"] <= 1 for row in averaged.history)
