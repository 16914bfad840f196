"""Training examples built in worker processes: augmented slices for the network, positives and made
negatives for the quality gate.

The functions here import no TensorFlow, so the worker processes that run them start in a fraction
of a second and stay small; one pool is kept for the life of the training process.
"""

from __future__ import annotations

import atexit
import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np

from ml.augment import augment, transplant
from ml.data import Sample, read_mask
from ml.gate import gate_input
from ml.imaging import read_image
from ml.negatives import negative
from ml.preprocess import MAP_STRIDE, crop_like, prepare

_pools: dict[int, ProcessPoolExecutor] = {}


def pool_map(function, jobs: list, workers: int = 0) -> list:
    """`function` over `jobs` in a pool of `workers` processes (0: one per core), results in order."""
    workers = workers or os.cpu_count() or 1
    if workers not in _pools:
        _pools[workers] = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))
    return list(_pools[workers].map(function, jobs, chunksize=max(1, min(64, len(jobs) // (4 * workers) or 1))))


@atexit.register
def _shutdown() -> None:
    for pool in _pools.values():
        pool.shutdown(cancel_futures=True)


def augmented_example(job: tuple[Sample, int, str, tuple[int, ...], Sample | None]
                      ) -> tuple[np.ndarray, np.ndarray, int]:
    """(sample, image size, intensity reference, seed key, lesion donor or None) -> one augmented acquisition,
    preprocessed, its cell targets and its label: a tumor when the donor's lesion was transplanted into it."""
    sample, size, reference, key, donor = job
    rng = np.random.default_rng(key)
    gray = read_image(sample.path)
    mask = read_mask(sample.mask).astype(np.float32) if sample.mask is not None else None
    label = sample.label
    if donor is not None:
        moved = transplant(gray, read_image(donor.path), read_mask(donor.mask), rng)
        if moved is not None:
            (gray, mask), label = moved, 1
    gray, mask = augment(gray, mask, rng)
    prepared = prepare(gray, size, reference)
    side = size // MAP_STRIDE
    cells = crop_like(mask, prepared, side) if mask is not None else np.zeros((side, side), np.float32)
    return prepared.tensor.astype(np.float16), cells.astype(np.float16), label


def gate_positive(job: tuple[Sample, str, tuple[int, ...], bool]) -> np.ndarray:
    """The gate's input for a real slice (prepared by the given intensity reference), as another acquisition
    would show it when `shifted`."""
    sample, reference, key, shifted = job
    gray = read_image(sample.path)
    if shifted:
        gray, _ = augment(gray, None, np.random.default_rng(key))
    return gate_input(prepare(gray, reference=reference))


def gate_negative(job: tuple[str, str, tuple[int, ...], bool, list[str]]) -> np.ndarray:
    """The gate's input for a made negative of a kind (ml.negatives); `paths` feed the "brain part" kind."""
    kind, reference, key, shifted, paths = job
    rng = np.random.default_rng(key)
    image = negative(kind, rng, [read_image(path) for path in paths] if kind == "brain_part" else [])
    if shifted:
        image, _ = augment(image, None, rng)
    return gate_input(prepare(image, reference=reference))
