"""What the model report says, derived from a model card (plain Python, no Django).

The card (see `ml.pipeline`) holds the per-epoch history, the test split's labels and scores, the
metrics with 95% intervals, the threshold, the targets and, when it was run, the augmentation
ablation. Everything here tolerates a card without one of those parts: the page then says the
part was not recorded instead of drawing something else.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping

import numpy as np

from analytics import plots
from ml import evaluate
from ml.data import class_label
from ml.phantoms import make_phantom
from ml.predictor import Predictor
from ml.registry import ModelVersion

CALIBRATION_BINS = 10
TIMING_IMAGES = 8
TARGET_NAMES = {"auc": "AUC", "sensitivity": "Sensitivity", "specificity": "Specificity", "accuracy": "Accuracy"}
SPLIT_NAMES = {"validation": "Validation", "test": "Test (grouped split)",
               "test_novel": "Test, images with no close relative in training"}


def test_predictions(card: Mapping) -> tuple[np.ndarray, np.ndarray] | None:
    stored = card.get("metrics", {}).get("test_predictions")
    if not stored or not stored.get("labels"):
        return None
    return np.asarray(stored["labels"], dtype=int), np.asarray(stored["scores"], dtype=float)


def calibration_bins(labels: np.ndarray, scores: np.ndarray, bins: int = CALIBRATION_BINS) -> list[dict]:
    """Equal-width probability bins: count, mean predicted probability, observed share of tumors (Wilson CI)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(scores, edges[1:-1]), 0, bins - 1)
    rows = []
    for index in range(bins):
        members = which == index
        count = int(members.sum())
        positives = int(labels[members].sum())
        low, high = evaluate.wilson_interval(positives, count)
        rows.append({
            "low": float(edges[index]), "high": float(edges[index + 1]), "count": count,
            "mean_predicted": float(scores[members].mean()) if count else None,
            "observed": positives / count if count else None, "ci_low": low, "ci_high": high,
        })
    return rows


def expected_calibration_error(bins: list[dict]) -> float:
    total = sum(b["count"] for b in bins)
    return sum(b["count"] * abs(b["observed"] - b["mean_predicted"]) for b in bins if b["count"]) / max(total, 1)


def metric_rows(card: Mapping) -> list[dict]:
    """The metrics table: one row per split, each figure with its 95% interval."""
    metrics = card.get("metrics", {})
    rows = []
    for key, name in SPLIT_NAMES.items():
        split = metrics.get(key)
        if not split:
            continue
        rows.append({
            "split": name, "n": split.get("n"),
            "cells": [{"name": TARGET_NAMES[m], "value": split.get(m), "ci": split.get("ci95", {}).get(m)}
                      for m in ("accuracy", "sensitivity", "specificity", "auc")],
            "confusion": {k: split.get(k) for k in ("tp", "fp", "tn", "fn")},
        })
    return rows


def hypothesis_one(card: Mapping) -> dict:
    """H1: a CNN classifies tumor vs no tumor accurately, judged against the card's targets on test."""
    targets = {k: v for k, v in card.get("targets", {}).items() if k in TARGET_NAMES}
    test = card.get("metrics", {}).get("test")
    if not targets or not test:
        return {"verdict": "not recorded", "rows": [], "explanation": "The model card has no targets or test metrics."}
    rows = []
    for key, target in targets.items():
        low, high = test["ci95"][key]
        rows.append({"key": key, "name": TARGET_NAMES[key], "value": test[key], "low": low, "high": high,
                     "target": target, "met": test[key] >= target, "met_at_ci_low": low >= target})
    missed = [r["name"] for r in rows if not r["met"]]
    uncertain = [r["name"] for r in rows if r["met"] and not r["met_at_ci_low"]]
    if missed:
        verdict = "not supported"
        explanation = "Below target on the test split for " + ", ".join(missed) + "."
    elif uncertain:
        verdict = "supported"
        explanation = ("Every target is met on the test split; for " + ", ".join(uncertain) +
                       " the lower end of the 95% confidence interval falls below the target.")
    else:
        verdict = "supported"
        explanation = "Every target is met on the test split, even at the lower end of its 95% confidence interval."
    return {"verdict": verdict, "rows": rows, "explanation": explanation, "n": test.get("n")}


