import io
import logging

import numpy as np
import pytest
from PIL import Image

from ml.data import class_label, find_samples, load_dataset
from ml.imaging import Limits, UnreadableImage, read_image

pytestmark = pytest.mark.no_db


def save(path, image: Image.Image, fmt="PNG"):
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt)


def gradient(mode: str, size=(40, 30)) -> Image.Image:
    base = Image.fromarray(np.tile(np.linspace(0, 255, size[0], dtype=np.uint8), (size[1], 1)), mode="L")
    if mode == "I;16":
        return Image.fromarray(np.asarray(base, np.uint16) * 257)
    return base.convert(mode)


@pytest.mark.parametrize("name,label", [("glioma", 1), ("Meningioma", 1), ("pituitary", 1), ("tumor", 1), ("yes", 1),
                                        ("notumor", 0), ("no_tumor", 0), ("no", 0), ("normal", 0), ("healthy", 0),
                                        ("other", None)])
def test_class_names(name, label):
    assert class_label(name) == label


def test_layout_with_and_without_split_level(tmp_path):
    for split in ("Training", "Testing"):
        save(tmp_path / "a" / split / "glioma" / "x.png", gradient("L"))
        save(tmp_path / "a" / split / "notumor" / "y.jpg", gradient("RGB"), "JPEG")
    save(tmp_path / "b" / "yes" / "x.png", gradient("L"))
    save(tmp_path / "b" / "no" / "y.png", gradient("L"))
    save(tmp_path / "b" / "unknown" / "z.png", gradient("L"))
    (tmp_path / "b" / "yes" / "notes.txt").write_text("not an image")
    assert [(s.label, s.subtype) for s in find_samples(tmp_path / "a")] == [
        (1, "glioma"), (0, "notumor"), (1, "glioma"), (0, "notumor")]
    assert sorted((s.label, s.subtype) for s in find_samples(tmp_path / "b")) == [(0, "no"), (1, "yes")]


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "LA", "I;16"])
def test_every_mode_decodes_to_the_same_grayscale(mode):
    buffer = io.BytesIO()
    gradient(mode).save(buffer, format="PNG")
    gray = read_image(buffer.getvalue())
    assert gray.shape == (30, 40) and gray.dtype == np.float32
    assert gray.min() >= 0 and gray.max() <= 1
    reference = read_image(_png(gradient("L")))
    assert np.abs(gray - reference).max() < 0.02


