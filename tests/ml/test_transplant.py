"""Lesion transplants: a lesion from one patient's slice set into another patient's no-tumor slice."""

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from ml.augment import transplant
from ml.data import load_dataset
from ml.train import TrainConfig, augmented_copies, lesion_donors

pytestmark = pytest.mark.no_db


def head(side: int = 64, level: float = 0.4, radius: float = 26) -> np.ndarray:
    y, x = np.mgrid[:side, :side]
    return np.where((y - side / 2) ** 2 + (x - side / 2) ** 2 < radius**2, level, 0.0).astype(np.float32)


def lesion(side: int = 64, rows=slice(24, 32), cols=slice(36, 44)) -> np.ndarray:
    mask = np.zeros((side, side), np.float32)
    mask[rows, cols] = 1.0
    return mask


def test_a_transplanted_lesion_keeps_its_place_and_its_contrast_to_the_head():
    recipient = head(level=0.3)
    recipient[10:54, 30:34] = 0.6  # the head's brightest part, so that its percentiles span 0.3 to 0.6
    donor, mask = head(level=0.2), lesion()
    donor[10:54, 30:34] = 0.4
    donor[mask > 0] = 0.4  # as bright as the donor's brightest part
    for seed in range(8):
        image, moved = transplant(recipient, donor, mask, np.random.default_rng(seed))
        assert (moved == mask).all() or (moved == mask[:, ::-1]).all()  # in place, or mirrored
        core = ndimage.binary_erosion(moved > 0)
        assert np.allclose(image[core], 0.6, atol=0.01)  # the recipient's brightest level, not the donor's
        assert (image[moved > 0] > 0.5).all()  # its edge feathered into the surroundings
        far = ~ndimage.binary_dilation(moved > 0, iterations=6)
        assert np.array_equal(image[far], recipient[far])  # away from the lesion nothing changed


def test_a_lesion_that_would_fall_outside_the_head_is_not_transplanted():
    recipient = head(radius=10)
    recipient[28:36, 28:36] = 0.6
    assert transplant(recipient, head(), lesion(rows=slice(4, 12), cols=slice(4, 60)), np.random.default_rng(0)) is None


def write_table(root, patients=("P1", "P2", "P3"), fractions=(0.5, 0.5, 0.9)):
    rows = ["patient,institution,slice,sequence,image,mask,mask_pixels,head_fraction,label"]
    for patient, fraction in zip(patients, fractions):
        for index, tumor in ((1, False), (2, True), (3, False)):
            for folder in ("images", "masks"):
                (root / folder / patient).mkdir(parents=True, exist_ok=True)
            picture = head(level=0.5) * 2 + (lesion() * 0.3 if tumor else 0)
            Image.fromarray((np.clip(picture, 0, 1) * 255).astype(np.uint8)).save(
                root / "images" / patient / f"{index}-flair.png")
            Image.fromarray((lesion() * 255 * tumor).astype(np.uint8)).save(root / "masks" / patient / f"{index}.png")
            rows.append(f"{patient},AA,{index},flair,images/{patient}/{index}-flair.png,masks/{patient}/{index}.png,"
                        f"{64 if tumor else 0},{fraction},{'tumor' if tumor else 'no_tumor'}")
    (root / "slices.csv").write_text("\n".join(rows) + "\n")
    return root


def test_donors_come_from_another_patient_at_the_same_level_and_only_when_asked(tmp_path):
    dataset = load_dataset(write_table(tmp_path), size=64)
    every = np.arange(len(dataset))
    donors = lesion_donors(dataset, every, TrainConfig(transplant=1.0), variant=0)
    negatives = [i for i, s in enumerate(dataset.samples) if s.label == 0]
    # P3 cuts its head at another level (0.9 of the slice against 0.5): it neither gives nor receives.
    assert sorted(donors) == [i for i in negatives if dataset.samples[i].subject != "P3"]
    for row, donor in donors.items():
        assert donor.label == 1 and donor.subject not in (dataset.samples[row].subject, "P3")
    assert donors == lesion_donors(dataset, every, TrainConfig(transplant=1.0), variant=0)
    assert lesion_donors(dataset, every, TrainConfig(), variant=0) == {}
    assert lesion_donors(dataset, every[dataset.labels == 1], TrainConfig(transplant=1.0), variant=0) == {}


def test_an_augmented_copy_labels_a_slice_with_a_transplanted_lesion_a_tumor_and_maps_it(tmp_path):
    dataset = load_dataset(write_table(tmp_path), size=64)
    every = np.arange(len(dataset))
    config = TrainConfig(transplant=1.0, workers=1)
    images, cells, labels = augmented_copies(dataset, every, config, variant=0, size=64)
    received = sorted(lesion_donors(dataset, every, config, variant=0))
    assert images.shape == (9, 64, 64, 1) and cells.shape == (9, 16, 16)
    assert list(np.flatnonzero(labels == 1)) == sorted(received + list(np.flatnonzero(dataset.labels == 1)))
    assert all(cells[row].max() > 0.5 for row in received)
    untouched = augmented_copies(dataset, every, TrainConfig(workers=1), variant=0, size=64)[2]
    assert np.array_equal(untouched, dataset.labels)
