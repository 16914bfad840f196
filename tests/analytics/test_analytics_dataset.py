"""The dataset study: averages and variability equal numpy's over the model's preprocessed stack."""

import io
from pathlib import Path

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from PIL import Image

from analytics import dataset_study, storage
from analytics.models import DatasetStudy
from ml.data import load_dataset
from ml.phantoms import write_phantom_folder
from ml.preprocess import IMAGE_SIZE


def stack_of(folder: Path, labels=None, subtype=None) -> np.ndarray:
    dataset = load_dataset(folder, IMAGE_SIZE)
    keep = np.ones(len(dataset), bool)
    if labels is not None:
        keep &= dataset.labels == labels
    if subtype is not None:
        keep &= np.asarray(dataset.subtypes) == subtype
    return dataset.images[keep, ..., 0].astype(np.float64)


@pytest.mark.no_db
def test_mean_and_std_equal_numpy_over_the_preprocessed_stack(phantom_folder):
    dataset = load_dataset(phantom_folder, IMAGE_SIZE)
    for group in dataset_study.groups_of(dataset):
        mean, std = dataset_study.mean_and_std(dataset.images, group.index)
        expected = dataset.images[group.index, ..., 0].astype(np.float64)
        np.testing.assert_allclose(mean, expected.mean(axis=0), atol=1e-9)
        np.testing.assert_allclose(std, expected.std(axis=0), atol=1e-6)
    names = [group.key for group in dataset_study.groups_of(dataset)]
    assert names == ["label-no_tumor", "label-tumor", "subtype-glioma", "subtype-meningioma"]


@pytest.mark.no_db
def test_chunked_mean_and_std_equal_numpy_across_chunk_borders(monkeypatch):
    monkeypatch.setattr(dataset_study, "CHUNK", 3)
    images = np.random.default_rng(0).random((10, 8, 8, 1), dtype=np.float32)
    index = np.array([0, 2, 3, 5, 7, 8, 9])
    mean, std = dataset_study.mean_and_std(images, index)
    np.testing.assert_allclose(mean, images[index, ..., 0].mean(axis=0, dtype=np.float64), atol=1e-9)
    np.testing.assert_allclose(std, images[index, ..., 0].astype(np.float64).std(axis=0), atol=1e-6)


@pytest.mark.slow
@pytest.mark.django_db
def test_build_analytics_stores_the_study_computed_on_the_preprocessed_images(phantom_folder):
    call_command("build_analytics", data=str(phantom_folder), seed=7, verbosity=0)
    study = DatasetStudy.objects.get()
    numbers = study.numbers
    assert study.images == 12 and study.source == "data"
    assert numbers["inventory"]["by_label"] == {"no_tumor": 6, "tumor": 6}
    assert {row["name"]: row["images"] for row in numbers["inventory"]["by_subtype"]} == {
        "notumor": 6, "glioma": 3, "meningioma": 3}
    assert numbers["inventory"]["modes"]["notumor"] == {"L": 6}
    assert numbers["inventory"]["sizes"]["glioma"] == {"224×224": 3}

    with np.load(io.BytesIO(storage.read(numbers["arrays"]))) as arrays:
        for key, label, subtype in (("label-no_tumor", 0, None), ("label-tumor", 1, None),
                                    ("subtype-glioma", None, "glioma"), ("subtype-meningioma", None, "meningioma")):
            stack = stack_of(phantom_folder, label, subtype)
            np.testing.assert_allclose(arrays[f"mean_{key}"], stack.mean(axis=0), atol=1e-9)
            np.testing.assert_allclose(arrays[f"std_{key}"], stack.std(axis=0), atol=1e-6)

    figures = [group["figure"] for group in numbers["groups"]] + [
        numbers["difference"], numbers["difference_by_subtype"], numbers["class_balance"],
        numbers["features"]["figure"]]
    for entry in figures:
        assert entry["title"] and entry["alt"]
        assert entry["name"].startswith("dataset/")
        with default_storage.open(storage.full_name(entry["name"])) as handle:
            assert Image.open(handle).format == "PNG"
    assert [len(numbers["montage"][label]) for label in ("no_tumor", "tumor")] == [6, 6]
    assert {image["label"] for image in numbers["montage"]["tumor"]} == {"tumor"}
    assert [row["name"] for row in numbers["features"]["rows"]][:3] == ["mean", "variance", "std"]
    assert numbers["duplicates"]["images"] == 12


@pytest.mark.slow
@pytest.mark.django_db
def test_every_build_adds_a_row_and_keeps_the_older_files(phantom_folder):
    call_command("build_analytics", data=str(phantom_folder), seed=1, verbosity=0)
    call_command("build_analytics", data=str(phantom_folder), seed=2, verbosity=0)
    first, second = DatasetStudy.objects.order_by("created_at", "id")
    assert first.numbers["difference"]["name"] != second.numbers["difference"]["name"]
    assert default_storage.exists(storage.full_name(first.numbers["difference"]["name"]))


@pytest.mark.django_db
def test_an_empty_folder_is_refused_with_a_clear_error(tmp_path):
    with pytest.raises(CommandError, match="No labelled images found under .*subfolders named by class"):
        call_command("build_analytics", data=str(tmp_path), verbosity=0)
    (tmp_path / "scans").mkdir()
    with pytest.raises(CommandError, match="No labelled images found"):
        call_command("build_analytics", data=str(tmp_path), verbosity=0)
    assert not DatasetStudy.objects.exists()


@pytest.mark.django_db
def test_a_single_class_folder_is_refused_with_a_clear_error(tmp_path):
    write_phantom_folder(tmp_path, 2)
    for path in (tmp_path / "notumor").iterdir():
        path.unlink()
    (tmp_path / "notumor").rmdir()
    with pytest.raises(CommandError, match=r"Only tumor images were found .* needs no-tumor images as well"):
        call_command("build_analytics", data=str(tmp_path), verbosity=0)
    assert not DatasetStudy.objects.exists()


@pytest.mark.django_db
def test_a_missing_folder_is_refused(tmp_path):
    with pytest.raises(CommandError, match="No such folder"):
        call_command("build_analytics", data=str(tmp_path / "absent"), verbosity=0)


@pytest.mark.slow
@pytest.mark.django_db
def test_a_failed_build_leaves_no_files_behind(phantom_folder, private_storage, monkeypatch):
    from analytics import plots

    def broken(*args, **kwargs):
        raise RuntimeError("drawing failed")

    monkeypatch.setattr(plots, "feature_distributions", broken)
    with pytest.raises(RuntimeError):
        call_command("build_analytics", data=str(phantom_folder), verbosity=0)
    assert not DatasetStudy.objects.exists()
    assert not [path for path in private_storage.rglob("*") if path.is_file()]


@pytest.mark.no_db
def test_modes_are_read_as_stored(tmp_path):
    for mode in ("L", "RGB", "RGBA", "P"):
        Image.new(mode, (16, 16)).save(tmp_path / f"{mode}.png")
    Image.new("I;16", (16, 16)).save(tmp_path / "deep.png")
    paths = [str(tmp_path / f"{name}.png") for name in ("L", "RGB", "RGBA", "P", "deep")]
    assert dataset_study.image_modes(paths) == ["L", "RGB", "RGBA", "P", "I;16"]
