"""Evaluate a served model on a labelled folder, through exactly the path that serves clinicians."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ml import evaluate
from ml.data import find_samples
from ml.imaging import UnreadableImage, read_image
from ml.predictor import Predictor

BATCH = 64


def evaluate_folder(predictor: Predictor, root: str | Path, only: set[str] | None = None,
                    progress: bool = False) -> dict:
    """Metrics of `predictor` on the images under root (optionally only the relative paths in `only`)."""
    root = Path(root)
    samples = find_samples(root)
    if only is not None:
        samples = [s for s in samples if str(s.path.relative_to(root)) in only]
    if not samples:
        raise ValueError(f"No labelled images to evaluate under {root}")
    labels, scores, subtypes, skipped = [], [], [], 0
    batches = range(0, len(samples), BATCH)
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc="Evaluating", unit="batch")
    for start in batches:
        chunk, images = [], []
        for sample in samples[start:start + BATCH]:
            try:
                images.append(read_image(sample.path))
                chunk.append(sample)
            except UnreadableImage:
                skipped += 1
        for sample, assessment in zip(chunk, predictor.assess(images, with_features=False)):
            labels.append(sample.label)
            scores.append(assessment.probability)
            subtypes.append(sample.subtype)
    labels_array, scores_array = np.array(labels), np.array(scores)
    result = evaluate.metrics(labels_array, scores_array, predictor.threshold)
    result["per_class_recall"] = evaluate.recall_by_group(labels_array, scores_array, predictor.threshold, subtypes)
    result["model_version"] = predictor.version
    result["skipped_unreadable"] = skipped
    return result
