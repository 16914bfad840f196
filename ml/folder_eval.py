"""Evaluate a served model on a labelled folder, through exactly the path that serves clinicians."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ml import evaluate, explain, stress
from ml.data import find_samples, read_mask
from ml.files import read_file
from ml.imaging import UnreadableImage
from ml.predictor import Predictor

BATCH = 64
MASK_SUFFIXES = (".png",)


def evaluate_folder(predictor: Predictor, root: str | Path, only: set[str] | None = None, progress: bool = False,
                    masks: str | Path | None = None, stress_families: bool = False) -> dict:
    """Metrics of `predictor` on the images under root (optionally only the relative paths in `only`).

    With `masks`, the pointing game and the share of evidence on the lesion for each tumor image whose
    mask (a PNG of the same file stem) is there. With `stress_families`, sensitivity and specificity
    under each family of the stress suite (ml.stress).
    """
    root = Path(root)
    samples = find_samples(root)
    if only is not None:
        samples = [s for s in samples if str(s.path.relative_to(root)) in only]
    if not samples:
        raise ValueError(f"No labelled images to evaluate under {root}")
    mask_index = _mask_index(Path(masks)) if masks else None
    labels, scores, subtypes, skipped, unusable = [], [], [], 0, 0
    hits, masses = [], []
    families = ("clean", *stress.FAMILIES) if stress_families else ()
    stressed = {family: [] for family in families}
    batches = range(0, len(samples), BATCH)
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc="Evaluating", unit="batch")
    for start in batches:
        chunk, images, modalities = [], [], []
        for sample in samples[start:start + BATCH]:
            try:
                image = read_file(sample.path)
            except UnreadableImage:
                skipped += 1
                continue
            images += image.slices
            chunk += [sample] * len(image.slices)
            modalities += [image.modality] * len(image.slices)
        for sample, assessment in zip(chunk, predictor.assess(images, with_features=False, modalities=modalities)):
            labels.append(sample.label)
            scores.append(assessment.probability)
            subtypes.append(sample.subtype)
            unusable += not assessment.usable
            mask_path = mask_index.get(sample.path.stem) if mask_index is not None and sample.label == 1 else None
            if mask_path is not None:
                mask = read_mask(mask_path)
                hits.append(explain.pointing_hit(assessment.heatmap, mask))
                masses.append(explain.mass_in_mask(assessment.heatmap, mask))
        for family in families[1:]:
            perturbed = [stress.perturb(gray, family, seed=k) for k, gray in enumerate(images)]
            stressed[family] += [a.probability for a in predictor.assess(perturbed, with_features=False)]
    labels_array, scores_array = np.array(labels), np.array(scores)
    result = evaluate.metrics(labels_array, scores_array, predictor.threshold)
    result["per_class_recall"] = evaluate.recall_by_group(labels_array, scores_array, predictor.threshold, subtypes)
    result["model_version"] = predictor.version
    result["skipped_unreadable"] = skipped
    result["unusable"] = unusable
    if mask_index is not None:
        result.update(pointing_game=float(np.mean(hits)) if hits else None, pointing_game_n=len(hits),
                      mass_in_mask=float(np.nanmean(masses)) if masses else None,
                      mass_in_mask_n=int(np.isfinite(masses).sum()) if masses else 0)
    if stress_families:
        stressed["clean"] = scores
        result["stress"] = {family: evaluate.rates(labels_array, np.array(values), predictor.threshold)
                            for family, values in stressed.items()}
    return result


def _mask_index(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"No such mask folder: {folder}")
    return {path.stem: path for path in sorted(folder.rglob("*")) if path.suffix.lower() in MASK_SUFFIXES}
