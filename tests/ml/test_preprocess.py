import numpy as np
import pytest

from ml.data import load_dataset
from ml.imaging import encode_png, read_image
from ml.phantoms import make_phantom, write_phantom_folder
from ml.predictor import Predictor
from ml.preprocess import IMAGE_SIZE, crop_square, head_box, preprocess

pytestmark = pytest.mark.no_db


def test_output_shape_range_and_dtype():
    tensor, box = preprocess(make_phantom(0, True, size=300))
    assert tensor.shape == (IMAGE_SIZE, IMAGE_SIZE, 1)
    assert tensor.dtype == np.float32
    assert 0.0 <= tensor.min() and tensor.max() <= 1.0
    assert box.side > 0


def test_crop_finds_the_head_in_a_padded_slice():
    head = make_phantom(3, False, size=100)
    canvas = np.zeros((400, 300), np.float32)
    canvas[250:350, 40:140] = head
    box = head_box(canvas)
    assert 230 <= box.top <= 260 and 20 <= box.left <= 50 and 90 <= box.side <= 120
    cropped = crop_square(canvas, box)
    assert cropped.shape == (box.side, box.side)
    assert cropped.sum() == pytest.approx(canvas.sum(), rel=1e-6)


def test_intensity_scale_does_not_change_the_tensor():
    gray = make_phantom(5, True)
    np.testing.assert_allclose(preprocess(gray)[0], preprocess(gray * 0.4)[0], atol=1e-5)


def test_blank_image_gives_zeros_not_nan():
    tensor, _ = preprocess(np.zeros((64, 64), np.float32))
    assert np.isfinite(tensor).all() and tensor.max() == 0


def test_training_and_serving_give_the_same_tensor_for_the_same_file(tmp_path, tiny_model, monkeypatch):
    """The loader used for training and the predictor used by the worker preprocess identically."""
    folder = write_phantom_folder(tmp_path, per_class=2, seed=9)
    training = load_dataset(folder)
    root, version = tiny_model
    predictor = Predictor(version)
    seen = []
    original = predictor.network
    monkeypatch.setattr(predictor, "network", lambda batch: (seen.append(batch.copy()), original(batch))[1])
    for index, path in enumerate(training.paths):
        predictor.assess([read_image(path)], with_features=False)
        np.testing.assert_array_equal(seen[-1][0], training.images[index])


def test_reencoded_upload_is_what_the_model_sees():
    gray = make_phantom(11, True)
    stored = read_image(encode_png(gray))
    assert np.abs(stored - gray).max() <= 0.5 / 255 + 1e-6
