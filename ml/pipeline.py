"""From data folders to a registered model version with its card, and the external validation folds.

    load every collection -> group (patients, near-duplicates with mirror images) -> grouped split
    -> train, calibrate and choose the threshold on validation (ml.train) -> test figures per
    collection, sequence and institution, localization, stress suite, calibration -> texture
    feature model -> ONNX export checked against Keras -> register with the card and checksums

External validation (leave one institution out): the same recipe trained without one
institution's patients, validated without them, and tested on all of them. Each fold writes its
figures to a JSON file as soon as it finishes; the release card includes every fold found for its
recipe, so folds can run in several sittings, before the release.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ml import evaluate, figures
from ml.data import Dataset, collection_name, load_dataset
from ml.dedup import SMALL_STRATUM, Split
from ml.export import export_onnx
from ml.feature_model import feature_probability, fit_feature_model
from ml.features import FEATURE_NAMES, feature_matrix
from ml.gate import MIN_ASSESSABLE_SIDE, MIN_HEAD_SHARE, NOISE_ROUGHNESS, UNIFORM_STD, gate_input
from ml.gate_training import GateFit, fit_gate
from ml.imaging import COLOUR_SPREAD
from ml.preprocess import IMAGE_SIZE
from ml.quantize import CALIBRATION_IMAGES, INT8_FILE, parity, quantize
from ml.registry import GATE_FILE, KERAS_FILE, ONNX_FILE, ModelRegistry, ModelVersion, amend, json_default
from ml.train import Fit, TrainConfig, fit, make_split, serve

TARGETS = {"auc": 0.99, "sensitivity": 0.97, "specificity": 0.95}  # brain-mri, clean test split
EXTERNAL_TARGETS = {"auc": 0.95, "sensitivity": 0.90, "specificity": 0.85, "pointing_game": 0.80}  # per fold, FLAIR
EXTERNAL_SEQUENCE = "flair"
CLEAN_COLLECTION = "brain-mri"  # the clean targets are measured on its test split
STRESS_DROP_LIMIT = 0.03  # a larger sensitivity drop under a perturbation is a limitation of the card
CITATIONS = {
    "brain-mri": "Masoud Nickparvar, Brain Tumor MRI Dataset (Kaggle, 2021), combining the figshare, SARTAJ and "
                 "Br35H collections; used here as a 224x224 JPEG copy with a few hundred images removed.",
    "tcga-lgg": "TCGA-LGG (The Cancer Genome Atlas Low Grade Glioma collection, The Cancer Imaging Archive), as "
                "prepared with FLAIR-abnormality masks by M. Buda, A. Saha and M. A. Mazurowski, 'Association of "
                "genomic subtypes of lower-grade gliomas with shape features automatically extracted by a deep "
                "learning algorithm', Computers in Biology and Medicine 109 (2019); 76 patients from four "
                "institutions, axial 256x256 slices in up to three sequences.",
}


@dataclasses.dataclass
class Experiment:
    dataset: Dataset
    groups: np.ndarray
    split: Split
    duplicates: dict
    roots: list[Path]


def prepare_experiment(data_dirs: list[str | Path], config: TrainConfig, cache_dir=None,
                       verbose: int = 1) -> Experiment:
    roots = [Path(d) for d in data_dirs]
    dataset = load_dataset(roots, IMAGE_SIZE, cache_dir=cache_dir, progress=verbose > 0,
                           reference=config.intensity_reference)
    groups, split, duplicates = make_split(dataset, config)
    _require_both_labels(dataset, split)
    return Experiment(dataset, groups, split, duplicates, roots)


def recipe_fingerprint(config: TrainConfig, experiment: Experiment) -> str:
    """Identifies a recipe on given data: the configuration (but the epochs a fold may shorten) and the files,
    named inside their collections (brain-mri/Training/...), so `--data ../shared/x` and `--data /abs/x` agree."""
    digest = hashlib.sha256(json.dumps(config.recipe_settings(), sort_keys=True, default=list).encode())
    for index in range(len(experiment.dataset)):
        digest.update(collection_name(experiment.dataset, index, experiment.roots).encode())
    return digest.hexdigest()[:16]


def train_and_register(
    data_dirs: list[str | Path], registry_root: str | Path, config: TrainConfig, *, activate: bool = True,
    cache_dir: str | Path | None = None, verbose: int = 1, name_prefix: str = "cnn",
    external_dir: str | Path | None = None,
) -> ModelVersion:
    started = time.perf_counter()
    experiment = prepare_experiment(data_dirs, config, cache_dir, verbose)
    dataset, split = experiment.dataset, experiment.split
    main = fit(dataset, split, config, verbose=verbose)
    run = lambda images: serve(main.serving, images)  # noqa: E731
    test_scores, _ = run(dataset.images[split.test])
    gate = fit_gate(dataset, split.train, split.validation, split.test, config.seed, config.gate_epochs,
                    config.gate_negatives_per_kind, config.workers, verbose)
    feature_params, feature_ranges, feature_test = _feature_model(dataset, split, config.seed)
    fingerprint = recipe_fingerprint(config, experiment)

    registry = ModelRegistry(registry_root)
    with tempfile.TemporaryDirectory() as tmp:
        keras_path, onnx_path, gate_path = Path(tmp) / KERAS_FILE, Path(tmp) / ONNX_FILE, Path(tmp) / GATE_FILE
        main.serving.save(keras_path)
        difference = export_onnx(main.serving, onnx_path, dataset.images[split.test[:64]])
        gate_difference = export_onnx(gate.network, gate_path, _gate_check_inputs(dataset, split))
        extra_files, serving_card = serving_steps(dataset, split, onnx_path, Path(tmp), main.threshold,
                                                  main.validation_scores)
        test_metrics = figures.breakdown(dataset, split.test, test_scores, main.threshold)
        sources = set(dataset.column("source"))
        card = {
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "task": "Binary classification of a brain MRI slice: tumor (glioma, meningioma, pituitary) vs no tumor, "
                    "with a map of where the evidence lies.",
            "intended_use": "Decision support for radiology triage. Not a diagnosis; every result must be read "
                            "by a qualified clinician.",
            "environment": _environment(),
            "architecture": _architecture(main, config),
            "data": _data_summary(experiment),
            "split": _split_summary(experiment, config),
            "hyperparameters": {**config.to_dict(), "image_size": int(dataset.images.shape[1]),
                                "optimizer": "AdamW with cosine decay",
                                "loss": "binary cross-entropy of the pooled slice logit + cell_weight x cell-wise "
                                        "binary cross-entropy of the map against the tumor mask (tumor cells "
                                        "weighted 5x)",
                                "class_weight": "balanced",
                                "early_stopping": "validation AUC, averaged over the collections",
                                "recipe_fingerprint": fingerprint},
            "history": main.history,
            "best_epoch": main.best_epoch,
            "threshold": {"value": main.threshold, "rationale": main.threshold_rationale,
                          "target_sensitivity": {**{s: config.target_sensitivity for s in sources},
                                                 **{s: t for s, t in evaluate.COLLECTION_TARGETS.items()
                                                    if s in sources}},
                          "chosen_on": "validation"},
            "calibration": figures.calibration_figures(dataset.labels[split.validation], main.validation_logits,
                                                       main.temperature, dataset.labels[split.test], test_scores),
            "metrics": _metrics(dataset, split, main, test_scores, test_metrics),
            "targets": _targets(test_metrics),
            "localization": {"test": figures.localization(dataset, split.test, run, main.threshold)},
            "stress": figures.stress_suite(dataset, split.test, run, main.threshold),
            "quality_gate": _gate_card(gate, gate_difference, dataset, split),
            "external_validation": (collect_external(external_dir, fingerprint, external_institutions(dataset))
                                    if external_dir and external_institutions(dataset) else None),
            "feature_model": {**feature_params, "test": feature_test},
            "feature_ranges": feature_ranges,
            "training_seconds": round(main.seconds, 1),
            "pipeline_seconds": round(time.perf_counter() - started, 1),
            "onnx_max_probability_difference": difference,
            **serving_card,
        }
        card["limitations"] = _limitations(card)
        return registry.register(registry.new_version_name(name_prefix),
                                 {KERAS_FILE: keras_path, ONNX_FILE: onnx_path, GATE_FILE: gate_path, **extra_files},
                                 card, activate=activate)


def serving_steps(dataset: Dataset, split: Split, onnx_path: Path, folder: Path, threshold: float,
                  validation_scores: np.ndarray) -> tuple[dict[str, Path], dict]:
    """What serving needs beyond the fp32 graph, from validation (choices) and test (parity):

    - the series rule: how many consecutive slices a series' result averages over (figures.series_window);
    - the int8 graph (ml.quantize), calibrated on validation images, and whether it keeps parity with fp32 on
      the clean test split: the card's `serving` names the file the predictor loads, with the reason.
    The network runs once per slice: there is no ensemble or mirror average to distil into one pass.
    """
    int8_path = folder / INT8_FILE
    quantize(onnx_path, int8_path, dataset.images[split.validation[:CALIBRATION_IMAGES]])
    check = parity(onnx_path, int8_path, dataset.images[split.test], dataset.labels[split.test], threshold)
    served = INT8_FILE if check["passed"] else ONNX_FILE
    serving = {
        "file": served, "runtime": "onnxruntime", "precision": "int8" if check["passed"] else "fp32",
        "reason": ("the int8 graph keeps parity with fp32 on the clean test split" if check["passed"] else
                   "the int8 graph misses parity with fp32 (" + "; ".join(check["failures"]) + "): fp32 is served"),
        "passes_per_slice": 1,
        "one_pass": "the release recipe is one network run once per slice (no ensemble, no mirror averaging), "
                    "so there is nothing to distil",
    }
    return {INT8_FILE: int8_path}, {
        "series": figures.series_window(dataset, split.validation, validation_scores),
        "quantization": {"method": "ONNX Runtime static quantization: QDQ, per-channel int8 weights, int8 "
                                   "activations calibrated (min-max) on validation images; the pooling and "
                                   "sigmoids after the last convolution stay in float",
                         "calibration_images": int(min(CALIBRATION_IMAGES, len(split.validation))),
                         "parity": check},
        "serving": serving,
    }


def _gate_check_inputs(dataset: Dataset, split: Split) -> np.ndarray:
    from ml.imaging import read_image

    return np.stack([gate_input(dataset.prepare(read_image(dataset.paths[i]))) for i in split.test[:32]])


def _gate_card(gate: GateFit, difference: float, dataset: Dataset, split: Split) -> dict:
    def scores(prepared):
        return gate.network.predict(np.stack([gate_input(p) for p in prepared]), verbose=0).reshape(-1)

    return {
        "file": GATE_FILE, "threshold": gate.threshold, "onnx_max_probability_difference": difference,
        "rules": {"modality": "a DICOM file's Modality must be MR",
                  "colour": f"a JPEG or PNG must be gray (colour spread at most {COLOUR_SPREAD})",
                  "too_small": f"shorter side at least {MIN_ASSESSABLE_SIDE} pixels",
                  "empty": f"standard deviation at least {UNIFORM_STD}, and a head found",
                  "noise": f"neighbour roughness at most {NOISE_ROUGHNESS}",
                  "too_little_head": f"head at least {MIN_HEAD_SHARE:.0%} of the image"},
        **gate.report,
        "test_whole_gate": figures.gate_figures(dataset, split.test, scores, gate.threshold),
    }


def external_fold(data_dirs: list[str | Path], institution: str, results_dir: str | Path, config: TrainConfig, *,
                  cache_dir: str | Path | None = None, verbose: int = 1) -> Path:
    """Train the recipe without `institution`'s patients and test on all of them; write the figures."""
    started = time.perf_counter()
    experiment = prepare_experiment(data_dirs, config, cache_dir, verbose)
    dataset = experiment.dataset
    held_out = dataset.column("institution") == institution
    if not held_out.any():
        raise ValueError(f"No slices of institution {institution!r}; the institutions are "
                         f"{sorted(set(dataset.column('institution')) - {''})}.")
    split = experiment.split.without(held_out)
    test = np.flatnonzero(held_out)
    result = fit(dataset, dataclasses.replace(split, test=test), config, verbose=verbose)
    run = lambda images: serve(result.serving, images)  # noqa: E731
    scores, _ = run(dataset.images[test])
    sequences = dataset.column("sequence")[test]
    by_sequence = {}
    for sequence in sorted(set(sequences)):
        rows = test[sequences == sequence]
        by_sequence[str(sequence)] = {
            **figures._brief(figures.slice_metrics(dataset, rows, scores[sequences == sequence], result.threshold)),
            "localization": figures.localization(dataset, rows, run, result.threshold),
        }
    report = {
        "institution": institution, "recipe_fingerprint": recipe_fingerprint(config, experiment),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "epochs": config.epochs, "best_epoch": result.best_epoch, "training_seconds": round(result.seconds, 1),
        "seconds": round(time.perf_counter() - started, 1),
        "train": {"images": int(len(split.train)), "patients": _patients(dataset, split.train)},
        "validation": {"images": int(len(split.validation)), "patients": _patients(dataset, split.validation)},
        "test": {"images": int(len(test)), "patients": _patients(dataset, test)},
        "threshold": result.threshold, "temperature": result.temperature,
        "all_sequences": figures._brief(figures.slice_metrics(dataset, test, scores, result.threshold)),
        "by_sequence": by_sequence,
        "targets": EXTERNAL_TARGETS,
    }
    path = Path(results_dir) / f"{report['recipe_fingerprint']}-{institution}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=json_default) + "\n")
    return path


