"""Metrics with confidence intervals, and the choice of the decision threshold."""

from __future__ import annotations

import math

import numpy as np

Z_95 = 1.959964
BOOTSTRAP_ROUNDS = 1000
# The project asks for a sensitivity of at least 0.97 on unseen data. A validation split of about 700
# tumors estimates sensitivity only to within about +-1%, so the threshold is set for 0.99 there.
TARGET_SENSITIVITY = 0.99


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with tied scores counted half)."""
    labels = np.asarray(labels).astype(bool)
    positives, negatives = labels.sum(), (~labels).sum()
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = np.asarray(scores)[order]
    # Average ranks over ties.
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(average, counts)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def wilson_interval(successes: int, total: int) -> tuple[float, float]:
    """95% Wilson score interval of a proportion; (nan, nan) when there is nothing to count."""
    if total == 0:
        return (float("nan"), float("nan"))
    p = successes / total
    denominator = 1 + Z_95**2 / total
    centre = (p + Z_95**2 / (2 * total)) / denominator
    half = Z_95 * math.sqrt(p * (1 - p) / total + Z_95**2 / (4 * total**2)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def bootstrap_auc_interval(labels: np.ndarray, scores: np.ndarray, seed: int = 0,
                           rounds: int = BOOTSTRAP_ROUNDS) -> tuple[float, float]:
    """95% percentile bootstrap interval of the AUC, resampling positives and negatives apart."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores)
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    values = np.empty(rounds)
    both = np.concatenate([np.ones(len(pos), bool), np.zeros(len(neg), bool)])
    for i in range(rounds):
        sample = np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
        values[i] = auc(both, sample)
    low, high = np.percentile(values, [2.5, 97.5])
    return (float(low), float(high))


def confusion(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, int]:
    labels = np.asarray(labels).astype(bool)
    predicted = np.asarray(scores) >= threshold
    return {
        "tp": int((predicted & labels).sum()), "fp": int((predicted & ~labels).sum()),
        "tn": int((~predicted & ~labels).sum()), "fn": int((~predicted & labels).sum()),
    }


def metrics(labels: np.ndarray, scores: np.ndarray, threshold: float, seed: int = 0) -> dict:
    """Everything the model card and `evaluate_model` report, with 95% intervals."""
    counts = confusion(labels, scores, threshold)
    tp, fp, tn, fn = counts["tp"], counts["fp"], counts["tn"], counts["fn"]
    n = tp + fp + tn + fn

    def rate(num: int, den: int) -> float:
        return num / den if den else float("nan")

    return {
        "n": n,
        "accuracy": rate(tp + tn, n),
        "sensitivity": rate(tp, tp + fn),
        "specificity": rate(tn, tn + fp),
        "precision": rate(tp, tp + fp),
        "auc": auc(labels, scores),
        "threshold": float(threshold),
        **counts,
        "ci95": {
            "accuracy": wilson_interval(tp + tn, n),
            "sensitivity": wilson_interval(tp, tp + fn),
            "specificity": wilson_interval(tn, tn + fp),
            "auc": bootstrap_auc_interval(labels, scores, seed=seed),
        },
    }


def recall_by_group(labels: np.ndarray, scores: np.ndarray, threshold: float, names: list[str]) -> dict[str, float]:
    """Share of each subfolder predicted correctly (recall of tumors, specificity of normals)."""
    names_array = np.asarray(names)
    predicted = (np.asarray(scores) >= threshold).astype(int)
    return {
        name: float((predicted[names_array == name] == np.asarray(labels)[names_array == name]).mean())
        for name in sorted(set(names))
    }


def choose_threshold(labels: np.ndarray, scores: np.ndarray,
                     target_sensitivity: float = TARGET_SENSITIVITY) -> tuple[float, str]:
    """The highest threshold that still finds `target_sensitivity` of the tumors.

    Missing a tumor costs more than a false alarm, so sensitivity is fixed first and the
    threshold is raised as far as that allows, to keep false alarms down.
    """
    labels = np.asarray(labels).astype(bool)
    tumor_scores = np.sort(np.asarray(scores)[labels])
    if len(tumor_scores) == 0:
        return 0.5, "No tumors in the validation split; the default 0.5 is used."
    allowed_misses = int(math.floor((1 - target_sensitivity) * len(tumor_scores)))
    threshold = float(tumor_scores[allowed_misses])
    chosen = metrics(labels, scores, threshold)
    rationale = (
        f"Highest threshold with sensitivity >= {target_sensitivity:.2f} on the validation split: missing a "
        f"tumor costs more than a false alarm, and the margin above the 0.97 target covers the sampling "
        f"error of the validation estimate. At {threshold:.4f} validation sensitivity is "
        f"{chosen['sensitivity']:.3f} and specificity {chosen['specificity']:.3f}."
    )
    return threshold, rationale
