import json
import shutil

import numpy as np
import pytest
from scipy import ndimage

from ml.data import load_dataset
from ml.files import read_file
from ml.imaging import as_stored, encode_png, read_image, read_stored
from ml.phantoms import make_phantom, write_phantom_folder
from ml.predictor import Predictor
from ml.registry import ModelVersion
from ml.preprocess import (IMAGE_SIZE, INTENSITY_REFERENCE, WORK_SIDE, erode_cross, fill_holes, head_mask, open_cross,
                           prepare, preprocess)

pytestmark = pytest.mark.no_db


def test_output_shape_range_and_dtype():
    prepared = prepare(make_phantom(0, True, size=300))
    assert prepared.tensor.shape == (IMAGE_SIZE, IMAGE_SIZE, 1) and prepared.tensor.dtype == np.float32
    assert 0.0 <= prepared.tensor.min() and prepared.tensor.max() <= 1.0
    assert prepared.head.shape == (IMAGE_SIZE, IMAGE_SIZE) and 0.3 < prepared.head_fraction < 0.9


def test_crop_finds_the_head_in_a_padded_slice():
    head = make_phantom(3, False, size=100)
    canvas = np.zeros((400, 300), np.float32)
    canvas[250:350, 40:140] = head
    prepared = prepare(canvas)
    scale = prepared.work.shape[0] / 400
    box = prepared.box
    assert abs(box.top / scale - 245) < 20 and abs(box.left / scale - 35) < 20 and abs(box.side / scale - 110) < 20
    assert prepared.head_fraction == pytest.approx((np.pi * 0.4 * 0.32 * 100 * 100) / (400 * 300), rel=0.5)


def test_intensity_scale_does_not_change_the_tensor():
    gray = make_phantom(5, True)
    np.testing.assert_allclose(preprocess(gray), preprocess(gray * 0.4), atol=1e-4)


@pytest.mark.parametrize("background", ["noise", "white", "lifted"])
def test_the_same_head_on_another_background(background):
    """The head is found from the border's level, so noise in the air, a white or a lifted background
    leave the crop where it was (the audit found a white background turning a slice's answer around)."""
    gray = make_phantom(8, True)
    air = make_phantom(8, True) < 0.02
    rng = np.random.default_rng(0)
    other = {"noise": np.clip(gray + rng.normal(0, 0.02, gray.shape) * air, 0, 1),
             "white": np.where(air, 1.0, gray),
             "lifted": gray * 0.8 + 0.2}[background].astype(np.float32)
    clean, shifted = prepare(gray), prepare(other)
    assert abs(clean.box.side - shifted.box.side) <= 0.05 * clean.box.side
    assert (clean.head == shifted.head).mean() > 0.95


def random_masks(seed: int, count: int = 400):
    """(case, mask): smooth blobs and salt-and-pepper, of every shape from 1 x 1 to 47 x 47."""
    rng = np.random.default_rng(seed)
    for case in range(count):
        shape = tuple(rng.integers(1, 48, size=2))
        field = ndimage.gaussian_filter(rng.random(shape), rng.uniform(0.5, 3))
        yield case, (field > np.quantile(field, rng.uniform(0.2, 0.8)) if case % 2
                     else rng.random(shape) < rng.uniform(0, 1))


def test_fill_holes_is_scipys_on_any_mask():
    """The model was trained with scipy's binary_fill_holes; the faster fill must not move a single pixel."""
    for case, mask in random_masks(seed=0):
        assert np.array_equal(fill_holes(mask), ndimage.binary_fill_holes(mask)), case
    ring = np.zeros((9, 9), bool)
    ring[1:8, 1:8], ring[3:6, 3:6] = True, False
    assert fill_holes(ring)[4, 4] and not fill_holes(ring)[0, 0]


def test_erode_cross_is_scipys_erosion_on_any_mask():
    for case, mask in random_masks(seed=2):
        for iterations in (1, 2):
            expected = ndimage.binary_erosion(mask, iterations=iterations)
            assert np.array_equal(erode_cross(mask, iterations), expected), (case, iterations)


def test_the_head_interior_sets_the_scale_on_a_white_background():
    """Resizing mixes a white air into the head's edge; scaled by the whole head, the bright edge lifts the 99th
    percentile and darkens the head (the release's white-background weakness); its interior does not see the edge."""
    gray = make_phantom(8, True)
    white = np.where(gray < 0.02, 1.0, gray).astype(np.float32)
    change = {}
    for reference in ("head", "interior"):
        clean, painted = prepare(gray, reference=reference), prepare(white, reference=reference)
        inside = erode_cross(clean.head & painted.head, 3)
        change[reference] = np.abs(clean.tensor[..., 0] - painted.tensor[..., 0])[inside].mean()
    assert change["interior"] < 0.05 < 0.1 < change["head"]


