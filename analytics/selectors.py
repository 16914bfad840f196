"""Reads for the analytics pages: stored builds, model cards, and cheap live aggregates.

Monitoring counts only the studies the user may see (`diagnosis.selectors.studies_for`): an
administrator sees the whole department, a clinician the patients of their care teams.
"""

from __future__ import annotations

import json
import logging
import random
from datetime import datetime, timedelta
from datetime import time as clock

from django.db.models import Count, Q
from django.db.models.functions import TruncDate
from django.utils import timezone

from analytics import charts
from analytics.models import DatasetStudy, LearningCurve
from diagnosis import selectors as diagnosis_selectors
from diagnosis.inference import ModelUnavailable, registry, serving_version
from diagnosis.models import Prediction, Reading, Study
from ml.features import FEATURE_DESCRIPTIONS
from ml.registry import EXTERNAL_FOLDER, ModelVersion, RegistryError

log = logging.getLogger(__name__)
# The folder `train_model --leave-out-institution` writes fold files to, inside the registry (EXTERNAL_FOLDER of
# diagnosis/management/commands/train_model.py; importing that module would load TensorFlow into the web process).
MONTAGE_SIZE = 12
MONITORING_WINDOWS = (7, 30, 90, 365)
DEFAULT_WINDOW = 30
HISTOGRAM_BINS = 10
TUMOR, NO_TUMOR = "tumor", "no_tumor"


# --- Dataset study ------------------------------------------------------------------------------

def latest_dataset_study() -> DatasetStudy | None:
    return DatasetStudy.objects.order_by("-created_at", "-id").first()


def montage(study: DatasetStudy, shuffle: int | None, size: int = MONTAGE_SIZE) -> dict[str, dict]:
    """Per label, the images shown (the first of the stored pool, or a seeded random subset) and the pool."""
    shown = {}
    for label, pool in study.numbers["montage"].items():
        chosen = pool[:size] if shuffle is None else random.Random(f"{shuffle}-{label}").sample(pool, min(size,
                                                                                                           len(pool)))
        shown[label] = {"shown": chosen, "pool": pool}
    return shown


def feature_importance(card: dict) -> dict | None:
    """The feature model's importance from a card, as bars, with each feature's description."""
    importance = (card.get("feature_model") or {}).get("importance")
    if not importance:
        return None
    bars = charts.share_bars(importance)
    for bar in bars:
        bar["description"] = FEATURE_DESCRIPTIONS.get(bar["name"], "")
    test = (card.get("feature_model") or {}).get("test", {})
    return {"bars": bars, "version": card.get("version", ""), "test_auc": test.get("auc")}


# --- Model versions and their reports -------------------------------------------------------------

def model_versions() -> list[str]:
    return [version.name for version in registry().versions()]


def active_version_name() -> str | None:
    try:
        return serving_version().name
    except ModelUnavailable:
        return None


def model_version(name: str) -> ModelVersion | None:
    try:
        return registry().get(name)
    except RegistryError:
        return None


def model_card(name: str) -> dict:
    return diagnosis_selectors.model_card(name)


def external_fold_reports(card: dict) -> dict[str, dict]:
    """The external validation folds of the card's recipe, read from their files on every call: folds finish
    after the release is trained, so a fold written since must show without rebuilding anything."""
    fingerprint = (card.get("hyperparameters") or {}).get("recipe_fingerprint")
    if not fingerprint:
        return {}
    reports = {}
    for path in sorted((registry().root / EXTERNAL_FOLDER).glob(f"{fingerprint}-*.json")):
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError) as error:  # a fold being written right now: it shows once it is complete
            log.warning("Skipped external validation file %s: %s", path.name, error)
            continue
        reports[report.get("institution") or path.stem.removeprefix(f"{fingerprint}-")] = report
    return reports


def latest_learning_curve(name: str) -> LearningCurve | None:
    return LearningCurve.objects.filter(model_version=name).order_by("-created_at", "-id").first()


# --- Live monitoring --------------------------------------------------------------------------------

def _window_start(days: int, now: datetime) -> tuple[datetime, list]:
    today = timezone.localdate(now)
    first = today - timedelta(days=days - 1)
    return timezone.make_aware(datetime.combine(first, clock.min)), [first + timedelta(days=d) for d in range(days)]


