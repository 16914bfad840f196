import io
import logging

import numpy as np
import pytest
from PIL import Image

from ml.data import class_label, find_samples, load_dataset
from ml.imaging import UnreadableImage, read_image

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


def test_pixel_limit_is_enforced_before_decoding():
    big = _png(Image.new("L", (3000, 3000)))
    with pytest.raises(UnreadableImage, match="too many pixels|limit"):
        read_image(big, max_pixels=1_000_000)


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
