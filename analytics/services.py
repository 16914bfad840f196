"""The analytics builds: heavy work done once by a command (or once per model card), stored for pages.

Each build computes its numbers, draws its figures with `analytics.plots`, saves the images through
Django's storage under ANALYTICS_DIR and then writes one row; if anything fails, the files it had
stored are removed again and no row is written.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import secrets
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from analytics import dataset_study, model_report, plots, storage
from analytics.models import DatasetStudy, LearningCurve, ModelReport
from ml.data import NO_TUMOR_CLASSES, TUMOR_CLASSES, collection_name, find_samples, load_dataset
from ml.features import FEATURE_NAMES, feature_matrix
from ml.imaging import encode_png
from ml.preprocess import IMAGE_SIZE
from ml.registry import CARD, ModelVersion

log = logging.getLogger(__name__)
FEATURE_CHUNK = 64


class AnalyticsError(ValueError):
    """The build cannot run on this input; the message says why and what to do."""


def _progress(iterable, enabled: bool, **kwargs):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, **kwargs)


def _figure_entry(name: str, plot: plots.Plot) -> dict:
    return {"name": name, "title": plot.title, "alt": plot.alt}


def _cache_dir() -> Path:
    return settings.VAR_DIR / "cache"


def require_both_labels(data_dir: Path) -> None:
    """Fail early, before decoding anything, when the folder cannot give a tumor vs no-tumor comparison."""
    try:
        samples = find_samples(data_dir)
    except FileNotFoundError as error:
        raise AnalyticsError(str(error)) from None
    folders = (f"tumor: {', '.join(sorted(TUMOR_CLASSES))}; no tumor: {', '.join(sorted(NO_TUMOR_CLASSES))}")
    if not samples:
        raise AnalyticsError(f"No labelled images found under {data_dir}. Put JPEG or PNG files in subfolders named "
                             f"by class ({folders}); a Training/ or Testing/ level above them is understood.")
    present = {sample.label for sample in samples}
    if len(present) < 2:
        found = "tumor" if 1 in present else "no-tumor"
        missing = "no-tumor" if 1 in present else "tumor"
        subfolders = sorted({sample.subtype for sample in samples})
        raise AnalyticsError(f"Only {found} images were found under {data_dir} ({len(samples)} in "
                             f"{', '.join(subfolders)}). The study compares tumor with no-tumor images, so it needs "
                             f"{missing} images as well, in a subfolder named by class ({folders}).")


def build_dataset_study(data_dir: str | Path, *, seed: int | None = None, progress: bool = False) -> DatasetStudy:
    """Load DIR with the model's loader and preprocessing, compute the study and store it."""
    started = time.perf_counter()
    data_dir = Path(data_dir)
    require_both_labels(data_dir)
    try:
        dataset = load_dataset(data_dir, IMAGE_SIZE, cache_dir=_cache_dir(), progress=progress)
    except (ValueError, FileNotFoundError) as error:
        raise AnalyticsError(str(error)) from None
    if len(np.unique(dataset.labels)) < 2:
        raise AnalyticsError(f"After skipping {len(dataset.skipped)} unreadable file(s), only one label is left.")
    seed = secrets.randbelow(2**31) if seed is None else seed
    labels = np.asarray(dataset.labels)

    modes = dataset_study.image_modes(_progress(dataset.paths, progress, desc="Reading modes", unit="img"))
    chunks = range(0, len(dataset), FEATURE_CHUNK)
    features = np.concatenate([feature_matrix(dataset.images[start:start + FEATURE_CHUNK])
                               for start in _progress(chunks, progress, desc="Texture features", unit="chunk")])
    duplicates, examples = dataset_study.duplicates(dataset, data_dir)
    groups = dataset_study.groups_of(dataset)
    statistics = {group.key: dataset_study.mean_and_std(dataset.images, group.index)
                  for group in _progress(groups, progress, desc="Averages", unit="group")}
    pool = dataset_study.montage_pool(labels, seed)
    inventory = dataset_study.inventory(dataset, modes)

    folder = storage.new_folder("dataset")
    with storage.files() as put:
        std_max = max(float(std.max()) for _, std in statistics.values()) or 1.0
        group_rows = []
        for group in _progress(groups, progress, desc="Drawing figures", unit="figure"):
            mean, std = statistics[group.key]
            plot = plots.average_and_variability(mean, std, group.name, len(group.index), std_max)
            group_rows.append({"key": group.key, "name": group.name, "label": group.label,
                               "images": int(len(group.index)), "is_label": group.key.startswith("label-"),
                               "figure": _figure_entry(put(f"{folder}/average-{group.key}.png", plot.png), plot)})
        no_tumor_mean = statistics["label-no_tumor"][0]
        difference = plots.differences({"Tumor": statistics["label-tumor"][0] - no_tumor_mean},
                                       "Average tumor minus average no-tumor image", "no tumor")
        subtype_panels = {g.name: statistics[g.key][0] - no_tumor_mean for g in groups
                          if g.label == "tumor" and g.key.startswith("subtype-")}
        by_subtype = (plots.differences(subtype_panels, "Each tumor subtype minus the average no-tumor image",
                                        "no tumor") if subtype_panels else None)
        balance = plots.class_balance([(row["name"], row["label"], row["images"]) for row in inventory["by_subtype"]])
        feature_plot = plots.feature_distributions(features, labels, FEATURE_NAMES)
        arrays = io.BytesIO()
        np.savez_compressed(arrays, **{f"{kind}_{key}": values[position] for key, values in statistics.items()
                                       for position, kind in enumerate(("mean", "std"))})

        def stored_image(index: int, kind: str) -> dict:
            name = put(f"{folder}/{kind}/{index:05d}.png", encode_png(dataset.images[index, ..., 0]))
            return {"name": name, "subtype": dataset.subtypes[index], "label": dataset_study.LABEL_NAMES[labels[index]]}

        numbers = {
            "seed": seed,
            "preprocessing": {"image_size": IMAGE_SIZE, "loader": "ml.data.load_dataset",
                              "intensity_reference": dataset.reference,
                              "steps": "grayscale, crop to the head, resize to 128×128, scale brightness to 0-1"},
            "inventory": inventory,
            "groups": group_rows,
            "difference": _figure_entry(put(f"{folder}/difference.png", difference.png), difference),
            "difference_by_subtype": (_figure_entry(put(f"{folder}/difference-subtypes.png", by_subtype.png),
                                                    by_subtype) if by_subtype else None),
            "class_balance": _figure_entry(put(f"{folder}/class-balance.png", balance.png), balance),
            "features": {"rows": dataset_study.feature_summary(features, labels),
                         "figure": _figure_entry(put(f"{folder}/features.png", feature_plot.png), feature_plot)},
            "duplicates": {**duplicates, "examples": [[stored_image(i, "duplicates") for i in members]
                                                      for members in examples]},
            "montage": {label: [stored_image(i, "montage") for i in index] for label, index in pool.items()},
            "arrays": put(f"{folder}/averages.npz", arrays.getvalue()),
        }
        return DatasetStudy.objects.create(source=data_dir.name, images=len(dataset), numbers=numbers,
                                           seconds=round(time.perf_counter() - started, 1))


