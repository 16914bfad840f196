"""From a data folder to a registered model version with its card.

    load -> group near-duplicates -> grouped split -> train (and, optionally, the ablation without
    augmentation) -> threshold on validation -> test metrics -> texture-feature model -> ONNX
    export checked against Keras -> register with the card and checksums.
"""

from __future__ import annotations

import dataclasses
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ml import evaluate
from ml.data import Dataset, load_dataset
from ml.dedup import Split
from ml.export import export_onnx
from ml.feature_model import feature_probability, fit_feature_model
from ml.features import FEATURE_NAMES, feature_matrix
from ml.preprocess import IMAGE_SIZE
from ml.registry import KERAS_FILE, ONNX_FILE, ModelRegistry, ModelVersion
from ml.train import Experiment, TrainConfig, make_split, novel_test_index, run_experiment

TARGETS = {"auc": 0.99, "sensitivity": 0.97, "specificity": 0.95}
DATASET_CITATION = ("Masoud Nickparvar, Brain Tumor MRI Dataset (Kaggle, 2021), combining the figshare, SARTAJ and "
                    "Br35H collections; used here as a 224x224 JPEG copy with a few hundred images removed.")


def train_and_register(
    data_dir: str | Path, registry_root: str | Path, config: TrainConfig, *, ablation: bool = False,
    activate: bool = True, cache_dir: str | Path | None = None, verbose: int = 1, name_prefix: str = "cnn",
    citation: str = DATASET_CITATION,
) -> ModelVersion:
    started = time.perf_counter()
    data_dir = Path(data_dir)
    dataset = load_dataset(data_dir, IMAGE_SIZE, cache_dir=cache_dir, progress=verbose > 0)
    groups, split, duplicates = make_split(dataset, config)
    _require_both_labels(dataset, split)
    main = run_experiment(dataset, split, config, verbose=verbose)
    other = run_experiment(dataset, split, dataclasses.replace(config, augment=not config.augment),
                           verbose=verbose) if ablation else None
    feature_params, feature_ranges, feature_test = _feature_model(dataset, split, config.seed)

    registry = ModelRegistry(registry_root)
    with tempfile.TemporaryDirectory() as tmp:
        keras_path, onnx_path = Path(tmp) / KERAS_FILE, Path(tmp) / ONNX_FILE
        main.serving.save(keras_path)
        difference = export_onnx(main.serving, onnx_path, dataset.images[split.test[:64]])
        card = {
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "task": "Binary classification of a brain MRI slice: tumor (glioma, meningioma, pituitary) vs no tumor.",
            "intended_use": "Decision support for radiology triage. Not a diagnosis; every result must be read "
                            "by a qualified clinician.",
            "environment": _environment(),
            "architecture": _architecture(main, config),
            "data": _data_summary(dataset, data_dir, duplicates, citation),
            "split": _split_summary(dataset, split, groups, data_dir, config),
            "hyperparameters": {**config.to_dict(), "image_size": int(dataset.images.shape[1]),
                                "optimizer": "AdamW with cosine decay", "loss": "binary cross-entropy",
                                "class_weight": "balanced", "early_stopping": "validation AUC"},
            "history": main.fits[0].history,
            "best_epoch": main.fits[0].best_epoch,
            "ensemble": _networks(main, config),
            "threshold": {"value": main.threshold, "rationale": main.threshold_rationale,
                          "target_sensitivity": config.target_sensitivity},
            "metrics": _metrics(dataset, split, main),
            "targets": {**TARGETS, "met_on_test": {k: bool(main.test[k] >= v) for k, v in TARGETS.items()}},
            "ablation": _ablation(config, main, other) if other else None,
            "feature_model": {**feature_params, "test": feature_test},
            "feature_ranges": feature_ranges,
            "training_seconds": round(main.seconds + (other.seconds if other else 0), 1),
            "pipeline_seconds": round(time.perf_counter() - started, 1),
            "onnx_max_probability_difference": difference,
            "limitations": _limitations(main),
        }
        return registry.register(registry.new_version_name(name_prefix),
                                 {KERAS_FILE: keras_path, ONNX_FILE: onnx_path}, card, activate=activate)


def _require_both_labels(dataset: Dataset, split: Split) -> None:
    for name, index in (("train", split.train), ("validation", split.validation), ("test", split.test)):
        if len(np.unique(dataset.labels[index])) < 2:
            raise ValueError(f"The {name} split lacks one of the two labels; the data needs more images of each "
                             "label (tumor and no tumor) in distinct groups.")


def _environment() -> dict:
    import keras
    import onnxruntime
    import tensorflow as tf

    return {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "onnxruntime": onnxruntime.__version__, "machine": platform.machine()}


def _architecture(main: Experiment, config: TrainConfig) -> dict:
    return {"kind": "CNN: per-image standardisation, conv-BN-ReLU blocks with max-pooling, global average "
                    "pooling, dropout, one dense logit",
            "filters": list(config.filters), "networks": len(main.fits),
            "parameters": int(main.serving.count_params()), "input": list(main.serving.input_shape[1:]),
            "serving": "each network assesses the slice and its mirror image; the class activation maps of "
                       "all are averaged and the probability is the sigmoid of the averaged map's mean",
            "heatmap": "class activation map (equals Grad-CAM for this architecture)"}


