"""What serving needs beyond the fp32 graph: the int8 graph and its parity with fp32, the series rule, and
`complete_model`, which adds them to a version trained before them (ml.pipeline.serving_steps, ml.registry.amend)."""

import json
import shutil

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from ml.predictor import Predictor
from ml.quantize import INT8_FILE, MIN_SAME_LABEL, MIN_SAME_PEAK, parity
from ml.registry import CARD, CHECKSUMS, ModelRegistry, RegistryError, amend, sha256_of

pytestmark = [pytest.mark.no_db, pytest.mark.slow]
OWN_SECTIONS = ("series", "quantization", "serving")


def test_the_card_says_which_graph_is_served_and_why(tiny_model):
    _, version = tiny_model
    card = version.card
    check = card["quantization"]["parity"]
    assert (version.path / INT8_FILE).is_file() and INT8_FILE in card["sha256"]
    assert check["passed"] == (not check["failures"])
    assert card["serving"]["file"] == (INT8_FILE if check["passed"] else "model.onnx")
    assert card["serving"]["precision"] == ("int8" if check["passed"] else "fp32")
    assert Predictor(version).serving == card["serving"]
    assert card["series"]["window"] >= 1


def test_parity_compares_labels_maps_and_auc_and_names_what_it_misses(tiny_model, tiny_training_folder):
    from ml.data import load_dataset

    _, version = tiny_model
    dataset = load_dataset(tiny_training_folder, version.card["hyperparameters"]["image_size"])
    index = np.arange(0, len(dataset), 4)  # both labels
    images, labels, threshold = dataset.images[index], dataset.labels[index], version.card["threshold"]["value"]
    same = parity(version.onnx_path, version.onnx_path, images, labels, threshold)  # fp32 against itself
    assert same["passed"] and same["failures"] == []
    assert same["same_label"] == same["same_peak_cell_on_tumor_slices"] == 1.0
    assert same["max_probability_difference"] == same["auc_difference"] == 0.0
    int8 = parity(version.onnx_path, version.path / INT8_FILE, images, labels, threshold)
    assert int8["passed"] == (not int8["failures"])
    assert (int8["same_label"] < MIN_SAME_LABEL) == any("label agrees" in f for f in int8["failures"])
    assert (int8["same_peak_cell_on_tumor_slices"] < MIN_SAME_PEAK) == any("peak cell" in f for f in int8["failures"])


def without_serving_steps(version, root) -> str:
    """A copy of `version` as a version trained before the serving steps existed."""
    name = "tiny-19990101-000000"
    target = root / name
    shutil.copytree(version.path, target)
    (target / INT8_FILE).unlink()
    card = json.loads((target / CARD).read_text())
    for key in OWN_SECTIONS:
        card.pop(key)
    card["sha256"].pop(INT8_FILE)
    card["version"] = name
    (target / CARD).write_text(json.dumps(card))
    sums = {path.name: sha256_of(path) for path in sorted(target.iterdir()) if path.name != CHECKSUMS}
    (target / CHECKSUMS).write_text("".join(f"{digest}  {file}\n" for file, digest in sums.items()))
    return name


def test_complete_model_adds_the_steps_once_and_redo_makes_only_its_own_again(settings, tmp_path, tiny_model,
                                                                             tiny_training_folder, capsys):
    root = tmp_path / "models"
    shutil.copytree(tiny_model[0], root)
    settings.MODEL_DIR = root
    name = without_serving_steps(tiny_model[1], root)
    registry = ModelRegistry(root)

    call_command("complete_model", name, "--data", str(tiny_training_folder))
    assert "series window" in capsys.readouterr().out
    version = registry.get(name)
    version.verify()  # every file, the card and the new int8 graph, under the checksums
    card = version.card
    assert set(OWN_SECTIONS) <= set(card) and (version.path / INT8_FILE).is_file()
    assert card["amendments"][-1]["by"] == "manage.py complete_model"
    assert set(card["amendments"][-1]["added"]) == {*OWN_SECTIONS, INT8_FILE}

    with pytest.raises(CommandError, match="only ever added to"):
        call_command("complete_model", name, "--data", str(tiny_training_folder))
    call_command("complete_model", name, "--data", str(tiny_training_folder), "--redo")
    again = registry.get(name).card["amendments"]
    assert len(again) == 2 and set(again[-1]["made_again"]) == {*OWN_SECTIONS, INT8_FILE}
    registry.get(name).verify()


def test_complete_model_never_changes_what_training_wrote(settings, tmp_path, tiny_model, tiny_training_folder):
    root = tmp_path / "models"
    shutil.copytree(tiny_model[0], root)
    settings.MODEL_DIR = root
    with pytest.raises(CommandError, match="only ever added to"):
        call_command("complete_model", tiny_model[1].name, "--data", str(tiny_training_folder), "--redo")
    version = ModelRegistry(root).get(tiny_model[1].name)
    with pytest.raises(RegistryError, match="threshold"):
        amend(version, {}, {"threshold": {"value": 0.01}}, by="someone", redo=True)
    version.verify()


def test_complete_model_refuses_data_that_does_not_reproduce_the_split(settings, tmp_path, tiny_model):
    from ml.phantoms import write_phantom_folder

    root = tmp_path / "models"
    shutil.copytree(tiny_model[0], root)
    settings.MODEL_DIR = root
    name = without_serving_steps(tiny_model[1], root)
    other = write_phantom_folder(tmp_path / "other", per_class=20, seed=99)
    with pytest.raises(CommandError, match="do not reproduce the test split"):
        call_command("complete_model", name, "--data", str(other))