# Part of every report's key: raise it when build_plots changes what it draws, so stored reports are drawn again.
REPORT_FORMAT = 2


def _report_key(card_bytes: bytes) -> str:
    return hashlib.sha256(f"report-format-{REPORT_FORMAT}\n".encode() + card_bytes).hexdigest()


def card_digest(version: ModelVersion) -> str:
    """The key of a version's report: the sha256 of its card and the report format. Computed on every call, as
    `complete_model` amends cards in place."""
    return _report_key((version.path / CARD).read_bytes())


REPORT_STALE_AFTER = timedelta(minutes=10)  # a build asked for this long ago and not done is asked for again


def _needs_build(report: ModelReport) -> bool:
    return report.status == ModelReport.Status.PREPARING and report.requested_at < timezone.now() - REPORT_STALE_AFTER


def request_model_report(version: ModelVersion) -> ModelReport:
    """The version's report, asking a worker to build it when there is none yet (or its build went silent).

    Cheap and safe to call from a web request: one query when the report exists; otherwise it writes one row and
    sends one task after commit.
    """
    from analytics.tasks import build_model_report_task

    digest = card_digest(version)
    report = ModelReport.objects.filter(version=version.name, card_digest=digest).first()
    if report is not None and not _needs_build(report):
        return report
    with transaction.atomic():
        report, created = ModelReport.objects.get_or_create(version=version.name, card_digest=digest)
        if created or _needs_build(report):
            ModelReport.objects.filter(pk=report.pk).update(requested_at=timezone.now())
            transaction.on_commit(lambda: _send(build_model_report_task, version.name))
    return report