def external_institutions(dataset: Dataset) -> set[str]:
    """The institutions that can be held out: those with at least SMALL_STRATUM patients (EZ, with one, cannot)."""
    patients: dict[str, set] = {}
    for sample in dataset.samples:
        if sample.institution:
            patients.setdefault(sample.institution, set()).add(sample.subject)
    return {name for name, found in patients.items() if len(found) >= SMALL_STRATUM}


def collect_external(results_dir: str | Path, fingerprint: str, expected: set[str]) -> dict:
    """Every fold of this recipe found in `results_dir`, with the targets each meets on FLAIR."""
    folds = {}
    for path in sorted(Path(results_dir).glob(f"{fingerprint}-*.json")):
        report = json.loads(path.read_text())
        flair = report["by_sequence"].get(EXTERNAL_SEQUENCE, {})
        measured = {**flair, "pointing_game": flair.get("localization", {}).get("pointing_game")}
        met = {key: measured.get(key) is not None and measured[key] >= target
               for key, target in EXTERNAL_TARGETS.items()}
        folds[report["institution"]] = {**report, "met_on_flair": met}
    return {"method": "leave one institution out on tcga-lgg: the release recipe trained without the institution's "
                      "patients (brain-mri and the other institutions' train split), validated without them, and "
                      "tested on every slice of theirs. EZ (one patient) stays in training.",
            "folds": folds, "missing": sorted(expected - set(folds))}