def test_ranks_leave_the_input_unchanged_by_any_monotone_contrast_curve():
    gray = make_phantom(9, True)
    ranked = prepare(gray, reference="ranks")
    head = ranked.tensor[..., 0][ranked.head]
    assert (ranked.tensor[..., 0][~ranked.head] == 0).all() and 0 < head.min() and head.max() < 1
    assert abs(np.median(head) - 0.5) < 0.02  # every share of the head is equally common
    def change(curve, reference):
        clean, shown = prepare(gray, reference=reference), prepare(curve(gray).astype(np.float32), reference=reference)
        return np.abs(shown.tensor[..., 0] - clean.tensor[..., 0])[clean.head & shown.head].mean()

    # Strictly monotone curves move only what resizing mixes at edges; a window that clips the brightest merges
    # their ranks, and still moves the input less than half as much as percentiles do.
    for curve, most in ((lambda x: x**2.5, 0.03), (np.sqrt, 0.03), (lambda x: np.clip(1.6 * x, 0, 1) * 0.5, 0.07)):
        assert change(curve, "ranks") < most and change(curve, "ranks") < 0.4 * change(curve, "head")
    uniform = np.zeros((100, 100), np.float32)
    uniform[20:80, 20:80] = 0.6
    flat = prepare(uniform, reference="ranks")
    assert abs(np.median(flat.tensor[..., 0][flat.head]) - 0.5) < 0.05  # one level: one rank, the middle


def test_an_unknown_intensity_reference_is_refused():
    with pytest.raises(ValueError, match="intensity reference"):
        prepare(make_phantom(1, True), reference="brain")


def test_open_cross_is_scipys_opening_on_any_mask():
    """The model was trained with scipy's binary_opening; the faster opening must not move a single pixel."""
    for case, mask in random_masks(seed=1):
        for iterations in (1, 2, 3):
            expected = ndimage.binary_opening(mask, iterations=iterations)
            assert np.array_equal(open_cross(mask, iterations), expected), (case, iterations)
    bridge = np.zeros((12, 20), bool)
    bridge[2:10, 1:7], bridge[2:10, 13:19], bridge[5, 7:13] = True, True, True
    opened = open_cross(bridge, 1)
    assert not opened[5, 8:12].any() and opened[3:9, 2:6].all()  # the bridge goes, the blocks stay


def test_blank_uniform_and_noise_images_give_no_head():
    rng = np.random.default_rng(1)
    for image in (np.zeros((64, 64), np.float32), np.ones((80, 80), np.float32),
                  rng.random((224, 224)).astype(np.float32)):
        prepared = prepare(image)
        assert np.isfinite(prepared.tensor).all()
        assert prepared.head_fraction < 0.03
    assert not head_mask(np.full((50, 50), 0.3, np.float32)).any()


def test_a_long_thin_image_costs_no_more_than_a_small_one():
    """A 390,625 x 64 slice used to allocate 390,625^2 floats in the crop; everything is bounded by WORK_SIDE."""
    prepared = prepare(np.zeros((64, 390_625), np.float32))
    assert max(prepared.work.shape) <= WORK_SIDE and prepared.box.side <= 2 * WORK_SIDE


def test_training_and_serving_give_the_same_tensor_for_the_same_file(tmp_path, tiny_model, monkeypatch):
    """The loader used for training and the predictor used by the worker preprocess identically."""
    folder = write_phantom_folder(tmp_path, per_class=2, seed=9)
    training = load_dataset(folder)
    root, version = tiny_model
    predictor = Predictor(version)
    recorded = version.card["hyperparameters"]["intensity_reference"]
    assert predictor.intensity_reference == recorded == INTENSITY_REFERENCE
    seen = []
    original = predictor.network
    monkeypatch.setattr(predictor, "network", lambda batch: (seen.append(batch.copy()), original(batch))[1])
    for index, path in enumerate(training.paths):
        predictor.assess([read_image(path)], with_features=False)
        np.testing.assert_array_equal(seen[-1][0], training.images[index])


@pytest.mark.parametrize("recorded,served", [("interior", "interior"), ("head", "head"), (None, "head")])
def test_a_version_is_served_the_intensities_it_was_trained_on(tiny_model, tmp_path, monkeypatch, recorded, served):
    """The predictor prepares slices by the reference the card names; a card that names none
    (cnn-20261207-032957 and before) was trained on the whole head's percentiles."""
    _, version = tiny_model
    copy = ModelVersion(version.name, tmp_path / version.name)
    shutil.copytree(version.path, copy.path)
    card = version.card
    card["hyperparameters"]["intensity_reference"] = recorded
    if recorded is None:
        del card["hyperparameters"]["intensity_reference"]
    (copy.path / "card.json").write_text(json.dumps(card))
    predictor = Predictor(copy)
    assert predictor.intensity_reference == served
    seen = []
    original = predictor.network
    monkeypatch.setattr(predictor, "network", lambda batch: (seen.append(batch.copy()), original(batch))[1])
    phantom = make_phantom(4, True)
    gray = np.where(phantom < 0.02, 1.0, phantom).astype(np.float32)
    predictor.assess([gray], with_features=False)
    other = {"head": "interior", "interior": "head"}[served]
    np.testing.assert_array_equal(seen[0][0], prepare(gray, predictor.image_size, served).tensor)
    assert not np.array_equal(seen[0][0], prepare(gray, predictor.image_size, other).tensor)


def test_the_stored_slice_is_what_the_model_sees():
    gray = make_phantom(11, True) ** 1.7  # values between 8-bit levels
    stored = read_stored(encode_png(gray))
    np.testing.assert_array_equal(stored, as_stored(gray))
    assert np.abs(stored - gray).max() <= 0.5 / 65535 + 1e-7
    assert read_file(encode_png(gray)).slices[0].shape == gray.shape
