"""Calibration: how far a predicted probability can be taken at its word, and temperature scaling.

A model is calibrated when, of the slices it gives 0.8, about 80% hold a tumor. The expected
calibration error (ECE) is the gap between confidence and frequency, averaged over equal-width
bins weighted by their size; the Brier score is the mean squared error of the probability.
Temperature scaling divides the logit by one number fitted on validation (Guo et al., 2017): it
leaves the ranking, hence the AUC, unchanged.
"""

from __future__ import annotations

import numpy as np

BINS = 10


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(logits, -60, 60)))


def negative_log_likelihood(labels: np.ndarray, logits: np.ndarray) -> float:
    labels = np.asarray(labels, dtype=float)
    logits = np.asarray(logits, dtype=float)
    return float(np.mean(np.logaddexp(0.0, logits) - labels * logits))


def fit_temperature(labels: np.ndarray, logits: np.ndarray) -> float:
    """The temperature T > 0 that minimises the negative log-likelihood of sigmoid(logits / T)."""
    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 400))
    losses = [negative_log_likelihood(labels, np.asarray(logits) / t) for t in grid]
    best = int(np.argmin(losses))
    # One refinement step between the neighbours of the best grid point.
    fine = np.exp(np.linspace(np.log(grid[max(best - 1, 0)]), np.log(grid[min(best + 1, len(grid) - 1)]), 101))
    return float(fine[int(np.argmin([negative_log_likelihood(labels, np.asarray(logits) / t) for t in fine]))])


def reliability(labels: np.ndarray, probabilities: np.ndarray, bins: int = BINS) -> list[dict]:
    """Per equal-width probability bin: its range, count, mean confidence and observed tumor rate."""
    labels = np.asarray(labels, dtype=float)
    probabilities = np.asarray(probabilities, dtype=float)
    index = np.minimum((probabilities * bins).astype(int), bins - 1)
    rows = []
    for b in range(bins):
        members = index == b
        rows.append({"low": b / bins, "high": (b + 1) / bins, "n": int(members.sum()),
                     "confidence": float(probabilities[members].mean()) if members.any() else None,
                     "frequency": float(labels[members].mean()) if members.any() else None})
    return rows


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, bins: int = BINS) -> float:
    total = len(labels)
    return float(sum(row["n"] / total * abs(row["confidence"] - row["frequency"])
                     for row in reliability(labels, probabilities, bins) if row["n"]))


def brier_score(labels: np.ndarray, probabilities: np.ndarray) -> float:
    return float(np.mean((np.asarray(probabilities, float) - np.asarray(labels, float)) ** 2))


def summary(labels: np.ndarray, probabilities: np.ndarray) -> dict:
    """What the card and the model report show about calibration on one set of slices."""
    return {"n": int(len(labels)), "ece": expected_calibration_error(labels, probabilities),
            "brier": brier_score(labels, probabilities), "reliability": reliability(labels, probabilities)}