def _patients(dataset: Dataset, index: np.ndarray) -> int:
    return len(set(dataset.column("subject")[index]) - {""})


def _require_both_labels(dataset: Dataset, split: Split) -> None:
    for name, index in split.parts().items():
        if len(np.unique(dataset.labels[index])) < 2:
            raise ValueError(f"The {name} split lacks one of the two labels; the data needs more images of each "
                             "label (tumor and no tumor) in distinct groups.")


def _environment() -> dict:
    import keras
    import onnxruntime
    import tensorflow as tf

    return {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "onnxruntime": onnxruntime.__version__, "machine": platform.machine()}


def _architecture(main: Fit, config: TrainConfig) -> dict:
    return {"kind": "encoder-decoder CNN (conv-BN-ReLU blocks, max-pooling, feature-pyramid decoder) whose output "
                    "is a 32x32 map of cell logits; the slice logit is the map's smooth maximum (log-mean-exp)",
            "widths": list(config.widths), "decoder_width": config.decoder_width, "sharpness": config.sharpness,
            "networks": 1, "passes_per_slice": 1,
            "parameters": int(main.network.count_params()), "input": list(main.serving.input_shape[1:]),
            "serving": "one pass per slice: the calibrated probability and the evidence map come out of the same graph",
            "heatmap": "the evidence map itself: per 4x4 patch of the input, the calibrated probability that it "
                       "holds tumor, trained against the tcga-lgg masks (no rescaling)"}


