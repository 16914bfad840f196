"""Where a version's test errors fall on whole volumes, from the test scores its card recorded (no inference):
no-tumor specificity by slices to the volume's lesion, tumor sensitivity by the lesion's size.

    python -m ml.error_positions models/VERSION --data ../shared/datasets/brain-mri --data ../shared/datasets/tcga-lgg

Cards written since this breakdown carry it (metrics.test_by_source.<collection>.errors_by_position); this
computes the same figures for a version trained before, from the collections it was trained on. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ml.data import Dataset, collection_name, load_dataset
from ml.figures import errors_by_position
from ml.preprocess import recorded_reference
from ml.registry import ModelRegistry, RegistryError


def recorded_errors_by_position(card: Mapping, dataset: Dataset, roots: list[Path]) -> dict:
    """The breakdown per whole-volume collection of the card's test split, at the card's threshold."""
    position = {collection_name(dataset, i, roots): i for i in range(len(dataset))}
    test_files = card["split"]["test_files"]
    missing = [name for name in test_files if name not in position]
    if missing:
        raise ValueError(f"{len(missing)} of the card's {len(test_files)} test files are not in these collections "
                         f"(first: {missing[0]}); point --data at the collections the version was trained on")
    index = np.array([position[name] for name in test_files])
    scores = np.asarray(card["metrics"]["test_predictions"]["scores"], dtype=np.float64)
    threshold = float(card["threshold"]["value"])
    sources = dataset.column("source")[index]
    return {str(source): errors_by_position(dataset, index[sources == source], scores[sources == source], threshold)
            for source in sorted(set(sources))
            if all(dataset.samples[i].slice_index is not None for i in index[sources == source])}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("version", type=Path, help="a version folder (models/cnn-...)")
    parser.add_argument("--data", action="append", required=True, type=Path, help="a collection (repeat)")
    parser.add_argument("--cache", type=Path, default=Path("var/cache"), help="preprocessed-dataset cache folder")
    args = parser.parse_args(argv)
    try:
        version = ModelRegistry(args.version.parent).get(args.version.name)
        card = version.card
        dataset = load_dataset(args.data, int(card["hyperparameters"]["image_size"]), cache_dir=args.cache,
                               reference=recorded_reference(card["hyperparameters"]))
        found = recorded_errors_by_position(card, dataset, args.data)
    except (RegistryError, ValueError, FileNotFoundError) as error:
        parser.exit(2, f"error: {error}\n")
    print(json.dumps({"version": version.name, "threshold": card["threshold"]["value"],
                      "errors_by_position": found}, indent=2))


if __name__ == "__main__":
    main()