def monitoring(user, days: int = DEFAULT_WINDOW, threshold: float | None = None, now: datetime | None = None) -> dict:
    """Studies per day, share predicted positive, probability histogram, and model-clinician agreement."""
    since, calendar = _window_start(days, now or timezone.now())
    studies = diagnosis_selectors.studies_for(user).filter(created_at__gte=since)
    completed = Q(status=Study.Status.COMPLETED)
    positive = completed & Q(label=TUMOR)
    totals = studies.aggregate(
        total=Count("pk"), completed=Count("pk", filter=completed), positive=Count("pk", filter=positive),
        failed=Count("pk", filter=Q(status=Study.Status.FAILED)),
        unassessable=Count("pk", filter=Q(status=Study.Status.UNASSESSABLE)),
        waiting=Count("pk", filter=Q(status__in=Study.ACTIVE_STATES)))
    per_day = {row["day"]: row for row in studies.annotate(day=TruncDate("created_at")).values("day").annotate(
        total=Count("pk"), positive=Count("pk", filter=positive)).order_by("day")}
    # Images the quality gate refused, by the day they were assessed: a sudden rise means a new scanner, a
    # changed protocol or a broken feed sending something that is not a brain MRI slice.
    assessed = Prediction.objects.filter(image__study__in=studies.values("pk"))
    gate_per_day = {row["day"]: row for row in assessed.annotate(day=TruncDate("created_at")).values("day").annotate(
        images=Count("pk"), rejected=Count("pk", filter=Q(quality=Prediction.Quality.REJECTED)))}
    day_rows = [{"day": day, "total": per_day.get(day, {}).get("total", 0),
                 "positive": per_day.get(day, {}).get("positive", 0),
                 "images": gate_per_day.get(day, {}).get("images", 0),
                 "rejected": gate_per_day.get(day, {}).get("rejected", 0)} for day in calendar]
    reasons = list(assessed.filter(quality=Prediction.Quality.REJECTED).values("quality_code")
                   .annotate(n=Count("pk")).order_by("-n", "quality_code"))

    edges = [i / HISTOGRAM_BINS for i in range(HISTOGRAM_BINS + 1)]
    bins = studies.filter(completed, probability__isnull=False).aggregate(**{
        f"bin{i}": Count("pk", filter=Q(probability__gte=edges[i]) & (
            Q(probability__lt=edges[i + 1]) if i < HISTOGRAM_BINS - 1 else Q(probability__lte=1.0)))
        for i in range(HISTOGRAM_BINS)})
    histogram = [{"low": edges[i], "high": edges[i + 1], "count": bins[f"bin{i}"]} for i in range(HISTOGRAM_BINS)]

    readings = Reading.objects.filter(study__in=studies.values("pk"))
    cells = list(readings.values("study__label", "finding", "agrees_with_model").annotate(n=Count("pk")))
    versions = list(assessed.values("model_version").annotate(
        studies=Count("image__study", distinct=True), images=Count("pk"),
        positive_images=Count("pk", filter=Q(label=TUMOR, quality=Prediction.Quality.OK)),
        rejected_images=Count("pk", filter=Q(quality=Prediction.Quality.REJECTED))).order_by("-studies",
                                                                                             "model_version"))
    return {
        "days": days, "since": since, "totals": totals,
        "positive_share": totals["positive"] / totals["completed"] if totals["completed"] else None,
        "per_day": day_rows,
        "per_day_chart": charts.column_chart([(row["day"].strftime("%d %b"), row["total"], row["positive"])
                                              for row in day_rows], label_every=max(1, days // 10)),
        "histogram": histogram, "threshold": threshold,
        "histogram_chart": charts.column_chart([(f"{b['low']:.1f}", b["count"], 0) for b in histogram],
                                               marker=threshold),
        "agreement": _agreement(cells),
        "versions": versions,
        "gate": {"images": sum(row["images"] for row in gate_per_day.values()),
                 "rejected": sum(row["rejected"] for row in gate_per_day.values()), "reasons": reasons,
                 "per_day_chart": charts.column_chart([(row["day"].strftime("%d %b"), row["images"], row["rejected"])
                                                       for row in day_rows], label_every=max(1, days // 10))},
    }


def _agreement(cells: list[dict]) -> dict:
    """Clinicians' readings against the model's study label: agreement rate and a model x clinician table."""
    total = sum(cell["n"] for cell in cells)
    agrees = sum(cell["n"] for cell in cells if cell["agrees_with_model"])
    findings = [choice for choice, _ in Reading.Finding.choices]
    table = []
    for model_label, name in ((TUMOR, "Model: tumor suspected"), (NO_TUMOR, "Model: no tumor found")):
        counts = [sum(c["n"] for c in cells if c["study__label"] == model_label and c["finding"] == finding)
                  for finding in findings]
        table.append({"name": name, "counts": counts})
    return {
        "readings": total, "agrees": agrees, "rate": agrees / total if total else None,
        "columns": [label for _, label in Reading.Finding.choices], "table": table,
        # The disagreement that matters most: the clinician saw a tumor the model called clear.
        "missed_by_model": sum(c["n"] for c in cells if c["study__label"] == NO_TUMOR and c["finding"] == TUMOR),
    }
