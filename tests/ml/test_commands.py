"""The management commands around the ml package: train_model, evaluate_model, predict."""

import json

import numpy as np
import pytest
import skimage.data
from django.core.management import CommandError, call_command
from PIL import Image

from ml.phantoms import make_phantom, write_phantom_folder
from tests.factories import phantom_bytes
from tests.privacy.samples import synthetic_mr, to_bytes

pytestmark = [pytest.mark.no_db, pytest.mark.slow]
JSON_KEYS = {"n", "accuracy", "sensitivity", "specificity", "auc", "threshold", "tp", "fp", "tn", "fn",
             "per_class_recall", "model_version", "unusable"}


@pytest.fixture
def served(settings, tiny_model):
    root, version = tiny_model
    settings.MODEL_DIR = root
    settings.MODEL_VERSION = None
    return version


def dicom_phantom(seed: int, tumor: bool, modality: str = "MR") -> bytes:
    pixels = np.rint(make_phantom(seed, tumor) * 3000).astype(np.uint16)
    return to_bytes(synthetic_mr(pixels, Modality=modality))


def test_evaluate_model_json_prints_exactly_one_object(served, tmp_path, capsys):
    folder = write_phantom_folder(tmp_path / "eval", per_class=10, seed=31)
    (folder / "tumor" / "scan.dcm").write_bytes(dicom_phantom(5, True))  # DICOM files count like the others
    call_command("evaluate_model", "--data", str(folder), "--json")
    result = json.loads(capsys.readouterr().out.strip())
    assert set(result) == JSON_KEYS
    assert result["n"] == 21 and result["tp"] + result["fn"] == 11 and result["model_version"] == served.name
    assert set(result["per_class_recall"]) == {"tumor", "notumor"} and result["unusable"] <= 2


def test_evaluate_model_masks_add_the_pointing_game(served, tmp_path, capsys):
    folder = tmp_path / "eval"
    masks = tmp_path / "masks"
    (folder / "tumor").mkdir(parents=True)
    (folder / "notumor").mkdir()
    masks.mkdir()
    for seed in range(6):
        with_lesion, without = make_phantom(800 + seed, True), make_phantom(800 + seed, False)
        Image.fromarray(np.rint(with_lesion * 255).astype(np.uint8)).save(folder / "tumor" / f"t{seed}.png")
        Image.fromarray(np.rint(without * 255).astype(np.uint8)).save(folder / "notumor" / f"n{seed}.png")
        lesion = (np.abs(with_lesion - without) > 0.1).astype(np.uint8) * 255
        Image.fromarray(lesion).save(masks / f"t{seed}.png")
    call_command("evaluate_model", "--data", str(folder), "--masks", str(masks), "--stress", "--json")
    result = json.loads(capsys.readouterr().out.strip())
    assert result["pointing_game_n"] == 6 and 0 <= result["pointing_game"] <= 1
    assert result["mass_in_mask_n"] == 6 and 0 <= result["mass_in_mask"] <= 1
    assert set(result["stress"]) >= {"clean", "jpeg", "gibbs"}
    assert result["stress"]["clean"]["sensitivity"] == result["sensitivity"]


def test_evaluate_model_table_and_test_split(served, phantom_folder, capsys):
    call_command("evaluate_model", "--data", str(phantom_folder), "--split", "test", "--model", served.name)
    out = capsys.readouterr().out
    assert f"images (n)      {len(served.card['split']['test_files'])}" in out
    assert "sensitivity" in out and "AUC" in out and "tp=" in out and "unusable" in out


def test_evaluate_model_errors_are_clear(served, tmp_path):
    with pytest.raises(CommandError, match="No such data folder"):
        call_command("evaluate_model", "--data", str(tmp_path / "missing"))
    with pytest.raises(CommandError, match="No model version"):
        call_command("evaluate_model", "--data", str(tmp_path), "--model", "nope")


def test_predict_prints_probability_label_and_version(served, tmp_path, capsys):
    good = tmp_path / "scan.png"
    good.write_bytes(phantom_bytes(3, True))
    bad = tmp_path / "bad.png"
    bad.write_text("<html>not an image</html>")
    with pytest.raises(CommandError, match="1 file"):
        call_command("predict", str(good), str(bad))
    captured = capsys.readouterr()
    assert "probability=" in captured.out and f"model={served.name}" in captured.out
    assert "label=tumor" in captured.out or "label=no_tumor" in captured.out
    assert "bad.png: cannot be read" in captured.err


