"""Metrics with confidence intervals, and the choice of the decision threshold."""

from __future__ import annotations

import math

import numpy as np

Z_95 = 1.959964
BOOTSTRAP_ROUNDS = 1000
# The sensitivity the threshold must keep on each collection's validation slices: the project's target on
# unseen data (0.97 on brain-mri; 0.90 on tcga-lgg, whose validation holds about a dozen patients) plus a
# margin for the sampling error of the validation estimate. Other collections get the default.
TARGET_SENSITIVITY = 0.98
COLLECTION_TARGETS = {"brain-mri": 0.98, "tcga-lgg": 0.92}


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


def rates(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    """Sensitivity and specificity at `threshold` (None where there is nothing to count), with the counts."""
    counts = confusion(labels, scores, threshold)
    tumors, normals = counts["tp"] + counts["fn"], counts["tn"] + counts["fp"]
    return {"n": int(len(labels)), "sensitivity": counts["tp"] / tumors if tumors else None,
            "specificity": counts["tn"] / normals if normals else None, **counts}


def metrics(labels: np.ndarray, scores: np.ndarray, threshold: float, seed: int = 0,
            clusters: np.ndarray | None = None, bootstrap: bool = True) -> dict:
    """Everything the model card and `evaluate_model` report, with 95% intervals.

    With `clusters` (the patient of each slice) the intervals resample patients (cluster_intervals);
    otherwise proportions get Wilson intervals and the AUC a bootstrap over slices.
    """
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
        "ci95": cluster_intervals(labels, scores, threshold, clusters, seed) if clusters is not None else {
            "accuracy": wilson_interval(tp + tn, n),
            "sensitivity": wilson_interval(tp, tp + fn),
            "specificity": wilson_interval(tn, tn + fp),
            "auc": bootstrap_auc_interval(labels, scores, seed=seed) if bootstrap else (float("nan"),) * 2,
        },
        **({"patients": int(len(set(clusters)))} if clusters is not None else {}),
    }


def recall_by_group(labels: np.ndarray, scores: np.ndarray, threshold: float, names: list[str]) -> dict[str, float]:
    """Share of each subfolder predicted correctly (recall of tumors, specificity of normals)."""
    names_array = np.asarray(names)
    predicted = (np.asarray(scores) >= threshold).astype(int)
    return {
        name: float((predicted[names_array == name] == np.asarray(labels)[names_array == name]).mean())
        for name in sorted(set(names))
    }


def choose_threshold(labels: np.ndarray, scores: np.ndarray, target_sensitivity: float = TARGET_SENSITIVITY,
                     groups: np.ndarray | None = None, targets: dict[str, float] | None = None) -> tuple[float, str]:
    """The highest threshold that still finds the target share of the tumors, in every group.

    Missing a tumor costs more than a false alarm, so sensitivity is fixed first and the threshold is
    raised as far as that allows, to keep false alarms down. With `groups` (the collection of each
    slice), each group must keep its target (`targets`, else `target_sensitivity`): the threshold is
    the lowest of theirs.
    """
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores)
    groups = np.full(len(labels), "all", dtype=object) if groups is None else np.asarray(groups, dtype=object)
    targets = targets or {}
    per_group = {}
    for name in sorted(set(groups)):
        tumor_scores = np.sort(scores[(groups == name) & labels])
        if len(tumor_scores):
            target = targets.get(str(name), target_sensitivity)
            per_group[str(name)] = (float(tumor_scores[int(math.floor((1 - target) * len(tumor_scores)))]), target)
    if not per_group:
        return 0.5, "No tumors in the validation split; the default 0.5 is used."
    threshold = min(value for value, _ in per_group.values())
    figures = "; ".join(
        f"{name} (target {target:.2f}): sensitivity {m['sensitivity']:.3f}, specificity {m['specificity']:.3f}"
        for name, (_, target) in per_group.items()
        for m in [metrics(labels[groups == name], scores[groups == name], threshold, bootstrap=False)])
    rationale = (
        f"Highest threshold that keeps the validation sensitivity at its target in "
        f"{'each collection' if len(per_group) > 1 else 'the validation split'}: missing a tumor costs more than "
        f"a false alarm, and each target lies above the project's target on unseen data by a margin for the "
        f"sampling error of the validation estimate. At {threshold:.4f} on validation: {figures}."
    )
    return threshold, rationale


def cluster_intervals(labels: np.ndarray, scores: np.ndarray, threshold: float, clusters: np.ndarray,
                      seed: int = 0, rounds: int = BOOTSTRAP_ROUNDS) -> dict[str, tuple[float, float]]:
    """95% percentile-bootstrap intervals that resample whole clusters (patients), not slices.

    Slices of one patient are alike, so an interval that treats them as independent is too narrow.
    """
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores)
    clusters = np.asarray(clusters, dtype=object)
    names = np.array(sorted(set(clusters)), dtype=object)
    members = [np.flatnonzero(clusters == name) for name in names]
    rng = np.random.default_rng(seed)
    values = {"auc": [], "sensitivity": [], "specificity": [], "accuracy": []}
    for _ in range(rounds):
        rows = np.concatenate([members[i] for i in rng.integers(0, len(names), len(names))])
        y, p = labels[rows], scores[rows]
        predicted = p >= threshold
        if y.any() and (~y).any():
            values["auc"].append(auc(y, p))
        if y.any():
            values["sensitivity"].append((predicted & y).sum() / y.sum())
        if (~y).any():
            values["specificity"].append((~predicted & ~y).sum() / (~y).sum())
        values["accuracy"].append((predicted == y).mean())
    return {name: tuple(float(v) for v in np.percentile(found, [2.5, 97.5])) if found else (float("nan"),) * 2
            for name, found in values.items()}
