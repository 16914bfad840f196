"""The figures a model card reports on held-out slices: per collection, sequence and institution,
where the evidence lies, and how the model holds up under shifts it was not trained on.

Intervals on a collection that names its patients resample patients, not slices (ml.evaluate).
"""

from __future__ import annotations

import numpy as np

from ml import calibration, evaluate, explain, stress
from ml.data import Dataset, read_mask
from ml.imaging import read_image
from ml.preprocess import resize

REPORTED = ("n", "accuracy", "sensitivity", "specificity", "auc", "tp", "fp", "tn", "fn", "ci95", "patients")
# Slices between a no-tumor slice and the nearest tumor slice of its volume; the share of the network's
# input that a tumor covers (from its mask).
DISTANCE_BINS = {"1-2": (1, 2), "3-5": (3, 5), "6-10": (6, 10), "11+": (11, 10**6)}
LESION_BINS = {"<1%": (0.0, 0.01), "1-3%": (0.01, 0.03), "3%+": (0.03, 1.01)}


def _brief(result: dict) -> dict:
    return {key: result[key] for key in REPORTED if key in result}


def slice_metrics(dataset: Dataset, index: np.ndarray, scores: np.ndarray, threshold: float, seed: int = 0) -> dict:
    """Metrics of `scores` (one per row of `index`), with patient-level intervals where patients are named."""
    subjects = dataset.column("subject")[index]
    clusters = subjects if (subjects != "").all() else None
    return evaluate.metrics(dataset.labels[index], scores, threshold, seed, clusters=clusters)