def _data_summary(experiment: Experiment) -> dict:
    dataset = experiment.dataset
    sources = dataset.column("source")
    collections = {}
    for root in experiment.roots:
        rows = sources == root.name
        entry = {"folder": root.name, "citation": CITATIONS.get(root.name, ""), "images": int(rows.sum()),
                 "by_label": {"tumor": int(dataset.labels[rows].sum()),
                              "no_tumor": int(rows.sum() - dataset.labels[rows].sum())}}
        for attribute in ("subtype", "sequence", "institution"):
            values, counts = np.unique(np.asarray([getattr(s, attribute) for s in dataset.samples], object)[rows]
                                       .astype(str), return_counts=True)
            if not (len(values) == 1 and values[0] == ""):
                entry[f"by_{attribute}"] = dict(zip(values.tolist(), counts.tolist()))
        patients = set(dataset.column("subject")[rows]) - {""}
        if patients:
            entry["patients"] = len(patients)
        collections[root.name] = entry
    return {"collections": collections, "images": len(dataset), "skipped_unreadable": len(dataset.skipped),
            "by_label": {"tumor": int(dataset.labels.sum()), "no_tumor": int(len(dataset) - dataset.labels.sum())},
            "near_duplicates": experiment.duplicates}


def _split_summary(experiment: Experiment, config: TrainConfig) -> dict:
    dataset, split = experiment.dataset, experiment.split
    sources = dataset.column("source")
    summary = {name: {source: _part(dataset, index[sources[index] == source]) for source in sorted(set(sources))}
               for name, index in split.parts().items()}
    return {
        "method": "Groups: patients where the collection names them (tcga-lgg), and near-duplicates (cosine similarity "
                  ">= 0.95 of mean-centred 32x32 thumbnails, each image compared with the others and with their "
                  "mirror images; >= 0.98 across collections). Whole groups go to train, validation or test, "
                  "stratified by collection, institution and label; an institution with fewer than three patients "
                  "stays in training. The collections' own Training/Testing folders are ignored. Every recipe choice "
                  "(architecture, epochs, augmentation, temperature, threshold) was made on validation; the test "
                  "split is scored once, when the card is written.",
        "seed": config.seed if config.split_seed is None else config.split_seed,
        "fractions": list(config.split_fractions), "summary": summary,
        "test_files": [collection_name(dataset, i, experiment.roots) for i in split.test],
        "test_patients": sorted(set(dataset.column("subject")[split.test]) - {""}),
    }


