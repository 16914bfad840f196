"""Train the network on grouped splits of one or more collections.

    groups (patients, near-duplicates) -> split (train / validation / test, no group on two sides)
    -> augmented copies of the training slices (ml.augment, then the one preprocess) -> fit: the
    slice logit against the label, the map's cells against the tumor mask where it is known ->
    keep the epoch with the best validation AUC (mean over collections) -> temperature fitted on
    validation -> threshold chosen on validation

Nothing here looks at the test split; ml.pipeline measures it once, at the end.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field, fields
from typing import ClassVar

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from ml import calibration, evaluate  # noqa: E402
from ml.augment import empty_slice  # noqa: E402
from ml.data import Dataset  # noqa: E402
from ml.examples import augmented_example, pool_map  # noqa: E402
from ml.dedup import Split, duplicate_report, grouped_split, near_duplicate_groups  # noqa: E402
from ml.model import DECODER_WIDTH, DEFAULT_WIDTHS, SHARPNESS, build_network, build_serving_model, build_trainer  # noqa: E402
from ml.preprocess import INTENSITY_REFERENCE, UNRECORDED_REFERENCE, recorded_reference  # noqa: E402

POSITIVE_CELL_WEIGHT = 4.0  # tumor cells are few: each counts this much more than a normal one
LEVEL_TOLERANCE = 0.05  # of the head's share of the slice, between a lesion's donor and its recipient
EMPTY_SHARE = 0.02  # images with no head (blank, uniform, noise), taught as no tumor


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 2e-3
    # 0.05 and 0.25 beat 1e-4 and 0.1 on validation AUC (docs/model.md, "How this recipe was chosen")
    weight_decay: float = 0.05
    dropout: float = 0.25
    widths: tuple[int, ...] = DEFAULT_WIDTHS
    decoder_width: int = DECODER_WIDTH
    sharpness: float = SHARPNESS
    # Of the map's loss against the slice's: 3 beat 1 on validation AUC (8-epoch pilots), 6 tied 3 over two seeds.
    cell_weight: float = 3.0
    augment: bool = True
    variants: int = 6  # augmented copies of each training slice, one per epoch in turn
    patience: int = 8
    seed: int = 0
    # Draws the split when set, leaving `seed` to the training's own draws (weights, augmentation, batches),
    # so that a recipe can be trained again on the very same split to see what the seed alone moves.
    split_seed: int | None = None
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    target_sensitivity: float = evaluate.TARGET_SENSITIVITY
    gate_epochs: int = 12
    gate_negatives_per_kind: int = 750  # of the quality gate's made negatives (ml.gate_training)
    workers: int = 0  # processes preparing augmented copies (0: one per core)
    # The whole head beat its interior on validation, by less than the training seed alone moves it
    # (docs/model.md, "How this recipe was chosen").
    intensity_reference: str = INTENSITY_REFERENCE
    # Momentum of an exponential moving average of the weights; each epoch validates the average, and the
    # kept epoch's average is what is served. 0 trains without one: 0.999 tied the raw weights over two seeds,
    # though its criterion wobbled half as much from epoch to epoch.
    weight_average: float = 0.0
    # Share of the training's no-tumor slices with a known mask (TCGA-LGG) that receive, in each augmented copy,
    # a lesion transplanted from another patient's slice of the same sequence (ml.augment.transplant).
    transplant: float = 0.0

    # Settings added after recipes were fingerprinted, with the value those recipes had: the fingerprint names
    # them only when they differ, so a new setting leaves the fingerprints of committed folds as they were.
    LATER_SETTINGS: ClassVar[dict] = {"split_seed": None, "intensity_reference": UNRECORDED_REFERENCE,
                                      "weight_average": 0.0, "transplant": 0.0}
    # What a fold may change without becoming another recipe.
    NOT_RECIPE: ClassVar[tuple] = ("epochs", "patience", "workers")

    def to_dict(self) -> dict:
        return asdict(self)

    def recipe_settings(self) -> dict:
        """The settings a recipe's fingerprint hashes."""
        unset = object()
        return {key: value for key, value in self.to_dict().items()
                if key not in self.NOT_RECIPE and value != self.LATER_SETTINGS.get(key, unset)}

    @classmethod
    def from_card(cls, card: dict, **changes) -> "TrainConfig":
        """The recipe a card records. Its hyperparameters also describe the recipe (image size, fingerprint):
        only this class's fields are kept, and lists (JSON has no tuples) become tuples."""
        names = {item.name for item in fields(cls)}
        values = {key: tuple(value) if isinstance(value, list) else value
                  for key, value in card["hyperparameters"].items() if key in names}
        values["intensity_reference"] = recorded_reference(card["hyperparameters"])
        return cls(**{**values, **changes})


