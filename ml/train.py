"""Train the CNN on a grouped split and describe the result in a model card."""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from ml import evaluate  # noqa: E402
from ml.augment import build_augmentation  # noqa: E402
from ml.data import Dataset  # noqa: E402
from ml.dedup import Split, duplicate_report, grouped_split, near_duplicate_groups  # noqa: E402
from ml.model import DEFAULT_FILTERS, build_classifier, build_serving_model  # noqa: E402


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 40
    batch_size: int = 32
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    dropout: float = 0.3
    filters: tuple[int, ...] = DEFAULT_FILTERS
    augment: bool = True
    patience: int = 10
    seed: int = 0
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    target_sensitivity: float = evaluate.TARGET_SENSITIVITY
    # Networks trained from different seeds and averaged: less variance on unseen scanners.
    ensemble: int = 2

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FitResult:
    classifier: keras.Model
    history: list[dict]
    best_epoch: int
    seconds: float


@dataclass
class Experiment:
    """Trained networks, the serving graph that averages them, its threshold and test figures."""

    fits: list[FitResult]
    serving: keras.Model
    threshold: float
    threshold_rationale: str
    validation: dict
    test: dict
    test_scores: np.ndarray = field(repr=False)

    @property
    def seconds(self) -> float:
        return sum(result.seconds for result in self.fits)


def make_split(dataset: Dataset, config: TrainConfig) -> tuple[np.ndarray, Split, dict]:
    groups = near_duplicate_groups(dataset.thumbnails)
    split = grouped_split(dataset.labels, groups, config.split_fractions, seed=config.seed)
    return groups, split, duplicate_report(groups)


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """Weights that make both classes count equally in the loss."""
    counts = np.bincount(labels.astype(int), minlength=2)
    return {k: float(len(labels) / (2 * counts[k])) if counts[k] else 1.0 for k in (0, 1)}


def fit(dataset: Dataset, train_index: np.ndarray, validation_index: np.ndarray, config: TrainConfig,
        verbose: int = 1) -> FitResult:
    """Train from scratch with early stopping on validation AUC, keeping the best epoch."""
    keras.utils.set_random_seed(config.seed)
    classifier = build_classifier(dataset.images.shape[1], config.filters, config.dropout)
    inputs = keras.Input(classifier.input_shape[1:])
    x = build_augmentation(config.seed)(inputs) if config.augment else inputs
    trainer = keras.Model(inputs, classifier(x), name="trainer")
    steps = int(np.ceil(len(train_index) / config.batch_size)) * config.epochs
    trainer.compile(
        optimizer=keras.optimizers.AdamW(
            keras.optimizers.schedules.CosineDecay(config.learning_rate, steps, alpha=0.02),
            weight_decay=config.weight_decay,
        ),
        loss=keras.losses.BinaryCrossentropy(),
        metrics=[keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")],
    )
    stop = keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", patience=config.patience,
                                         restore_best_weights=True)
    started = time.perf_counter()
    history = trainer.fit(
        dataset.images[train_index], dataset.labels[train_index].astype("float32"),
        validation_data=(dataset.images[validation_index], dataset.labels[validation_index].astype("float32")),
        batch_size=config.batch_size, epochs=config.epochs, shuffle=True,
        class_weight=class_weights(dataset.labels[train_index]), callbacks=[stop], verbose=verbose,
    )
    seconds = time.perf_counter() - started
    per_epoch = [
        {key: float(values[epoch]) for key, values in history.history.items()}
        for epoch in range(len(history.history["loss"]))
    ]
    best_epoch = int(np.argmax([row["val_auc"] for row in per_epoch])) + 1
    return FitResult(classifier=classifier, history=per_epoch, best_epoch=best_epoch, seconds=seconds)


def predict_scores(serving: keras.Model, images: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """Probabilities exactly as the served graph computes them."""
    return np.concatenate([
        np.asarray(serving(images[start:start + batch_size], training=False)[0]).reshape(-1)
        for start in range(0, len(images), batch_size)
    ])


def run_experiment(dataset: Dataset, split: Split, config: TrainConfig, verbose: int = 1) -> Experiment:
    """Fit `config.ensemble` networks (seeds seed, seed+1, ...), choose the threshold of their
    serving graph on validation, and measure it on the untouched test split."""
    fits = [fit(dataset, split.train, split.validation, dataclasses.replace(config, seed=config.seed + k),
                verbose=verbose) for k in range(config.ensemble)]
    serving = build_serving_model([result.classifier for result in fits])
    validation_scores = predict_scores(serving, dataset.images[split.validation])
    threshold, rationale = evaluate.choose_threshold(
        dataset.labels[split.validation], validation_scores, config.target_sensitivity
    )
    test_scores = predict_scores(serving, dataset.images[split.test])
    return Experiment(
        fits=fits, serving=serving, threshold=threshold, threshold_rationale=rationale,
        validation=evaluate.metrics(dataset.labels[split.validation], validation_scores, threshold, config.seed),
        test=evaluate.metrics(dataset.labels[split.test], test_scores, threshold, config.seed),
        test_scores=test_scores,
    )


def novel_test_index(dataset: Dataset, split: Split, below: float = 0.95) -> np.ndarray:
    """Test images whose most similar training thumbnail is under `below` cosine similarity.

    A stricter view than the grouped split: even distant relatives in training are excluded.
    """
    unit = dataset.thumbnails / np.linalg.norm(dataset.thumbnails, axis=1, keepdims=True)
    closest = (unit[split.test] @ unit[split.train].T).max(axis=1)
    return split.test[closest < below]