def _part(dataset: Dataset, index: np.ndarray) -> dict:
    out = {"images": int(len(index)), "tumor": int(dataset.labels[index].sum()),
           "no_tumor": int(len(index) - dataset.labels[index].sum())}
    patients = set(dataset.column("subject")[index]) - {""}
    if patients:
        out["patients"] = len(patients)
    return out


def _metrics(dataset: Dataset, split: Split, main: Fit, test_scores: np.ndarray, test_metrics: dict) -> dict:
    validation = figures.breakdown(dataset, split.validation, main.validation_scores, main.threshold)
    test_subtypes = [dataset.subtypes[i] for i in split.test]
    return {
        "validation": validation["all"], "validation_by_source": validation["by_source"],
        "test": test_metrics["all"], "test_by_source": test_metrics["by_source"],
        "test_predictions": {"labels": dataset.labels[split.test].tolist(),
                             "scores": [round(float(s), 6) for s in test_scores], "subtypes": test_subtypes,
                             "sources": dataset.column("source")[split.test].tolist()},
    }


def _targets(test_metrics: dict) -> dict:
    brain = test_metrics["by_source"].get(CLEAN_COLLECTION, {}).get("all")
    met = {k: bool(brain[k] >= v) for k, v in TARGETS.items()} if brain else None
    return {**TARGETS, "measured_on": "brain-mri clean test split", "met_on_test": met,
            "external": EXTERNAL_TARGETS}


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