def breakdown(dataset: Dataset, index: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    """Figures overall and per collection; within a collection, per sequence and per institution."""
    out = {"all": _brief(evaluate.metrics(dataset.labels[index], scores, threshold)), "by_source": {}}
    sources = dataset.column("source")[index]
    for source in sorted(set(sources)):
        rows = sources == source
        entry = {"all": _brief(slice_metrics(dataset, index[rows], scores[rows], threshold))}
        for attribute in ("sequence", "institution"):
            values = dataset.column(attribute)[index[rows]]
            if (values != "").all() and len(set(values)) > 1:
                entry[f"by_{attribute}"] = {
                    str(value): _brief(slice_metrics(dataset, index[rows][values == value],
                                                     scores[rows][values == value], threshold))
                    for value in sorted(set(values))}
        subtypes = np.asarray(dataset.subtypes, dtype=object)[index[rows]]
        entry["recall_by_subtype"] = evaluate.recall_by_group(dataset.labels[index[rows]], scores[rows], threshold,
                                                              list(subtypes))
        if all(dataset.samples[i].slice_index is not None for i in index[rows]):
            entry["errors_by_position"] = errors_by_position(dataset, index[rows], scores[rows], threshold)
        out["by_source"][str(source)] = entry
    return out


def slices_to_lesion(dataset: Dataset) -> np.ndarray:
    """For each slice, how many slices lie between it and the nearest tumor slice of the same volume (patient
    and sequence): 0 on a tumor slice, -1 where the volume holds none or the collection gives no positions."""
    tumor_positions: dict[tuple, list[int]] = {}
    for sample in dataset.samples:
        if sample.label == 1 and sample.slice_index is not None:
            tumor_positions.setdefault((sample.subject, sample.sequence), []).append(sample.slice_index)
    out = np.full(len(dataset), -1)
    for i, sample in enumerate(dataset.samples):
        positions = tumor_positions.get((sample.subject, sample.sequence))
        if positions and sample.slice_index is not None:
            out[i] = min(abs(sample.slice_index - position) for position in positions)
    return out


def errors_by_position(dataset: Dataset, index: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    """On whole volumes: specificity of the no-tumor slices by their distance to the lesion (a slice next to it
    may hold tumor the mask leaves out), and sensitivity by the lesion's share of the network's input."""
    def rate(rows: np.ndarray, name: str) -> dict:
        result = slice_metrics(dataset, index[rows], scores[rows], threshold)
        return {"n": result["n"], name: result[name], "ci95": {name: result["ci95"][name]},
                **({"patients": result["patients"]} if "patients" in result else {})}

    normal = dataset.labels[index] == 0
    distance = slices_to_lesion(dataset)[index]
    lesion = dataset.cells[index].astype(np.float32).mean(axis=(1, 2))
    tumor = (dataset.labels[index] == 1) & dataset.has_cells[index]
    far = {name: normal & (distance >= low) & (distance <= high) for name, (low, high) in DISTANCE_BINS.items()}
    size = {name: tumor & (lesion >= low) & (lesion < high) for name, (low, high) in LESION_BINS.items()}
    return {
        "no_tumor_by_slices_to_lesion": {name: rate(rows, "specificity") for name, rows in far.items() if rows.any()},
        "tumor_by_lesion_share": {name: rate(rows, "sensitivity") for name, rows in size.items() if rows.any()},
    }


POSITIONS_PREDATE = ("This card predates the breakdown by position; python -m ml.error_positions computes it "
                     "from the card's recorded test scores.")
NO_VOLUMES = "No collection of whole volumes on the test split."


def position_rows(card: dict) -> tuple[list[dict], str]:
    """The card's breakdown by position, one row per bin, for the model page and the model report; with no rows,
    the reason why."""
    rows = []
    for source, entry in card.get("metrics", {}).get("test_by_source", {}).items():
        found = entry.get("errors_by_position") or {}
        for key, slices, measure in (("no_tumor_by_slices_to_lesion", "no-tumor slices, {} slices from the lesion",
                                      "specificity"),
                                     ("tumor_by_lesion_share", "tumor slices, lesion {} of the input", "sensitivity")):
            for name, result in found.get(key, {}).items():
                rows.append({"collection": source, "slices": slices.format(name), "n": result["n"],
                             "measure": measure, "value": result[measure], "ci95": result["ci95"][measure],
                             "patients": result.get("patients")})
    volumes = any("by_sequence" in entry for entry in card.get("metrics", {}).get("test_by_source", {}).values())
    return rows, "" if rows else POSITIONS_PREDATE if volumes else NO_VOLUMES


def localization(dataset: Dataset, index: np.ndarray, serve, threshold: float) -> dict:
    """Where the evidence lies on the tumor slices of `index` that have a mask, at the image's resolution.

    pointing_game: share of slices whose map peak lies on the lesion dilated by 8 px;
    mass_in_mask: share of the map's evidence on the lesion (mean and median over slices);
    cells_above_half: share of head cells above 0.5, on tumor and on no-tumor slices (a saturated
    map lights up most of the head; a useful one only the lesion).
    """
    tumor = [i for i in index if dataset.labels[i] == 1 and dataset.samples[i].mask is not None]
    normal = [i for i in index if dataset.labels[i] == 0][:len(tumor) or None]
    hits, masses, patients, above = [], [], [], {"tumor": [], "no_tumor": []}
    for kind, rows in (("tumor", tumor), ("no_tumor", normal)):
        for start in range(0, len(rows), 64):
            chunk = rows[start:start + 64]
            prepared = [dataset.prepare(read_image(dataset.samples[i].path)) for i in chunk]
            _, maps = serve(np.stack([p.tensor for p in prepared]))
            for i, p, evidence in zip(chunk, prepared, maps):
                head_cells = resize(p.head.astype(np.float32), evidence.shape[0]) > 0.5
                above[kind].append(float((evidence[head_cells] > 0.5).mean()) if head_cells.any() else 0.0)
                if kind == "tumor":
                    heat = explain.over_head(evidence, p)
                    mask = read_mask(dataset.samples[i].mask)
                    hits.append(explain.pointing_hit(heat, mask))
                    masses.append(explain.mass_in_mask(heat, mask))
                    patients.append(dataset.samples[i].subject)
    if not hits:
        return {"n": 0}
    hits_array = np.array(hits)
    return {
        "n": len(hits), "patients": len(set(patients)),
        "pointing_game": float(hits_array.mean()),
        "pointing_game_ci95": _cluster_share_interval(hits_array, np.array(patients, dtype=object)),
        "mass_in_mask_mean": float(np.nanmean(masses)), "mass_in_mask_median": float(np.nanmedian(masses)),
        "cells_above_half": {kind: float(np.mean(values)) if values else None for kind, values in above.items()},
        "definition": "Tumor slices with a mask. Pointing game: the heatmap's peak lies on the lesion dilated by "
                      "8 px of the image. Mass in mask: the share of the heatmap's evidence on the lesion. Cells "
                      "above half: share of map cells above 0.5.",
    }


def _cluster_share_interval(hits: np.ndarray, clusters: np.ndarray, rounds: int = 1000) -> tuple[float, float]:
    names = sorted(set(clusters))
    members = [np.flatnonzero(clusters == name) for name in names]
    rng = np.random.default_rng(0)
    shares = [hits[np.concatenate([members[k] for k in rng.integers(0, len(names), len(names))])].mean()
              for _ in range(rounds)]
    return tuple(float(v) for v in np.percentile(shares, [2.5, 97.5]))


def stress_suite(dataset: Dataset, index: np.ndarray, serve, threshold: float) -> dict:
    """Sensitivity and specificity at the served threshold, clean and under each stress family."""
    labels = dataset.labels[index]
    sources = dataset.column("source")[index]
    grays = [read_image(dataset.samples[i].path) for i in index]
    results = {}
    for family in ("clean", *stress.FAMILIES):
        images = [gray if family == "clean" else stress.perturb(gray, family, seed=k) for k, gray in enumerate(grays)]
        scores = np.concatenate([serve(np.stack([dataset.prepare(g).tensor for g in images[s:s + 128]]))[0]
                                 for s in range(0, len(images), 128)])
        entry = evaluate.rates(labels, scores, threshold)
        entry["by_source"] = {str(name): evaluate.rates(labels[sources == name], scores[sources == name], threshold)
                              for name in sorted(set(sources))}
        results[family] = entry
    clean = results["clean"]["sensitivity"]
    for family, entry in results.items():
        entry["sensitivity_drop"] = clean - entry["sensitivity"]
    empties = stress.empty_images()
    empty_scores, _ = serve(np.stack([dataset.prepare(image).tensor for image in empties.values()]))
    return {
        "n": int(len(index)), "families": results,
        "worst_sensitivity_drop": max(entry["sensitivity_drop"] for entry in results.values()),
        "empty_images": {name: {"probability": float(p), "label": "tumor" if p >= threshold else "no_tumor"}
                         for name, p in zip(empties, empty_scores)},
        "description": stress.__doc__.strip(),
    }


def calibration_figures(labels_validation: np.ndarray, logits_validation: np.ndarray, temperature: float,
                        labels_test: np.ndarray, scores_test: np.ndarray) -> dict:
    """Calibration on validation before and after temperature scaling, and on test as served."""
    return {
        "method": "temperature scaling fitted on validation (minimum negative log-likelihood)",
        "temperature": temperature,
        "validation_before": calibration.summary(labels_validation, calibration.sigmoid(logits_validation)),
        "validation_after": calibration.summary(labels_validation,
                                                calibration.sigmoid(logits_validation / temperature)),
        "test": calibration.summary(labels_test, scores_test),
    }


def gate_figures(dataset: Dataset, index: np.ndarray, gate_scores, threshold: float) -> dict:
    """The whole gate (rules, then the learned check) on real held-out slices: how many it refuses, why,
    per collection and sequence; on tcga-lgg also among slices listed with at least 15% head."""
    from ml.gate import check_statistics

    codes, blank = [], []
    for start in range(0, len(index), 128):
        chunk = index[start:start + 128]
        grays = [read_image(dataset.samples[i].path) for i in chunk]
        prepared = [dataset.prepare(gray) for gray in grays]
        scores = gate_scores(prepared)
        for gray, p, score in zip(grays, prepared, scores):
            decision = check_statistics(p, gray.shape)
            codes.append(decision.code if not decision.usable else "" if score >= threshold else "not_brain_mri")
            blank.append(float(gray.max()) == 0.0)
    codes_array, blank_array = np.array(codes, dtype=object), np.array(blank)
    sources, sequences = dataset.column("source")[index], dataset.column("sequence")[index]
    listed = np.array([s.listed_head_fraction if s.listed_head_fraction is not None else 1.0
                       for s in (dataset.samples[i] for i in index)])

    def share(rows: np.ndarray) -> dict:
        refused = codes_array[rows] != ""
        reasons, counts = np.unique(codes_array[rows][refused], return_counts=True)
        return {"n": int(rows.sum()), "refused": int(refused.sum()),
                "false_rejection": float(refused.mean()) if rows.any() else None,
                "refused_blank_images": int((refused & blank_array[rows]).sum()),
                "reasons": dict(zip(reasons.tolist(), counts.tolist()))}

    out = {"all": share(np.ones(len(index), bool)), "by_source": {}}
    for source in sorted(set(sources)):
        rows = sources == source
        entry = {"all": share(rows)}
        if (sequences[rows] != "").all():
            entry["by_sequence_head_at_least_15pct"] = {
                str(seq): share(rows & (sequences == seq) & (listed >= 0.15)) for seq in sorted(set(sequences[rows]))}
        out["by_source"][str(source)] = entry
    return out


SERIES_WINDOWS = (1, 2, 3, 5)


def series_window(dataset: Dataset, index: np.ndarray, scores: np.ndarray) -> dict:
    """The number of consecutive slices a series' result averages over, chosen on validation volumes.

    Each (patient, sequence) of a collection that lists slice positions is a volume. For each window, every
    slice is scored by its mean with its neighbours (ml.volumes.smoothed), and the window with the best
    slice-level AUC over the validation volumes is kept (ties: the smaller).
    """
    from ml.volumes import smoothed

    volumes: dict[tuple, list[int]] = {}
    for row, i in enumerate(index):
        sample = dataset.samples[i]
        if sample.subject and sample.slice_index is not None:
            volumes.setdefault((sample.subject, sample.sequence), []).append(row)
    if not volumes:
        return {"window": 1, "chosen_on": "no volumes in validation: each slice counts alone", "auc_by_window": {}}
    labels = dataset.labels[index]
    auc_by_window = {}
    for window in SERIES_WINDOWS:
        values, truth = [], []
        for rows in volumes.values():
            rows = sorted(rows, key=lambda r: dataset.samples[index[r]].slice_index)
            values.append(smoothed(scores[rows], window))
            truth.append(labels[rows])
        auc_by_window[str(window)] = evaluate.auc(np.concatenate(truth), np.concatenate(values))
    best = max(SERIES_WINDOWS, key=lambda w: (round(auc_by_window[str(w)], 4), -w))
    return {"window": best, "auc_by_window": auc_by_window, "volumes": len(volumes),
            "slices": int(sum(len(rows) for rows in volumes.values())),
            "chosen_on": "validation volumes (each patient and sequence of tcga-lgg's validation split)",
            "rule": "a series' result is the highest mean tumor probability over this many consecutive assessed "
                    "slices; its label is tumor when that mean reaches the threshold"}
