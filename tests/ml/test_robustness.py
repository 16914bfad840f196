"""Acquisition-shift augmentation (training) and the stress suite (evaluation) are different families."""

import numpy as np
import pytest

from ml import augment, stress
from ml.phantoms import make_phantom
from ml.preprocess import prepare

pytestmark = pytest.mark.no_db


def lesion_phantom(seed: int):
    with_lesion, without = make_phantom(seed, True), make_phantom(seed, False)
    return with_lesion, (np.abs(with_lesion - without) > 0.1).astype(np.float32)


def test_augmentation_is_seeded_bounded_and_moves_the_mask_with_the_slice():
    gray, mask = lesion_phantom(4)
    first = augment.augment(gray, mask, np.random.default_rng(7))
    second = augment.augment(gray, mask, np.random.default_rng(7))
    np.testing.assert_array_equal(first[0], second[0])
    for seed in range(12):
        shifted, moved = augment.augment(gray, mask, np.random.default_rng(seed))
        assert shifted.dtype == np.float32 and 0 <= shifted.min() and shifted.max() <= 1
        assert moved.sum() == pytest.approx(mask.sum(), rel=0.4)  # zoom changes the area, nothing is lost
        # Under the moved mask the lesion's bright rim is still there: geometry moved both alike.
        centre = np.argwhere(moved > 0.5).mean(axis=0)
        unmoved = augment.augment(gray, None, np.random.default_rng(seed))[0]
        np.testing.assert_array_equal(unmoved, shifted)
        assert np.isfinite(centre).all()


def test_every_stress_family_changes_the_slice_and_none_is_a_training_family():
    gray = make_phantom(9, True)
    trained = {"geometry", "field_of_view", "bias_field", "gamma_and_window", "blur_or_downsample", "rician_noise"}
    assert not set(stress.FAMILIES) & trained
    for family in stress.FAMILIES:
        out = stress.perturb(gray, family, seed=1)
        assert out.shape == gray.shape and 0 <= out.min() and out.max() <= 1
        assert np.abs(out - gray).mean() > 0.002, family


def test_the_stress_suites_white_background_keeps_the_head():
    gray = make_phantom(2, False)
    white = stress.perturb(gray, "white_background")
    assert white[0, 0] == 1.0 and white[112, 112] == gray[112, 112]
    assert abs(prepare(white).box.side - prepare(gray).box.side) <= 0.1 * prepare(gray).box.side


def test_blank_uniform_and_noise_images_hold_no_head():
    for name, image in stress.empty_images().items():
        if "gradient" not in name:  # a gradient has a bright side: the gate's learned check refuses those
            assert prepare(image).head_fraction < 0.05, name
