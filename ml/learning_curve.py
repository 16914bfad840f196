"""How performance grows with the amount of training data.

The same network is trained on growing shares of one grouped train split. Each share is a
label-stratified random subset of the split's train images, and the subsets are nested (the 10%
subset lies inside the 25% one, and so on), so the curve shows the effect of more data rather than
of a different draw. Validation and test stay whole: every point chooses its threshold on the same
validation images and is measured on the same test images.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from ml.data import Dataset
from ml.dedup import Split
from ml.train import TrainConfig, run_experiment

FRACTIONS = (0.1, 0.25, 0.5, 1.0)
REPORTED = ("n", "auc", "accuracy", "sensitivity", "specificity", "ci95")


def nested_subsets(train: np.ndarray, labels: np.ndarray, fractions: Sequence[float] = FRACTIONS,
                   seed: int = 0) -> list[np.ndarray]:
    """One sorted index array per fraction of `train`, stratified by label, each inside the next.

    Every subset keeps at least one image of each label present in `train`.
    """
    if any(not 0 < f <= 1 for f in fractions) or list(fractions) != sorted(fractions):
        raise ValueError("fractions must be increasing and in (0, 1]")
    rng = np.random.default_rng(seed)
    orders = [rng.permutation(train[labels[train] == label]) for label in np.unique(labels[train])]
    return [np.sort(np.concatenate([order[:max(1, round(f * len(order)))] for order in orders]))
            for f in fractions]


def learning_curve(dataset: Dataset, split: Split, config: TrainConfig, fractions: Sequence[float] = FRACTIONS,
                   verbose: int = 0, on_point: Callable[[dict], None] | None = None) -> list[dict]:
    """Train on each share of `split.train`; return one point per fraction with its test figures."""
    points = []
    for fraction, subset in zip(fractions, nested_subsets(split.train, dataset.labels, fractions, config.seed)):
        experiment = run_experiment(dataset, dataclasses.replace(split, train=subset), config, verbose=verbose)
        best = experiment.fit.history[experiment.fit.best_epoch - 1]
        point = {
            "fraction": float(fraction),
            "train_images": int(len(subset)),
            "train_tumor": int(dataset.labels[subset].sum()),
            "test": {key: experiment.test[key] for key in REPORTED},
            "validation_auc": experiment.validation["auc"],
            "train_accuracy": best.get("accuracy"),
            "threshold": experiment.threshold,
            "best_epoch": experiment.fit.best_epoch,
            "epochs_run": len(experiment.fit.history),
            "seconds": round(experiment.fit.seconds, 1),
        }
        points.append(point)
        if on_point is not None:
            on_point(point)
    return points
