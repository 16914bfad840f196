"""How performance grows with the amount of training data (the model report's learning curve).

The version's recipe is trained again on growing shares of its own grouped train split. Each share is a
label-stratified random subset of the split's train slices, and the subsets are nested (the 10% subset lies inside
the 25% one, and so on), so the curve shows the effect of more data rather than of another draw. Validation and
test stay whole: every point is calibrated and chooses its threshold on the same validation slices, as the release
does, and is measured on the same test slices.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence

import numpy as np

from ml import evaluate, figures
from ml.data import Dataset
from ml.dedup import Split
from ml.train import TrainConfig, fit, serve

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


def _stored(values: dict) -> dict:
    """JSON the database accepts: a NaN (an interval with nothing to count) becomes None."""
    return json.loads(json.dumps(values), parse_constant=lambda _: None)


def learning_curve(dataset: Dataset, split: Split, config: TrainConfig, fractions: Sequence[float] = FRACTIONS,
                   on_point: Callable[[dict], None] | None = None) -> list[dict]:
    """Train on each share of `split.train`; return one point per fraction with its test figures."""
    points = []
    for fraction, subset in zip(fractions, nested_subsets(split.train, dataset.labels, fractions, config.seed)):
        result = fit(dataset, dataclasses.replace(split, train=subset), config, verbose=0)
        scores, _ = serve(result.serving, dataset.images[split.test])
        test = figures.slice_metrics(dataset, split.test, scores, result.threshold)
        point = _stored({
            "fraction": float(fraction),
            "train_images": len(subset),
            "train_tumor": int(dataset.labels[subset].sum()),
            "test": {key: test[key] for key in REPORTED},
            "validation_auc": evaluate.auc(dataset.labels[split.validation], result.validation_scores),
            "threshold": result.threshold,
            "best_epoch": result.best_epoch,
            "epochs_run": len(result.history),
            "seconds": round(result.seconds, 1),
        })
        points.append(point)
        if on_point is not None:
            on_point(point)
    return points