@dataclass
class Fit:
    """A trained network with its calibration, threshold and validation scores."""

    network: keras.Model
    serving: keras.Model
    temperature: float
    threshold: float
    threshold_rationale: str
    history: list[dict]
    best_epoch: int
    seconds: float
    validation_scores: np.ndarray = field(repr=False)
    validation_logits: np.ndarray = field(repr=False)


def make_split(dataset: Dataset, config: TrainConfig) -> tuple[np.ndarray, Split, dict]:
    """Groups (patients, near-duplicates), the stratified grouped split and the duplicate report."""
    groups = near_duplicate_groups(dataset.thumbnails, subjects=dataset.column("subject"),
                                   sources=dataset.column("source"))
    # Patients are split by institution (each holds tumor and no-tumor slices); other groups by label.
    strata = np.array([f"{s.source}|{s.institution}" if s.subject else f"{s.source}|{s.label}"
                       for s in dataset.samples], dtype=object)
    seed = config.seed if config.split_seed is None else config.split_seed
    split = grouped_split(dataset.labels, groups, config.split_fractions, seed=seed, strata=strata)
    return groups, split, duplicate_report(groups)


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """Weights that make both classes count equally in the loss."""
    counts = np.bincount(labels.astype(int), minlength=2)
    return {k: float(len(labels) / (2 * counts[k])) if counts[k] else 1.0 for k in (0, 1)}


# --- Augmented copies ------------------------------------------------------------------------------


