"""Serve a registered model version: slices in, assessments out. TensorFlow is not imported.

A Predictor loads the ONNX serving graph once and keeps it; it is built to live for the whole
life of a worker process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ml import explain
from ml.feature_model import contributions, feature_probability
from ml.features import FEATURE_NAMES, texture_features
from ml.preprocess import preprocess
from ml.registry import ModelVersion

TUMOR, NO_TUMOR = "tumor", "no_tumor"


@dataclass(frozen=True)
class Assessment:
    probability: float
    label: str
    threshold: float
    heatmap: np.ndarray = field(repr=False)  # (H, W) local tumor evidence in [0, 1], source coordinates
    features: dict[str, float]
    feature_probability: float | None
    feature_contributions: list[dict]
    model_version: str
    model_sha256: str
    timings_ms: dict[str, float]


class Predictor:
    def __init__(self, version: ModelVersion, threads: int | None = None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(version.onnx_path), options,
                                                    providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        card = version.card
        self.version = version.name
        self.sha256 = card["sha256"]["model.onnx"]
        self.threshold = float(card["threshold"]["value"])
        self.image_size = int(card["hyperparameters"]["image_size"])
        self.feature_model = card.get("feature_model")

    def network(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, size, size, 1) -> probabilities (n,), activation maps (n, h, w)."""
        probabilities, cams = self.session.run(None, {self.input_name: batch})
        return probabilities.reshape(-1), cams[..., 0]

    def assess(self, slices: Sequence[np.ndarray], with_features: bool = True) -> list[Assessment]:
        """Assess grayscale slices ([0, 1], any size) in one batch through the network."""
        if not slices:
            return []
        started = time.perf_counter()
        prepared = [preprocess(gray, self.image_size) for gray in slices]
        batch = np.stack([tensor for tensor, _ in prepared])
        after_preprocess = time.perf_counter()
        probabilities, cams = self.network(batch)
        after_network = time.perf_counter()
        heatmaps = [explain.over_head(explain.evidence(cam), box, gray)
                    for cam, (_, box), gray in zip(cams, prepared, slices)]
        after_heatmap = time.perf_counter()
        share = 1000.0 / len(slices)
        timings = {
            "preprocess": (after_preprocess - started) * share,
            "inference": (after_network - after_preprocess) * share,
            "heatmap": (after_heatmap - after_network) * share,
        }
        return [
            self._assessment(probability, heatmap, tensor, dict(timings), with_features)
            for probability, heatmap, (tensor, _) in zip(probabilities, heatmaps, prepared)
        ]

    def _assessment(self, probability: float, heatmap: np.ndarray, tensor: np.ndarray,
                    timings: dict[str, float], with_features: bool) -> Assessment:
        features, feature_p, parts = {}, None, []
        if with_features:
            started = time.perf_counter()
            features = texture_features(tensor)
            if self.feature_model:
                vector = np.array([features[name] for name in FEATURE_NAMES])
                feature_p = float(feature_probability(self.feature_model, vector)[0])
                parts = contributions(self.feature_model, features)
            timings["features"] = (time.perf_counter() - started) * 1000.0
        return Assessment(
            probability=float(probability),
            label=TUMOR if probability >= self.threshold else NO_TUMOR,
            threshold=self.threshold, heatmap=heatmap, features=features,
            feature_probability=feature_p, feature_contributions=parts,
            model_version=self.version, model_sha256=self.sha256,
            timings_ms={**timings, "total": sum(timings.values())},
        )