def test_predict_json_one_object_per_image_with_the_gates_verdict(served, tmp_path, capsys):
    files = {"scan.png": phantom_bytes(3, True), "mr.dcm": dicom_phantom(4, True),
             "ct.dcm": dicom_phantom(4, True, "CT")}
    black = tmp_path / "black.png"
    Image.new("L", (224, 224)).save(black)
    photo = tmp_path / "photo.jpg"
    Image.fromarray(skimage.data.coffee()).save(photo)
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    call_command("predict", "--json", *(str(tmp_path / name) for name in files), str(black), str(photo))
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [line["file"].rsplit("/", 1)[-1] for line in lines] == ["scan.png", "mr.dcm", "ct.dcm", "black.png",
                                                                   "photo.jpg"]
    for line in lines:
        assert set(line) == {"file", "usable", "reason", "probability", "label", "model_version"}
        assert line["model_version"] == served.name
    scan, mr, ct, blank, colour = lines
    assert scan["usable"] and scan["reason"] is None and 0 <= scan["probability"] <= 1 and scan["label"]
    assert mr["usable"], mr
    assert not ct["usable"] and "CT" in ct["reason"] and ct["probability"] is None and ct["label"] is None
    assert not blank["usable"] and "empty" in blank["reason"]
    assert not colour["usable"] and "in colour" in colour["reason"] and colour["label"] is None


def test_train_model_on_phantoms_registers_a_version(settings, tmp_path, capsys):
    registry = tmp_path / "registry"
    call_command("train_model", "--phantoms", "30", "--epochs", "1", "--variants", "1", "--widths", "4,4,8,8",
                 "--gate-epochs", "1", "--gate-negatives-per-kind", "8", "--dropout", "0.3", "--weight-decay", "0.05",
                 "--cell-weight", "5", "--intensity-reference", "interior", "--seed", "3", "--split-seed", "0",
                 "--weight-average", "0.9", "--transplant", "0.25",
                 "--registry", str(registry), "--no-activate")
    out = capsys.readouterr().out
    assert "Registered phantom-" in out and "test, phantoms: AUC" in out
    [version] = [p for p in registry.iterdir() if p.is_dir()]
    assert not (registry / "ACTIVE").exists()
    recipe = json.loads((version / "card.json").read_text())["hyperparameters"]
    assert (recipe["dropout"], recipe["weight_decay"], recipe["cell_weight"]) == (0.3, 0.05, 5.0)
    assert recipe["intensity_reference"] == "interior" and (recipe["seed"], recipe["split_seed"]) == (3, 0)
    assert recipe["weight_average"] == 0.9 and recipe["transplant"] == 0.25


def test_train_model_refuses_bad_input_clearly(tmp_path):
    folder = write_phantom_folder(tmp_path / "one", per_class=5)
    for child in (folder / "notumor").iterdir():
        child.unlink()
    (folder / "notumor").rmdir()
    with pytest.raises(CommandError, match="lacks one of the two labels"):
        call_command("train_model", "--data", str(folder), "--epochs", "1", "--registry", str(tmp_path / "r"))
    with pytest.raises(CommandError, match="comma-separated integers"):
        call_command("train_model", "--data", str(folder), "--widths", "a,b")
    for flag, value, reason in (("--dropout", "1", "from 0 to below 1, not 1.0"),
                                ("--dropout", "-0.1", "from 0 to below 1, not -0.1"),
                                ("--weight-decay", "-1", "at least 0, not -1.0"),
                                ("--cell-weight", "-2", "at least 0, not -2.0"),
                                ("--split-seed", "-1", "at least 0, not -1"),
                                ("--weight-average", "1", "from 0 to below 1, not 1.0"),
                                ("--transplant", "1.5", "from 0 to 1, not 1.5")):
        with pytest.raises(CommandError, match=f"{flag} must be {reason}"):
            call_command("train_model", "--data", str(folder), flag, value)
    with pytest.raises(CommandError, match="No slices of institution"):
        call_command("train_model", "--data", str(write_phantom_folder(tmp_path / "two", per_class=8)),
                     "--leave-out-institution", "CS", "--epochs", "1", "--registry", str(tmp_path / "r"))