def augmented_copies(dataset: Dataset, index: np.ndarray, config: TrainConfig, variant: int,
                     size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One augmented copy of each slice in `index`: images (n, size, size, 1), cells (n, m, m), labels (n,)."""
    donors = lesion_donors(dataset, index, config, variant)
    jobs = [(dataset.samples[i], size, dataset.reference, (config.seed, variant, int(i)), donors.get(int(i)))
            for i in index]
    results = pool_map(augmented_example, jobs, config.workers)
    return (np.stack([r[0] for r in results]), np.stack([r[1] for r in results]),
            np.array([r[2] for r in results], np.int8))


def same_level(donor, recipient) -> bool:
    """Whether two slices cut the head at about the same level, judged by the share of the slice the head
    fills (as the collection lists it), so that a lesion is not set into the orbits or the skull base."""
    if donor.listed_head_fraction is None or recipient.listed_head_fraction is None:
        return True
    return abs(donor.listed_head_fraction - recipient.listed_head_fraction) <= LEVEL_TOLERANCE


def lesion_donors(dataset: Dataset, index: np.ndarray, config: TrainConfig, variant: int) -> dict:
    """Recipient row -> donor sample, for the `config.transplant` share of the no-tumor slices in `index` that
    have a mask: the donor is a tumor slice of `index` with a mask, of the same sequence, another patient and
    about the same level of the head."""
    if config.transplant <= 0:
        return {}
    rng = np.random.default_rng([config.seed, variant, 11])
    samples = dataset.samples
    tumors: dict[str, list[int]] = {}
    for i in index:
        if samples[i].label == 1 and samples[i].mask is not None:
            tumors.setdefault(samples[i].sequence, []).append(int(i))
    donors = {}
    for i in index:
        recipient = samples[i]
        if recipient.label != 0 or recipient.mask is None or rng.random() >= config.transplant:
            continue
        candidates = [j for j in tumors.get(recipient.sequence, [])
                      if samples[j].subject != recipient.subject and same_level(samples[j], recipient)]
        if candidates:
            donors[int(i)] = samples[candidates[rng.integers(len(candidates))]]
    return donors


def empty_images(dataset: Dataset, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 7])
    return np.stack([dataset.prepare(empty_slice(rng)).tensor for _ in range(count)]).astype(np.float16)


class Batches(keras.utils.PyDataset):
    """Shuffled batches of one augmented copy per epoch, in turn. A copy's labels are its own: a transplant
    makes a tumor slice of a no-tumor one."""

    def __init__(self, copies: list[tuple[np.ndarray, np.ndarray, np.ndarray]], has_cells: np.ndarray,
                 config: TrainConfig, **kwargs):
        super().__init__(**kwargs)
        self.copies, self.has_cells = copies, has_cells.astype("float32")
        self.slice_weights = [slice_weights(labels) for _, _, labels in copies]
        self.batch_size = config.batch_size
        self.rng = np.random.default_rng(config.seed)
        self.epoch = 0
        self.order = self.rng.permutation(len(has_cells))

    def __len__(self) -> int:
        return int(np.ceil(len(self.has_cells) / self.batch_size))

    def __getitem__(self, batch: int):
        turn = self.epoch % len(self.copies)
        images, cells, labels = self.copies[turn]
        rows = np.sort(self.order[batch * self.batch_size:(batch + 1) * self.batch_size])
        targets = {"logit": labels[rows, None].astype("float32"), "cells": cells[rows, ..., None].astype("float32")}
        weights = {"logit": self.slice_weights[turn][rows], "cells": self.has_cells[rows]}
        return images[rows].astype("float32"), targets, weights

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self.rng.permutation(len(self.has_cells))


def slice_weights(labels: np.ndarray) -> np.ndarray:
    weights = class_weights(labels)
    return np.array([weights[int(label)] for label in labels], "float32")


def cell_loss(target, logits):
    """Binary cross-entropy of each cell against its tumor share, tumor cells weighted up."""
    from keras import ops

    weight = 1.0 + POSITIVE_CELL_WEIGHT * target
    loss = ops.maximum(logits, 0.0) - logits * target + ops.log1p(ops.exp(-ops.abs(logits)))
    return ops.mean(weight * loss, axis=(1, 2, 3))


class KeepBest(keras.callbacks.Callback):
    """Scores validation after each epoch (AUC averaged over collections), keeps the best weights,
    and stops after `patience` epochs without improvement."""

    def __init__(self, network: keras.Model, images: np.ndarray, labels: np.ndarray, sources: np.ndarray,
                 patience: int, verbose: int, sharpness: float = SHARPNESS):
        super().__init__()
        self.network, self.images, self.labels, self.sources = network, images, labels, sources
        self.patience, self.verbose, self.sharpness = patience, verbose, sharpness
        self.best, self.best_epoch, self.best_weights, self.rows = -1.0, 0, None, []

    def on_epoch_end(self, epoch, logs=None):
        logits = slice_logits(self.network, self.images, sharpness=self.sharpness)
        per_source = source_aucs(self.labels, logits, self.sources)
        score = float(np.nanmean(list(per_source.values())))
        row = {key: float(value) for key, value in (logs or {}).items()}
        row.update({"val_auc": score, **{f"val_auc_{name}": value for name, value in per_source.items()}})
        self.rows.append(row)
        if self.verbose:
            print(f"epoch {epoch + 1}: validation AUC {score:.4f} {per_source}", flush=True)
        if score > self.best:
            self.best, self.best_epoch, self.best_weights = score, epoch + 1, self.network.get_weights()
        elif epoch + 1 - self.best_epoch >= self.patience:
            self.model.stop_training = True


def source_aucs(labels: np.ndarray, scores: np.ndarray, sources: np.ndarray) -> dict[str, float]:
    return {str(name): evaluate.auc(labels[sources == name], scores[sources == name])
            for name in sorted(set(sources))}


def slice_logits(network: keras.Model, images: np.ndarray, batch_size: int = 256,
                 sharpness: float = SHARPNESS) -> np.ndarray:
    """The trained (uncalibrated) slice logit of each image."""
    out = []
    for start in range(0, len(images), batch_size):
        cells = np.asarray(network(images[start:start + batch_size].astype("float32"), training=False), np.float64)
        flat = cells.reshape(len(cells), -1) * sharpness
        peak = flat.max(axis=1, keepdims=True)
        out.append((peak[:, 0] + np.log(np.exp(flat - peak).mean(axis=1))) / sharpness)
    return np.concatenate(out)


def fit(dataset: Dataset, split: Split, config: TrainConfig, verbose: int = 1) -> Fit:
    """Train from scratch, keep the best validation epoch, calibrate and choose the threshold."""
    if dataset.reference != config.intensity_reference:
        raise ValueError(f"the dataset was standardised by the {dataset.reference!r} reference, the recipe asks for "
                         f"{config.intensity_reference!r}: load it with load_dataset(..., reference=...)")
    keras.utils.set_random_seed(config.seed)
    size = dataset.images.shape[1]
    train = split.train
    empties = max(1, int(EMPTY_SHARE * len(train)))
    started = time.perf_counter()
    copies = []
    for variant in range(config.variants if config.augment else 1):
        images, cells, labels = (augmented_copies(dataset, train, config, variant, size) if config.augment
                                 else (dataset.images[train].astype(np.float16), dataset.cells[train],
                                       dataset.labels[train]))
        blank = empty_images(dataset, empties, config.seed + variant)
        copies.append((np.concatenate([images, blank]),
                       np.concatenate([cells, np.zeros((empties,) + cells.shape[1:], np.float16)]),
                       np.concatenate([labels, np.zeros(empties, np.int8)])))
        if verbose:
            made = int(labels.sum() - dataset.labels[train].sum())
            print(f"augmented copy {variant + 1}: {time.perf_counter() - started:.0f} s"
                  + (f", {made} lesions transplanted" if config.transplant else ""), flush=True)
    has_cells = np.concatenate([dataset.has_cells[train], np.ones(empties, bool)])
    batches = Batches(copies, has_cells, config)

    network = build_network(size, config.widths, config.decoder_width, config.dropout)
    trainer = build_trainer(network, config.sharpness)
    steps = len(batches) * config.epochs
    trainer.compile(
        optimizer=keras.optimizers.AdamW(
            keras.optimizers.schedules.CosineDecay(config.learning_rate, steps, alpha=0.02),
            weight_decay=config.weight_decay,
            use_ema=config.weight_average > 0, ema_momentum=config.weight_average,
        ),
        loss={"logit": keras.losses.BinaryCrossentropy(from_logits=True), "cells": cell_loss},
        loss_weights={"logit": 1.0, "cells": config.cell_weight},
    )
    validation = split.validation
    keep = KeepBest(network, dataset.images[validation], dataset.labels[validation],
                    dataset.column("source")[validation], config.patience, verbose, config.sharpness)
    # SwapEMAWeights goes first, so that KeepBest validates and keeps the average, not the raw weights.
    average = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if config.weight_average > 0 else []
    trainer.fit(batches, epochs=config.epochs, callbacks=[*average, keep], verbose=2 if verbose else 0)
    network.set_weights(keep.best_weights)
    seconds = time.perf_counter() - started
    return calibrate(network, dataset, split, config, keep.rows, keep.best_epoch, seconds)


def calibrate(network: keras.Model, dataset: Dataset, split: Split, config: TrainConfig, history: list[dict],
              best_epoch: int, seconds: float) -> Fit:
    """Temperature and threshold from validation, and the serving graph that applies them."""
    validation = split.validation
    logits = slice_logits(network, dataset.images[validation], sharpness=config.sharpness)
    labels = dataset.labels[validation]
    temperature = calibration.fit_temperature(labels, logits)
    scores = calibration.sigmoid(logits / temperature)
    threshold, rationale = evaluate.choose_threshold(labels, scores, config.target_sensitivity,
                                                     groups=dataset.column("source")[validation],
                                                     targets=evaluate.COLLECTION_TARGETS)
    serving = build_serving_model(network, temperature, config.sharpness)
    return Fit(network=network, serving=serving, temperature=temperature, threshold=threshold,
               threshold_rationale=rationale, history=history, best_epoch=best_epoch, seconds=seconds,
               validation_scores=scores, validation_logits=logits)


def serve(serving: keras.Model, images: np.ndarray, batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (n,) and evidence maps (n, m, m) exactly as the served graph computes them."""
    probabilities, maps = [], []
    for start in range(0, len(images), batch_size):
        probability, evidence = serving(images[start:start + batch_size].astype("float32"), training=False)
        probabilities.append(np.asarray(probability).reshape(-1))
        maps.append(np.asarray(evidence)[..., 0])
    return np.concatenate(probabilities), np.concatenate(maps)