def _limitations(card: dict) -> list[str]:
    """What the figures in this card do not show, written from them."""
    collections = set(card["data"]["collections"])
    notes = ["2-D slices only: no volume, no patient-level decision; tumor types are not distinguished.",
             "Performance on other hospitals' scanners, sequences and tumor types must be checked locally before use."]
    if "tcga-lgg" in collections:
        notes.append("tcga-lgg holds lower-grade gliomas only, and its 'tumor' is the FLAIR abnormality.")
    if "brain-mri" in collections:
        notes.append("brain-mri's no-tumor slices come mostly from one source (Br35H, T2/FLAIR) and its tumors mostly "
                     "from another (figshare, contrast-enhanced T1); its patients are unknown, so its intervals treat "
                     "slices as independent and are too narrow, and the heatmap cannot be checked on its tumors "
                     "(meningioma, pituitary, contrast-enhanced gliomas): no masks.")
    if not card["localization"]["test"].get("n"):
        notes.append("No test slice has a tumor mask: where the heatmap points was not measured.")
    brain = card["targets"].get("met_on_test") or {}
    missed = [k for k, ok in brain.items() if not ok]
    if missed:
        notes.append("Below the brain-mri targets on its test split for: " + ", ".join(missed) + ".")
    external = card.get("external_validation") or {}
    if external.get("missing"):
        notes.append("External validation missing for: " + ", ".join(external["missing"]) + ".")
    for name, fold in (external.get("folds") or {}).items():
        missed = [k for k, ok in fold["met_on_flair"].items() if not ok]
        if missed:
            notes.append(f"With {name} held out (FLAIR): below the external targets for " + ", ".join(missed) + ".")
    if card["stress"]["worst_sensitivity_drop"] > STRESS_DROP_LIMIT:
        worst = [f for f, e in card["stress"]["families"].items() if e["sensitivity_drop"] > STRESS_DROP_LIMIT]
        notes.append("Sensitivity drops by more than 3 points under: " + ", ".join(worst) + " (stress suite).")
    tumor_empties = [n for n, e in card["stress"]["empty_images"].items() if e["label"] == "tumor"]
    if tumor_empties:
        notes.append("Empty images labelled tumor: " + ", ".join(tumor_empties) + ".")
    return notes


def complete_version(version: ModelVersion, data_dirs: list[str | Path], *, cache_dir=None, verbose: int = 1,
                     redo: bool = False, by: str = "manage.py complete_model") -> ModelVersion:
    """Add to a version trained before them the serving steps it lacks (serving_steps), from its own split:
    the data must reproduce the card's test split exactly, or nothing is added. `redo` makes again what an
    earlier run of this step added (after a fix to the step), never what training wrote."""
    from ml.quantize import run

    card = version.card
    config = TrainConfig.from_card(card)
    experiment = prepare_experiment(data_dirs, config, cache_dir, verbose)
    dataset, split = experiment.dataset, experiment.split
    if [collection_name(dataset, i, experiment.roots) for i in split.test] != card["split"]["test_files"]:
        raise ValueError(f"These folders do not reproduce the test split recorded in the card of {version.name}; "
                         "point --data at the collections it was trained on.")
    validation_scores, _ = run(version.onnx_path, dataset.images[split.validation])
    with tempfile.TemporaryDirectory() as tmp:
        files, updates = serving_steps(dataset, split, version.onnx_path, Path(tmp), float(card["threshold"]["value"]),
                                       validation_scores)
        return amend(version, files, {key: value for key, value in updates.items() if redo or key not in card},
                     by=by, redo=redo)
