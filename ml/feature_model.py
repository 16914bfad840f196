"""An interpretable companion to the CNN: logistic regression on the 13 texture features.

Trained with scikit-learn; served from the plain numbers stored in the model card (scaler mean
and scale, coefficients, intercept), so the serving path needs no scikit-learn. A case's
explanation is each feature's contribution to the log-odds: coefficient x standardised value.
"""

from __future__ import annotations

import numpy as np

from ml.features import FEATURE_NAMES


def fit_feature_model(features: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(features)
    model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000, random_state=seed)
    model.fit(scaler.transform(features), labels)
    coefficients = model.coef_[0]
    weight = np.abs(coefficients)
    return {
        "kind": "logistic_regression",
        "features": list(FEATURE_NAMES),
        "mean": scaler.mean_.tolist(),
        "scale": scaler.scale_.tolist(),
        "coefficients": coefficients.tolist(),
        "intercept": float(model.intercept_[0]),
        # Share of the total absolute standardised coefficient: how much each feature moves the log-odds.
        "importance": dict(zip(FEATURE_NAMES, (weight / weight.sum()).tolist())),
    }


def standardised(params: dict, features: np.ndarray) -> np.ndarray:
    scale = np.where(np.asarray(params["scale"]) > 0, params["scale"], 1.0)
    return (np.atleast_2d(features) - np.asarray(params["mean"])) / scale


def feature_probability(params: dict, features: np.ndarray) -> np.ndarray:
    logits = standardised(params, features) @ np.asarray(params["coefficients"]) + params["intercept"]
    return 1.0 / (1.0 + np.exp(-logits))


def contributions(params: dict, feature_values: dict[str, float]) -> list[dict]:
    """Per feature: value, contribution to the log-odds of tumor; largest effect first."""
    vector = np.array([feature_values[name] for name in params["features"]])
    parts = standardised(params, vector)[0] * np.asarray(params["coefficients"])
    rows = [
        {"feature": name, "value": float(vector[i]), "contribution": float(parts[i])}
        for i, name in enumerate(params["features"])
    ]
    return sorted(rows, key=lambda row: -abs(row["contribution"]))
