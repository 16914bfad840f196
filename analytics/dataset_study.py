"""The numbers and arrays of the dataset study, computed from a loaded `ml.data.Dataset`.

Plain Python and numpy (no Django): everything here works on the preprocessed images the model
itself sees, so the averages show what the network learns from, not the raw files.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ml import evaluate
from ml.data import LABEL_NAMES, SPLIT_FOLDERS, Dataset
from ml.dedup import duplicate_report, near_duplicate_groups
from ml.features import FEATURE_DESCRIPTIONS, FEATURE_NAMES

CHUNK = 512  # images summed at a time, so a 6,000-image stack never needs a float64 copy
POOL_SIZE = 48  # montage images kept per label; the page shows a subset and reshuffles within it
DUPLICATE_EXAMPLES = 4
IMAGES_PER_EXAMPLE = 4
PERCENTILES = (5, 25, 50, 75, 95)
DISPLAY = {"no_tumor": "No tumor", "tumor": "Tumor"}


@dataclass(frozen=True)
class Group:
    """Images that share a label, or a tumor subtype (subfolder) when a label has several."""

    key: str  # used in file names: label-tumor, subtype-glioma
    name: str  # shown: Tumor, glioma
    label: str  # no_tumor or tumor
    index: np.ndarray


def groups_of(dataset: Dataset) -> list[Group]:
    groups = []
    subtypes = np.asarray(dataset.subtypes)
    for value, label in enumerate(LABEL_NAMES):
        index = np.flatnonzero(dataset.labels == value)
        groups.append(Group(f"label-{label}", DISPLAY[label], label, index))
        names = sorted(set(subtypes[index]))
        if len(names) > 1:
            groups.extend(Group(f"subtype-{name}", name, label, index[subtypes[index] == name]) for name in names)
    return groups


def mean_and_std(images: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-wise mean and (population) standard deviation of images[index], (n, h, w, 1) -> (h, w)."""
    if len(index) == 0:
        raise ValueError("No images to average")
    total = np.zeros(images.shape[1:3], np.float64)
    squares = np.zeros_like(total)
    for start in range(0, len(index), CHUNK):
        chunk = images[index[start:start + CHUNK], ..., 0].astype(np.float64)
        total += chunk.sum(axis=0)
        squares += np.square(chunk).sum(axis=0)
    mean = total / len(index)
    return mean, np.sqrt(np.maximum(squares / len(index) - np.square(mean), 0.0))


def image_modes(paths) -> list[str]:
    """The PIL mode of each file as stored (L, RGB, RGBA, P, I;16...): only the header is read."""
    modes = []
    for path in paths:
        try:
            with Image.open(path) as image:
                modes.append(image.mode)
        except OSError:
            modes.append("unreadable")
    return modes


def inventory(dataset: Dataset, modes: list[str]) -> dict:
    """Counts by label and subfolder, and the sizes and modes as found, per subfolder."""
    labels = np.asarray(dataset.labels)
    by_subtype = Counter(zip(dataset.subtypes, (LABEL_NAMES[v] for v in labels)))
    sizes, mode_counts = {}, {}
    for subtype, (width, height), mode in zip(dataset.subtypes, dataset.source_sizes, modes):
        sizes.setdefault(subtype, Counter())[f"{width}×{height}"] += 1
        mode_counts.setdefault(subtype, Counter())[mode] += 1
    subtypes = sorted(by_subtype, key=lambda pair: (pair[1], pair[0]))
    return {
        "images": int(len(labels)),
        "by_label": {name: int((labels == value).sum()) for value, name in enumerate(LABEL_NAMES)},
        "by_subtype": [{"name": name, "label": label, "images": by_subtype[(name, label)]}
                       for name, label in subtypes],
        "sizes": {name: dict(sizes[name].most_common(8)) for name, _ in subtypes},
        "distinct_sizes": len({size for counter in sizes.values() for size in counter}),
        "modes": {name: dict(mode_counts[name].most_common()) for name, _ in subtypes},
        "all_modes": sorted({mode for counter in mode_counts.values() for mode in counter}),
        "skipped": len(dataset.skipped),
        "skipped_examples": [(Path(path).name, reason) for path, reason in dataset.skipped[:5]],
    }


def duplicates(dataset: Dataset, root: Path) -> tuple[dict, list[np.ndarray]]:
    """The near-duplicate report, plus how groups cross labels and the folders' own Training/Testing
    division, and the members of the largest groups as examples."""
    groups = near_duplicate_groups(dataset.thumbnails)
    report = duplicate_report(groups)
    sizes = np.bincount(groups)
    repeated = np.flatnonzero(sizes > 1)
    labels = np.asarray(dataset.labels)
    report["mixed_label_groups"] = int(sum(len(np.unique(labels[groups == g])) > 1 for g in repeated))
    folders = np.array([_split_folder(path, root) for path in dataset.paths])
    if len(set(folders) - {""}) == 2:
        report["groups_across_training_and_testing"] = int(
            sum(len(np.unique(folders[groups == g])) > 1 for g in repeated))
    largest = repeated[np.argsort(-sizes[repeated], kind="stable")][:DUPLICATE_EXAMPLES]
    examples = [np.flatnonzero(groups == g)[:IMAGES_PER_EXAMPLE] for g in largest]
    return report, examples


def _split_folder(path: str, root: Path) -> str:
    first = Path(path).relative_to(root).parts[0].lower()
    return first if first in SPLIT_FOLDERS else ""


def feature_summary(features: np.ndarray, labels: np.ndarray) -> list[dict]:
    """Per texture feature: percentiles per label, and how well the feature alone separates the labels.

    `single_feature_auc` is the AUC of the raw feature as a tumor score; 0.5 means no separation,
    and below 0.5 the feature is lower in tumor images.
    """
    rows = []
    for column, name in enumerate(FEATURE_NAMES):
        values = features[:, column]
        auc = evaluate.auc(labels, values)
        rows.append({
            "name": name,
            "description": FEATURE_DESCRIPTIONS[name],
            "percentiles": {label: [float(v) for v in np.percentile(values[labels == value], PERCENTILES)]
                            for value, label in enumerate(LABEL_NAMES)},
            "single_feature_auc": auc,
            "separation": max(auc, 1 - auc),
            "higher_in": "tumor" if auc >= 0.5 else "no_tumor",
        })
    return rows


def montage_pool(labels: np.ndarray, seed: int, size: int = POOL_SIZE) -> dict[str, np.ndarray]:
    """Randomly chosen image indices per label, the pool the page's montage draws from."""
    rng = np.random.default_rng(seed)
    return {label: np.sort(rng.choice(np.flatnonzero(labels == value), min(size, int((labels == value).sum())),
                                      replace=False))
            for value, label in enumerate(LABEL_NAMES)}