def _png(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_transparent_pixels_become_background():
    rgba = Image.new("RGBA", (20, 20), (255, 255, 255, 0))
    assert read_image(_png(rgba)).max() == 0.0


@pytest.mark.parametrize("data,message", [
    (b"", "empty"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", "not a JPEG or PNG"),
    (_png(Image.new("L", (64, 64), 128))[:60], "damaged or incomplete"),
])
def test_unreadable_inputs_raise_a_clear_error(data, message):
    with pytest.raises(UnreadableImage, match=message):
        read_image(data)


@pytest.mark.parametrize("size,mode,limits,message", [
    ((3000, 3000), "L", Limits(max_pixels=1_000_000), "the limit is 1,000,000"),
    ((390_625, 64), "L", Limits(), "no side may exceed"),
    ((4000, 64), "L", Limits(), "times longer than wide"),
    ((3000, 3000), "RGBA", Limits(max_decoded_bytes=16 * 1024 * 1024), "once decoded"),
])
def test_size_limits_are_enforced_from_the_header_before_decoding(size, mode, limits, message, monkeypatch):
    data = _png(Image.new(mode, size))

    def refuse_to_decode(self, *args, **kwargs):
        raise AssertionError("decoded before its size was checked")

    monkeypatch.setattr(Image.Image, "load", refuse_to_decode)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", refuse_to_decode)
    with pytest.raises(UnreadableImage, match=message) as raised:
        read_image(data, limits)
    assert raised.value.code == "too_large"


def test_sixteen_bit_images_are_windowed_by_percentiles_not_their_maximum():
    """One hot pixel used to leave the rest of a 16-bit slice in 17 grey levels."""
    values = np.tile(np.linspace(0, 4000, 200), (200, 1)).astype(np.uint16)
    values[0, 0] = 65535
    gray = read_image(_png(Image.fromarray(values)))
    assert len(np.unique(np.round(gray * 255))) > 200 * 0.9
    assert gray[100, 100] == pytest.approx(values[100, 100] / 4000, abs=0.02)


def test_exif_orientation_is_applied():
    pixels = np.zeros((40, 60), np.uint8)
    pixels[:, :10] = 255  # a bright band on the left
    image = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif.tobytes(), quality=95)
    gray = read_image(buffer.getvalue())
    assert gray.shape == (60, 40) and gray[:10].mean() > 0.8 and gray[-10:].mean() < 0.2


def test_a_large_image_is_shrunk_as_soon_as_it_is_decoded():
    from ml.imaging import SLICE_SIDE

    big = read_image(_png(Image.new("L", (3000, 2000), 90)))
    assert max(big.shape) == SLICE_SIDE and big.shape == (683, SLICE_SIDE)


def test_unreadable_files_are_skipped_with_a_warning_and_a_count(tmp_path, caplog):
    save(tmp_path / "tumor" / "good.png", gradient("L"))
    save(tmp_path / "notumor" / "good.png", gradient("L"))
    (tmp_path / "tumor" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (tmp_path / "notumor" / "empty.jpg").write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        dataset = load_dataset(tmp_path, size=32)
    assert len(dataset) == 2
    assert len(dataset.skipped) == 2
    assert "Skipped 2 unreadable" in caplog.text
    assert dataset.images.shape == (2, 32, 32, 1)


def test_cache_returns_identical_arrays(tmp_path):
    save(tmp_path / "data" / "tumor" / "a.png", gradient("L"))
    save(tmp_path / "data" / "notumor" / "b.png", gradient("RGB"))
    first = load_dataset(tmp_path / "data", size=32, cache_dir=tmp_path / "cache")
    second = load_dataset(tmp_path / "data", size=32, cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir())
    np.testing.assert_array_equal(first.images, second.images)
    assert first.paths == second.paths and first.subtypes == second.subtypes


def test_a_dataset_is_standardised_by_the_reference_it_was_loaded_with(tmp_path):
    """A recipe's intensity reference reaches every image it trains on; the cache keeps the references apart."""
    from ml.phantoms import write_phantom_folder
    from ml.preprocess import prepare

    folder = write_phantom_folder(tmp_path / "data", per_class=2, seed=3)
    loaded = {reference: load_dataset(folder, cache_dir=tmp_path / "cache", reference=reference)
              for reference in ("head", "interior")}
    assert len(list((tmp_path / "cache").iterdir())) == 2
    for reference, dataset in loaded.items():
        again = load_dataset(folder, cache_dir=tmp_path / "cache", reference=reference)
        assert dataset.reference == again.reference == dataset.subset([0, 1]).reference == reference
        gray = read_image(dataset.paths[0])
        np.testing.assert_array_equal(dataset.images[0], again.images[0])
        np.testing.assert_array_equal(dataset.images[0], prepare(gray, reference=reference).tensor)
        np.testing.assert_array_equal(dataset.prepare(gray).tensor, dataset.images[0])
    assert not np.array_equal(loaded["head"].images, loaded["interior"].images)


def test_a_recipe_names_its_reference_and_older_cards_mean_the_whole_head():
    from ml.train import TrainConfig

    card = {"hyperparameters": {**TrainConfig(intensity_reference="interior").to_dict(), "image_size": 128}}
    assert TrainConfig.from_card(card).intensity_reference == "interior"
    del card["hyperparameters"]["intensity_reference"]
    assert TrainConfig.from_card(card).intensity_reference == "head" == TrainConfig().intensity_reference


def test_a_recipes_fingerprint_does_not_depend_on_how_its_folders_are_spelled(tmp_path, monkeypatch):
    from ml.phantoms import write_phantom_folder
    from ml.pipeline import prepare_experiment, recipe_fingerprint
    from ml.train import TrainConfig

    folder = write_phantom_folder(tmp_path / "shared" / "phantoms", per_class=12, seed=5)
    monkeypatch.chdir(tmp_path / "shared")
    config = TrainConfig()
    absolute = recipe_fingerprint(config, prepare_experiment([folder.resolve()], config, verbose=0))
    relative = recipe_fingerprint(config, prepare_experiment([folder.relative_to(tmp_path / "shared")], config,
                                                             verbose=0))
    assert absolute == relative
    assert recipe_fingerprint(TrainConfig(dropout=0.3), prepare_experiment([folder], config, verbose=0)) != absolute


def test_a_split_seed_keeps_the_split_while_the_training_seed_changes(tmp_path):
    from ml.phantoms import write_phantom_folder
    from ml.train import TrainConfig, make_split

    dataset = load_dataset(write_phantom_folder(tmp_path, per_class=20, seed=6), size=32)

    def split(**seeds):
        _, found, _ = make_split(dataset, TrainConfig(**seeds))
        return [list(part) for part in (found.train, found.validation, found.test)]

    assert split(seed=1, split_seed=0) == split(seed=0) != split(seed=1)
    assert TrainConfig.from_card({"hyperparameters": TrainConfig(seed=1, split_seed=0).to_dict()}).split_seed == 0


def test_training_refuses_images_standardised_otherwise_than_its_recipe(tmp_path):
    from ml.phantoms import write_phantom_folder
    from ml.train import TrainConfig, fit, make_split

    dataset = load_dataset(write_phantom_folder(tmp_path, per_class=6, seed=4), size=32, reference="interior")
    config = TrainConfig(epochs=1)
    _, split, _ = make_split(dataset, config)
    with pytest.raises(ValueError, match="reference"):
        fit(dataset, split, config, verbose=0)


def test_a_collection_with_a_slice_table_names_patients_institutions_sequences_and_masks(tmp_path):
    root = tmp_path / "lgg"
    lesion = np.zeros((64, 64), np.uint8)
    lesion[20:30, 30:40] = 255
    rows = ["patient,institution,slice,sequence,image,mask,mask_pixels,head_fraction,label"]
    for patient, institution in (("P1", "AA"), ("P2", "BB")):
        for index, tumor in ((1, False), (2, True)):
            save(root / "images" / patient / f"{index}-flair.png", gradient("L", (64, 64)))
            save(root / "masks" / patient / f"{index}.png", Image.fromarray(lesion if tumor else lesion * 0))
            rows.append(f"{patient},{institution},{index},flair,images/{patient}/{index}-flair.png,"
                        f"masks/{patient}/{index}.png,{100 if tumor else 0},0.5,{'tumor' if tumor else 'no_tumor'}")
    (root / "slices.csv").write_text("\n".join(rows) + "\n")
    samples = find_samples(root)
    assert [(s.subject, s.institution, s.sequence, s.label) for s in samples] == [
        ("P1", "AA", "flair", 0), ("P1", "AA", "flair", 1), ("P2", "BB", "flair", 0), ("P2", "BB", "flair", 1)]
    dataset = load_dataset(root, size=64)
    assert dataset.cells.shape == (4, 16, 16) and dataset.has_cells.all()
    assert dataset.cells[0].max() == 0 and dataset.cells[1].max() > 0.5  # the lesion, cut like the slice
