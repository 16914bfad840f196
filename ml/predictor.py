"""Serve a registered model version: slices in, assessments out. TensorFlow is not imported.

A Predictor loads the ONNX serving graph and the quality gate once and keeps them; it is built to
live for the whole life of a worker process. Every slice gets the network's probability and the
gate's decision: the probability is kept for evaluation and audit, but an image the gate refuses
is shown as "cannot be assessed" (see ml.gate).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ml import explain
from ml.gate import OK, Decision, Gate, check_statistics
from ml.feature_model import contributions, feature_probability
from ml.features import FEATURE_NAMES, texture_features
from ml.preprocess import Prepared, prepare, recorded_reference
from ml.registry import ModelVersion

TUMOR, NO_TUMOR = "tumor", "no_tumor"


@dataclass(frozen=True)
class Assessment:
    probability: float
    label: str
    threshold: float
    heatmap: np.ndarray = field(repr=False)  # (h, w) tumor evidence in [0, 1] over the slice at working size
    features: dict[str, float]
    feature_probability: float | None
    feature_contributions: list[dict]
    model_version: str
    model_sha256: str
    timings_ms: dict[str, float]
    quality: Decision = OK

    @property
    def usable(self) -> bool:
        return self.quality.usable


class Predictor:
    def __init__(self, version: ModelVersion, threads: int | None = None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        card = version.card
        # The int8 graph when it kept parity with fp32 (ml.quantize), else fp32.
        self.serving = card.get("serving") or {"file": "model.onnx", "runtime": "onnxruntime", "precision": "fp32"}
        self.session = onnxruntime.InferenceSession(str(version.path / self.serving["file"]), options,
                                                    providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.version = version.name
        self.sha256 = card["sha256"][self.serving["file"]]
        self.threshold = float(card["threshold"]["value"])
        self.image_size = int(card["hyperparameters"]["image_size"])
        self.intensity_reference = recorded_reference(card["hyperparameters"])
        self.feature_model = card.get("feature_model")
        # A series' result: the highest mean over this many consecutive slices (chosen on validation volumes).
        self.series_window = int((card.get("series") or {}).get("window", 1))
        gate = card.get("quality_gate")
        self.gate = (Gate(version.path / gate["file"], gate["threshold"], threads)
                     if gate and (version.path / gate["file"]).is_file() else None)

    def network(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, size, size, 1) -> probabilities (n,), evidence maps (n, h, w)."""
        probabilities, maps = self.session.run(None, {self.input_name: batch})
        return probabilities.reshape(-1), maps[..., 0]

    def assess(self, slices: Sequence[np.ndarray], with_features: bool = True,
               modalities: Sequence[str] | None = None) -> list[Assessment]:
        """Assess grayscale slices ([0, 1], any size) in one batch through the gate and the network.

        `modalities` (one per slice, "" when unknown) lets the gate refuse a DICOM image that is not MR.
        """
        if not slices:
            return []
        started = time.perf_counter()
        prepared = [prepare(gray, self.image_size, self.intensity_reference) for gray in slices]
        batch = np.stack([p.tensor for p in prepared])
        after_preprocess = time.perf_counter()
        decisions = self.quality(prepared, [gray.shape for gray in slices], modalities)
        after_gate = time.perf_counter()
        probabilities, maps = self.network(batch)
        after_network = time.perf_counter()
        heatmaps = [explain.over_head(evidence, p) for evidence, p in zip(maps, prepared)]
        after_heatmap = time.perf_counter()
        share = 1000.0 / len(slices)
        timings = {
            "preprocess": (after_preprocess - started) * share,
            "gate": (after_gate - after_preprocess) * share,
            "inference": (after_network - after_gate) * share,
            "heatmap": (after_heatmap - after_network) * share,
        }
        return [
            self._assessment(probability, heatmap, p, decision, dict(timings), with_features)
            for probability, heatmap, p, decision in zip(probabilities, heatmaps, prepared, decisions)
        ]

    def quality(self, prepared: list[Prepared], shapes: list[tuple[int, int]],
                modalities: Sequence[str] | None = None) -> list[Decision]:
        """The gate's decisions; a version trained before the gate existed gets its rules only."""
        modalities = list(modalities or [""] * len(prepared))
        if self.gate is not None:
            return self.gate.check(prepared, shapes, modalities)
        return [check_statistics(p, shape, modality) for p, shape, modality in zip(prepared, shapes, modalities)]

    def _assessment(self, probability: float, heatmap: np.ndarray, prepared: Prepared, quality: Decision,
                    timings: dict[str, float], with_features: bool) -> Assessment:
        features, feature_p, parts = {}, None, []
        if with_features and quality.usable:
            started = time.perf_counter()
            features = texture_features(prepared.tensor)
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
            timings_ms={**timings, "total": sum(timings.values())}, quality=quality,
        )
