"""The learning curve: nested, stratified shares of the model's own train split, retrained and tested."""

import json
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.urls import reverse

from analytics.models import LearningCurve
from ml.data import load_dataset
from ml.learning_curve import nested_subsets
from ml.phantoms import write_phantom_folder
from ml.train import TrainConfig, make_split

TINY = {"epochs": 1, "patience": 1}


@pytest.mark.no_db
def test_subsets_are_nested_stratified_and_keep_both_labels():
    labels = np.array([0] * 30 + [1] * 70)
    train = np.arange(0, 100, 1)
    subsets = nested_subsets(train, labels, (0.01, 0.1, 0.5, 1.0), seed=3)
    assert [len(s) for s in subsets] == [2, 10, 50, 100]
    assert [int(labels[s].sum()) for s in subsets] == [1, 7, 35, 70]
    for smaller, larger in zip(subsets, subsets[1:]):
        assert set(smaller) <= set(larger)
    with pytest.raises(ValueError):
        nested_subsets(train, labels, (0.5, 0.25))


@pytest.fixture
def curve_model(registry_copy, tmp_path):
    """A registered version whose card describes a tiny network trained on a phantom folder."""
    data = write_phantom_folder(tmp_path / "phantoms", 16, seed=4)
    name = registry_copy("tiny")
    card_path = settings.MODEL_DIR / name / "card.json"
    card = json.loads(card_path.read_text())
    card["hyperparameters"].update(TINY)
    config = TrainConfig.from_card(card)
    dataset = load_dataset([data], int(card["hyperparameters"]["image_size"]))
    _, split, _ = make_split(dataset, config)
    card["split"]["test_files"] = [f"{data.name}/{Path(dataset.paths[i]).relative_to(data)}" for i in split.test]
    card_path.write_text(json.dumps(card))
    return name, data


@pytest.mark.slow
@pytest.mark.django_db
def test_build_learning_curve_retrains_on_shares_of_the_train_split(curve_model, client_a):
    name, data = curve_model
    call_command("build_learning_curve", "--data", str(data), "--version", name, "--fractions", "0.25,1.0",
                 verbosity=0)
    curve = LearningCurve.objects.get()
    assert curve.model_version == name and curve.matches_model_split and curve.epochs == 1
    assert [p["fraction"] for p in curve.points] == [0.25, 1.0]
    assert curve.points[0]["train_images"] < curve.points[1]["train_images"]
    assert all(p["test"]["n"] == curve.points[0]["test"]["n"] for p in curve.points)
    assert curve.figure["alt"].startswith("Test metrics of the same network trained on")
    html = client_a.get(reverse("analytics:model-report"), {"version": name}).content.decode()
    assert "Learning curve: performance against training-set size" in html
    assert "reproduced this model's own train and test split" in html


@pytest.mark.django_db
def test_another_folder_is_refused_unless_asked_for(curve_model, tmp_path):
    name, _ = curve_model
    other = write_phantom_folder(tmp_path / "other", 16, seed=9)
    with pytest.raises(CommandError, match="does not reproduce the test split"):
        call_command("build_learning_curve", "--data", str(other), "--version", name, verbosity=0)
    assert not LearningCurve.objects.exists()