def _networks(experiment: Experiment, config: TrainConfig) -> list[dict]:
    """Seed, kept epoch, epochs run and time of each network of the ensemble (history: first one)."""
    return [{"seed": config.seed + k, "best_epoch": result.best_epoch, "epochs_run": len(result.history),
             "seconds": round(result.seconds, 1), "best_validation_auc": result.history[result.best_epoch - 1]["val_auc"]}
            for k, result in enumerate(experiment.fits)]


def _data_summary(dataset: Dataset, data_dir: Path, duplicates: dict, citation: str) -> dict:
    subtypes, counts = np.unique(dataset.subtypes, return_counts=True)
    sizes, size_counts = np.unique([f"{w}x{h}" for w, h in dataset.source_sizes], return_counts=True)
    return {
        "folder": data_dir.name, "citation": citation, "images": len(dataset),
        "skipped_unreadable": len(dataset.skipped),
        "by_label": {"tumor": int(dataset.labels.sum()), "no_tumor": int(len(dataset) - dataset.labels.sum())},
        "by_subfolder": dict(zip(subtypes.tolist(), counts.tolist())),
        "source_sizes": dict(zip(sizes.tolist()[:20], size_counts.tolist()[:20])),
        "near_duplicates": duplicates,
    }


def _split_summary(dataset: Dataset, split: Split, groups: np.ndarray, data_dir: Path, config: TrainConfig) -> dict:
    return {
        "method": "Near-duplicate groups (cosine similarity >= 0.99 of 32x32 thumbnails, connected components) "
                  "assigned whole to train, validation or test, stratified by label; the folders' own "
                  "Training/Testing division is ignored because it leaks near-duplicates.",
        "seed": config.seed, "fractions": list(config.split_fractions),
        "summary": split.summary(dataset.labels, groups),
        "test_files": [str(Path(dataset.paths[i]).relative_to(data_dir)) for i in split.test],
    }


def _metrics(dataset: Dataset, split: Split, main: Experiment) -> dict:
    novel = novel_test_index(dataset, split)
    position = np.searchsorted(split.test, novel)
    test_subtypes = [dataset.subtypes[i] for i in split.test]
    return {
        "validation": main.validation,
        "test": main.test,
        "test_novel": {**evaluate.metrics(dataset.labels[novel], main.test_scores[position], main.threshold),
                       "definition": "test images whose most similar training image has a thumbnail cosine "
                                     "similarity below 0.95"},
        "per_class_recall": evaluate.recall_by_group(dataset.labels[split.test], main.test_scores, main.threshold,
                                                     test_subtypes),
        "test_predictions": {"labels": dataset.labels[split.test].tolist(),
                             "scores": [round(float(s), 6) for s in main.test_scores], "subtypes": test_subtypes},
    }


def _ablation(config: TrainConfig, main: Experiment, other: Experiment) -> dict:
    with_aug, without = (main, other) if config.augment else (other, main)

    def brief(experiment: Experiment) -> dict:
        keep = ("auc", "sensitivity", "specificity", "accuracy", "ci95")
        return {"test": {k: experiment.test[k] for k in keep}, "validation_auc": experiment.validation["auc"],
                "best_epoch": experiment.fits[0].best_epoch, "threshold": experiment.threshold,
                "history": experiment.fits[0].history}

    gain = with_aug.test["auc"] - without.test["auc"]
    low, high = with_aug.test["ci95"]["auc"]
    verdict = ("supported" if gain > 0 and without.test["auc"] < low else
               "not supported" if gain <= 0 else "inconclusive (within the confidence interval)")
    return {"hypothesis": "H2: data augmentation improves generalisation to unseen (grouped) test images",
            "with_augmentation": brief(with_aug), "without_augmentation": brief(without),
            "test_auc_gain": gain, "verdict": verdict}


def _feature_model(dataset: Dataset, split: Split, seed: int) -> tuple[dict, dict, dict]:
    features = feature_matrix(dataset.images)
    params = fit_feature_model(features[split.train], dataset.labels[split.train], seed)
    scores = feature_probability(params, features[split.test])
    ranges = {}
    for column, name in enumerate(FEATURE_NAMES):
        ranges[name] = {
            label_name: [float(v) for v in np.percentile(features[split.train][dataset.labels[split.train] == label,
                                                                               column], [25, 75])]
            for label, label_name in ((0, "no_tumor"), (1, "tumor"))
        }
    return params, ranges, {"auc": evaluate.auc(dataset.labels[split.test], scores), "n": int(len(split.test))}


def _limitations(main: Experiment) -> list[str]:
    notes = [
        "Trained and tested on one public collection of 2-D slices; tumor and no-tumor images there come mostly "
        "from different sources and sequences. Intensity augmentation and per-image standardisation are meant "
        "to stop the network from recognising the sequence, but performance on other hospitals' scanners and "
        "sequences is not measured here and should be checked locally before use.",
        "The test figures come from a grouped split (no near-duplicate of a test image was seen in training); "
        "the 'test_novel' figures, on test images with no close relative in training at all, are the most "
        "conservative estimate.",
        "Slices only: no volume, no patient-level decision; tumor types are not distinguished.",
    ]
    missed = [k for k, v in TARGETS.items() if main.test[k] < v]
    if missed:
        notes.append("Below the project's targets on the test split for: " + ", ".join(missed) + ".")
    return notes
