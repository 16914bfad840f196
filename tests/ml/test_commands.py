"""The management commands around the ml package: train_model, evaluate_model, predict."""

import json

import pytest
from django.core.management import CommandError, call_command

from ml.phantoms import write_phantom_folder
from tests.factories import phantom_bytes

pytestmark = pytest.mark.no_db


@pytest.fixture
def served(settings, tiny_model):
    root, version = tiny_model
    settings.MODEL_DIR = root
    settings.MODEL_VERSION = None
    return version


def test_evaluate_model_json_prints_exactly_one_object(served, tmp_path, capsys):
    folder = write_phantom_folder(tmp_path / "eval", per_class=10, seed=31)
    call_command("evaluate_model", "--data", str(folder), "--json")
    out = capsys.readouterr().out.strip()
    result = json.loads(out)
    assert set(result) == {"n", "accuracy", "sensitivity", "specificity", "auc", "threshold", "tp", "fp", "tn", "fn",
                           "per_class_recall", "model_version"}
    assert result["n"] == 20 and result["tp"] + result["fn"] == 10 and result["model_version"] == served.name
    assert set(result["per_class_recall"]) == {"tumor", "notumor"}


def test_evaluate_model_table_and_test_split(served, phantom_folder, capsys):
    call_command("evaluate_model", "--data", str(phantom_folder), "--split", "test", "--model", served.name)
    out = capsys.readouterr().out
    assert f"images (n)      {len(served.card['split']['test_files'])}" in out
    assert "sensitivity" in out and "AUC" in out and "tp=" in out


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
    assert "bad.png: cannot be assessed" in captured.err


def test_train_model_on_phantoms_registers_a_version(settings, tmp_path, capsys):
    registry = tmp_path / "registry"
    call_command("train_model", "--phantoms", "30", "--epochs", "1", "--filters", "4,8,8", "--ensemble", "1",
                 "--registry", str(registry), "--no-activate")
    out = capsys.readouterr().out
    assert "Registered phantom-" in out and "test: AUC" in out
    versions = [p for p in registry.iterdir() if p.is_dir()]
    assert len(versions) == 1 and not (registry / "ACTIVE").exists()


def test_train_model_refuses_a_single_class_folder(tmp_path):
    folder = write_phantom_folder(tmp_path / "one", per_class=5)
    for child in (folder / "notumor").iterdir():
        child.unlink()
    (folder / "notumor").rmdir()
    with pytest.raises(CommandError, match="lacks one of the two labels"):
        call_command("train_model", "--data", str(folder), "--epochs", "1", "--ensemble", "1",
                     "--registry", str(tmp_path / "r"))