def hypothesis_two(card: Mapping) -> dict | None:
    """H2: augmentation improves generalisation; None when the card records no ablation."""
    ablation = card.get("ablation")
    if not ablation:
        return None
    arms = {"with": ablation["with_augmentation"], "without": ablation["without_augmentation"]}
    rows = []
    for key in ("auc", "sensitivity", "specificity", "accuracy"):
        rows.append({"key": key, "name": TARGET_NAMES[key], **{
            arm: {"value": data["test"][key], "low": data["test"]["ci95"][key][0],
                  "high": data["test"]["ci95"][key][1]} for arm, data in arms.items()}})
    return {
        "hypothesis": ablation.get("hypothesis", "H2: data augmentation improves generalisation"),
        "verdict": ablation.get("verdict", "not recorded"), "gain": ablation.get("test_auc_gain"), "rows": rows,
        "arms": [{"name": name, "best_epoch": arms[arm].get("best_epoch"), "threshold": arms[arm].get("threshold"),
                  "validation_auc": arms[arm].get("validation_auc")}
                 for arm, name in (("with", "With augmentation"), ("without", "Without augmentation"))],
    }


def build_plots(card: Mapping) -> dict[str, plots.Plot]:
    """Every figure the card allows, keyed by its place on the page."""
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_curve

    figures = {}
    if card.get("history"):
        figures["history"] = plots.training_history(card["history"], card.get("best_epoch"))
    test = card.get("metrics", {}).get("test")
    threshold = float(card.get("threshold", {}).get("value", 0.5))
    if test:
        figures["confusion"] = plots.confusion_matrix(test["tp"], test["fp"], test["tn"], test["fn"], threshold)
    predictions = test_predictions(card)
    if predictions is not None and len(np.unique(predictions[0])) == 2:
        labels, scores = predictions
        predicted = scores >= threshold
        sensitivity = float(predicted[labels == 1].mean())
        false_positive_rate = float(predicted[labels == 0].mean())
        precision = float(labels[predicted].mean()) if predicted.any() else 1.0
        fpr, tpr, _ = roc_curve(labels, scores)
        figures["roc"] = plots.roc_curve(fpr, tpr, evaluate.auc(labels, scores), (false_positive_rate, sensitivity))
        precisions, recalls, _ = precision_recall_curve(labels, scores)
        figures["pr"] = plots.precision_recall_curve(recalls, precisions, average_precision_score(labels, scores),
                                                     float(labels.mean()), (sensitivity, precision))
        figures["calibration"] = plots.calibration(calibration_bins(labels, scores))
        figures["scores"] = plots.score_distribution(scores, labels, threshold)
    recall = card.get("metrics", {}).get("per_class_recall")
    if recall:
        labels_of = {name: "tumor" if class_label(name) == 1 else "no_tumor" for name in recall}
        figures["subtypes"] = plots.recall_by_subtype(recall, labels_of)
    h1 = hypothesis_one(card)
    if h1["rows"]:
        figures["h1"] = plots.metrics_against_targets(h1["rows"])
    h2 = hypothesis_two(card)
    if h2:
        figures["h2"] = plots.ablation(h2["rows"])
    return figures


def measure_inference(version: ModelVersion, threads: int = 1, images: int = TIMING_IMAGES) -> dict:
    """Time the serving path on phantom slices, one image per call, after one warm-up call."""
    predictor = Predictor(version, threads=threads)
    slices = [make_phantom(seed, tumor=seed % 2 == 0) for seed in range(images)]
    predictor.assess(slices[:1])
    timings = [predictor.assess([gray])[0].timings_ms for gray in slices]
    return {
        "images": images, "threads": threads, "image_size": "224×224 phantom slices",
        "median_ms": {step: statistics.median(t[step] for t in timings) for step in timings[0]},
        "max_total_ms": max(t["total"] for t in timings),
    }
