"""Train the quality gate's learned check: a small network, brain MRI slice or not (see ml.gate).

Positives are the training split's slices, half of them as another acquisition would show them
(ml.augment), so realistic shifts stay accepted; negatives are made here (ml.negatives), half of
them through the same augmentation. Validation slices and fresh negatives choose the threshold;
the test split's slices and another fresh set of negatives measure it. The sample images bundled
with scikit-image and pydicom are never used here: they test the gate (tests, benchmarks.gate).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
from keras import layers  # noqa: E402

from ml.data import Dataset  # noqa: E402
from ml.examples import gate_negative, gate_positive, pool_map  # noqa: E402
from ml.gate import GATE_SIZE  # noqa: E402
from ml.negatives import KINDS  # noqa: E402

MAX_FALSE_REJECTION = 0.005  # of clean validation slices; the target on test is 1%
MIN_REFUSED = 0.95  # of the validation's made negatives: the target on unseen non-brain images
POSITIVES = 6000
NEGATIVES_PER_KIND = 750
PART_SLICES = 64  # real slices the "brain part" negatives are cut from (training split only)


@dataclass
class GateFit:
    network: keras.Model
    threshold: float
    report: dict = field(default_factory=dict)


def _map(function, jobs: list, workers: int) -> np.ndarray:
    return np.stack(pool_map(function, jobs, workers))


def negatives(count_per_kind: int, seed: int, part_paths: list[str], workers: int, reference: str,
              shifted_share: float = 0.5):
    """(inputs, kinds) of made negatives, `count_per_kind` of each kind, prepared by the intensity reference."""
    jobs = []
    for k, kind in enumerate(KINDS):
        for i in range(count_per_kind):
            chosen = [part_paths[(i * 4 + j) % len(part_paths)] for j in range(4)] if kind == "brain_part" else []
            jobs.append((kind, reference, (seed, k, i), i < shifted_share * count_per_kind, chosen))
    return _map(gate_negative, jobs, workers), np.array([job[0] for job in jobs])


def refusal_threshold(real_scores: np.ndarray, made_scores: np.ndarray) -> float:
    """The learned check's bar (a score below it is refused): as low as still refusing MIN_REFUSED of the made
    negatives allows, and never above the score under which MAX_FALSE_REJECTION of real slices fall."""
    return min(float(np.quantile(real_scores, MAX_FALSE_REJECTION)), float(np.quantile(made_scores, MIN_REFUSED)))


def build_gate_network() -> keras.Model:
    """(64, 64, 2) -> probability that the image is a whole brain MRI slice."""
    image = keras.Input((GATE_SIZE, GATE_SIZE, 2), name="gate_input")
    x = image
    for index, (width, stride) in enumerate(((16, 2), (32, 1), (48, 1), (64, 1))):
        x = layers.Conv2D(width, 3, strides=stride, padding="same", use_bias=False, name=f"gate_conv{index}")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"gate_bn{index}")(x)  # few steps in small runs
        x = layers.ReLU(name=f"gate_relu{index}")(x)
        if index in (1, 2):
            x = layers.MaxPooling2D(name=f"gate_pool{index}")(x)
    x = layers.GlobalAveragePooling2D(name="gate_gap")(x)
    probability = layers.Dense(1, activation="sigmoid", name="gate_probability")(x)
    return keras.Model(image, probability, name="brainscan_gate")


def fit_gate(dataset: Dataset, train: np.ndarray, validation: np.ndarray, test: np.ndarray, seed: int = 0,
             epochs: int = 12, negatives_per_kind: int = NEGATIVES_PER_KIND, workers: int = 0,
             verbose: int = 1) -> GateFit:
    """Train the learned check, choose its threshold on validation, measure it on test."""
    started = time.perf_counter()
    rng = np.random.default_rng([seed, 11])
    chosen = rng.choice(train, min(POSITIVES, len(train)), replace=False)
    positives = _map(gate_positive, [(dataset.samples[i], dataset.reference, (seed, 12, int(i)), k % 2 == 0)
                                      for k, i in enumerate(chosen)], workers)
    part_paths = [dataset.paths[i] for i in rng.choice(train, min(PART_SLICES, len(train)), replace=False)]
    made, _ = negatives(negatives_per_kind, seed, part_paths, workers, dataset.reference)
    x = np.concatenate([positives, made])
    y = np.concatenate([np.ones(len(positives)), np.zeros(len(made))]).astype("float32")
    keras.utils.set_random_seed(seed)
    network = build_gate_network()
    network.compile(optimizer=keras.optimizers.Adam(2e-3), loss="binary_crossentropy")
    network.fit(x, y, batch_size=64, epochs=epochs, shuffle=True, verbose=2 if verbose else 0,
                class_weight={0: len(y) / (2 * (y == 0).sum()), 1: len(y) / (2 * (y == 1).sum())})

    def real_scores(index: np.ndarray) -> np.ndarray:
        inputs = _map(gate_positive, [(dataset.samples[i], dataset.reference, (0,), False) for i in index], workers)
        return network.predict(inputs, batch_size=256, verbose=0).reshape(-1)

    validation_real = real_scores(validation)
    validation_made, validation_kinds = negatives(max(1, negatives_per_kind // 3), seed + 1, part_paths, workers,
                                                  dataset.reference)
    made_scores = network.predict(validation_made, batch_size=256, verbose=0).reshape(-1)
    threshold = refusal_threshold(validation_real, made_scores)
    test_real = real_scores(test)
    test_made, test_kinds = negatives(max(1, negatives_per_kind // 3), seed + 2, part_paths, workers,
                                      dataset.reference)

    def refused(inputs: np.ndarray, kinds: np.ndarray) -> dict:
        scores = network.predict(inputs, batch_size=256, verbose=0).reshape(-1)
        return {"all": float((scores < threshold).mean()),
                **{str(kind): float((scores[kinds == kind] < threshold).mean()) for kind in KINDS}}

    report = {
        "threshold": threshold,
        "threshold_rationale": f"the lower of the {MAX_FALSE_REJECTION:.1%} quantile of the learned check's score on "
                               f"clean validation slices (at most that share of real slices refused) and the "
                               f"{MIN_REFUSED:.0%} quantile of its score on the validation's made negatives (that "
                               "share of them still refused)",
        "training": {"positives": int(len(positives)),
                     "positives_shifted": int((np.arange(len(chosen)) % 2 == 0).sum()),
                     "negatives": int(len(made)), "negatives_per_kind": negatives_per_kind, "kinds": list(KINDS),
                     "epochs": epochs, "seconds": round(time.perf_counter() - started, 1)},
        "validation": {"real_slices": int(len(validation)),
                       "learned_check_false_rejection": float((validation_real < threshold).mean()),
                       "made_negatives_refused": refused(validation_made, validation_kinds)},
        "test": {"real_slices": int(len(test)),
                 "learned_check_false_rejection": float((test_real < threshold).mean()),
                 "made_negatives_refused": refused(test_made, test_kinds)},
        "reserved_for_testing": "scikit-image's and pydicom's bundled sample images (never used in training or "
                                "in choosing the threshold); measured by benchmarks.gate",
    }
    return GateFit(network, threshold, report)