def _send(task, *args) -> None:
    try:
        task.apply_async(args=list(args), retry=False)
    except Exception as error:  # the broker is down: the next request asks again once the row is stale
        log.warning("Could not send %s (%s)", task.name, type(error).__name__)


def build_model_report(version: ModelVersion) -> ModelReport:
    """Draw the report's figures from the card and time the serving path (runs in a worker)."""
    card_bytes = (version.path / CARD).read_bytes()  # once: the card and its key must be of the same version
    card, digest = json.loads(card_bytes), _report_key(card_bytes)
    report, _ = ModelReport.objects.get_or_create(version=version.name, card_digest=digest)
    try:
        figures = model_report.build_plots(card)
    except Exception as error:
        ModelReport.objects.filter(pk=report.pk).update(status=ModelReport.Status.FAILED,
                                                        error=f"{type(error).__name__}: {error}")
        raise
    try:
        inference = model_report.measure_inference(version, threads=settings.INFERENCE_THREADS)
    except Exception as error:  # noqa: BLE001 - a model that cannot load still deserves its report
        log.warning("Could not time inference of %s: %s", version.name, error)
        inference = {"error": f"The serving model could not be run here: {error}"}
    folder = f"models/{version.name}/{digest[:12]}"
    with storage.files() as put:
        entries = {key: _figure_entry(put(f"{folder}/{key}.png", plot.png), plot) for key, plot in figures.items()}
        ModelReport.objects.filter(pk=report.pk).update(figures=entries, inference=inference, error="",
                                                        status=ModelReport.Status.READY, created_at=timezone.now())
    report.refresh_from_db()
    return report


def build_learning_curve(data_dirs: list[str | Path], version: ModelVersion, *, epochs: int | None = None,
                         fractions=None, any_data: bool = False, progress: bool = False) -> LearningCurve:
    """Retrain the version's network on 10/25/50/100% of its own grouped train split; test on its test split.

    `data_dirs` are the collections the version was trained on, in the order they were given to `train_model`.
    """
    from ml.learning_curve import FRACTIONS, learning_curve
    from ml.train import TrainConfig, make_split

    started = time.perf_counter()
    roots = [Path(d) for d in data_dirs]
    for root in roots:
        require_both_labels(root)
    card = version.card
    config = TrainConfig.from_card(card, **({} if epochs is None else {"epochs": epochs}))
    try:
        dataset = load_dataset(roots, int(card["hyperparameters"]["image_size"]), cache_dir=_cache_dir(),
                               progress=progress, reference=config.intensity_reference)
    except (ValueError, FileNotFoundError) as error:
        raise AnalyticsError(str(error)) from None
    _, split, _ = make_split(dataset, config)
    test_files = {collection_name(dataset, i, roots) for i in split.test}
    matches = test_files == set(card.get("split", {}).get("test_files", []))
    if not matches and not any_data:
        raise AnalyticsError(
            f"The data given ({', '.join(str(root) for root in roots)}) does not reproduce the test split recorded "
            f"in the card of {version.name}: it is not the data that model was trained on, the collections are in "
            "another order, or the files changed. Point --data at those collections, in the order they were trained "
            "on, or pass --any-data to compute the curve on this data's own grouped split.")
    fractions = tuple(fractions or FRACTIONS)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(fractions), desc="Training on shares of the train split", unit="model")
    points = learning_curve(dataset, split, config, fractions, on_point=(lambda point: bar.update()) if bar else None)
    if bar:
        bar.close()
    plot = plots.data_learning_curve(points)
    with storage.files() as put:
        name = put(f"{storage.new_folder('learning-curve')}/{version.name}.png", plot.png)
        return LearningCurve.objects.create(
            model_version=version.name, source=", ".join(root.name for root in roots), matches_model_split=matches,
            epochs=config.epochs, seconds=round(time.perf_counter() - started, 1), points=points,
            figure=_figure_entry(name, plot))
