"""Reads, with the access rules in one place.

A clinician sees the patients whose care team they belong to, and the studies of those patients;
an administrator (staff) sees everything. Views and API endpoints start from these querysets, so
an object outside them answers 404 rather than confirming that it exists.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import islice

from django.conf import settings
from django.db.models import Case, Count, Exists, F, OuterRef, Prefetch, QuerySet, Value, When
from django.shortcuts import get_object_or_404

from diagnosis.inference import registry
from diagnosis.models import AuditEvent, Consent, Patient, Prediction, Study, StudyImage
from ml.features import FEATURE_DESCRIPTIONS, FEATURE_NAMES
from ml.predictor import TUMOR
from ml.registry import RegistryError

TRIAGE, NEWEST = "triage", "newest"


def is_admin(user) -> bool:
    return bool(user.is_authenticated and user.is_active and user.is_staff)


def patients_for(user) -> QuerySet[Patient]:
    if not user.is_authenticated:
        return Patient.objects.none()
    patients = Patient.objects.all() if is_admin(user) else Patient.objects.filter(care_team=user)
    active_consent = Consent.objects.active(Consent.Scope.AI_ANALYSIS).filter(patient=OuterRef("pk"))
    return patients.annotate(has_consent=Exists(active_consent)).distinct()


def studies_for(user) -> QuerySet[Study]:
    if not user.is_authenticated:
        return Study.objects.none()
    studies = Study.objects.select_related("patient", "submitted_by")
    if is_admin(user):
        return studies
    return studies.filter(patient__in=Patient.objects.filter(care_team=user))


def submission_rejections(study: Study) -> list[dict]:
    """The rejected files recorded with the keyed submission that created the study (services.submit_study)."""
    created = AuditEvent.objects.filter(action=AuditEvent.Action.STUDY_CREATED, object_type="study",
                                        object_id=str(study.pk)).first()
    return created.details.get("rejected", []) if created else []


def images_for(user) -> QuerySet[StudyImage]:
    return StudyImage.objects.filter(study__in=studies_for(user).values("pk"))


def visible_image(user, study_id, image_id) -> StudyImage:
    """An image of a study the user may see (with its study and patient), else Http404: web and API alike."""
    return get_object_or_404(images_for(user).select_related("study__patient"), pk=image_id, study_id=study_id)


def predictions_for(user) -> QuerySet[Prediction]:
    return Prediction.objects.filter(image__in=images_for(user).values("pk"))


def worklist(user, *, mine_only: bool = False, patient_query: str = "", status: str = "", order: str = NEWEST,
             created_after=None, created_before=None) -> QuerySet[Study]:
    """The studies a user works through, filtered: the web worklist, its CSV export and the API list alike.

    `mine_only`: only the studies the user submitted. `patient_query`: part of a patient's code, any case.
    `created_after` is inclusive, `created_before` exclusive. Newest first, or likely positives first
    (triage), with the studies a clinician must read by hand (cannot be assessed) among the positives.
    """
    studies = studies_for(user)
    if mine_only:
        studies = studies.filter(submitted_by=user)
    if patient_query:
        studies = studies.filter(patient__code__icontains=patient_query.strip())
    if status:
        studies = studies.filter(status=status)
    if created_after:
        studies = studies.filter(created_at__gte=created_after)
    if created_before:
        studies = studies.filter(created_at__lt=created_before)
    studies = studies.annotate(image_count=Count("images"))
    if order == TRIAGE:
        # Likely tumors first, then the studies nobody but a clinician can read (the gate refused every
        # image), then the rest by probability; studies without a result yet come last.
        rank = Case(When(label=TUMOR, then=Value(0)), When(status=Study.Status.UNASSESSABLE, then=Value(1)),
                    default=Value(2))
        return studies.order_by(rank, F("probability").desc(nulls_last=True), "-created_at")
    return studies.order_by("-created_at")


def study_with_results(study: Study) -> Study:
    """Refetch a study with its images and their predictions in three queries."""
    return (
        Study.objects.select_related("patient", "submitted_by")
        .prefetch_related(Prefetch("images", queryset=StudyImage.objects.prefetch_related("predictions")))
        .prefetch_related("readings__clinician")
        .get(pk=study.pk)
    )


def slices_with_results(study: Study):
    """The study's slices in order, each with its predictions (one query each for slices and predictions)."""
    return StudyImage.objects.filter(study=study).order_by("position").prefetch_related("predictions")


def progress(study: Study) -> dict:
    """How many of the study's images have a result of any model: a series' live progress."""
    total = study.images.count()
    done = StudyImage.objects.filter(study=study, predictions__isnull=False).distinct().count()
    return {"done": done, "total": total}


def series_view(study: Study, images: list[tuple[StudyImage, Prediction | None]]) -> dict:
    """What the series viewer shows of each slice (in order), the threshold, the suspicious runs and the peak."""
    from django.urls import reverse

    slices = []
    for image, prediction in images:
        usable = prediction is not None and prediction.usable
        slices.append({
            "position": image.position,
            "image_url": reverse("study-image", args=[study.pk, image.pk]),
            "heatmap_url": reverse("study-heatmap", args=[study.pk, image.pk]) if usable else None,
            "probability": prediction.probability if usable else None,
            "label": prediction.label if usable else None,
            "quality": prediction.quality_summary if prediction is not None else None,
        })
    thresholds = [prediction.threshold for _, prediction in images if prediction is not None]
    region = study.region or {}
    return {"slices": slices, "threshold": thresholds[0] if thresholds else 0.5, "runs": region.get("runs", []),
            "peak": region.get("peak"), "start": region.get("peak") or 0}


def key_slices(study: Study, images: list[tuple[StudyImage, Prediction | None]], count: int = 6) -> list:
    """The slices a printed report shows: the region's peak, then the most suspicious others."""
    assessed = [(image, p) for image, p in images if p is not None and p.usable]
    ranked = sorted(assessed, key=lambda pair: (pair[0].position != (study.region or {}).get("peak"),
                                                -pair[1].probability))
    return sorted(ranked[:count], key=lambda pair: pair[0].position)


def latest_prediction(image: StudyImage) -> Prediction | None:
    """The newest prediction of an image (a study re-run by a newer model keeps both)."""
    predictions = sorted(image.predictions.all(), key=lambda p: p.created_at)
    return predictions[-1] if predictions else None


@lru_cache(maxsize=16)
def model_card(version: str) -> dict:
    """A registered version's model card; {} for a version no longer installed."""
    try:
        return registry().get(version).card
    except RegistryError:
        return {}


def registered_models() -> list[dict]:
    """Every version in the model registry with its card, marking the active one and the one served."""
    models = registry()
    active = models.active_name()
    serving = settings.MODEL_VERSION or active
    return [{"version": version.name, "active": version.name == active, "serving": version.name == serving,
             "card": version.card} for version in models.versions()]


def feature_rows(prediction: Prediction) -> list[dict]:
    """The texture features of a prediction beside each label's typical range and their contribution."""
    card = model_card(prediction.model_version)
    ranges = card.get("feature_ranges", {})
    contribution = {row["feature"]: row["contribution"] for row in prediction.feature_contributions}
    # PostgreSQL's jsonb does not keep key order: list the features in their documented order everywhere.
    known = {name: index for index, name in enumerate(FEATURE_NAMES)}
    names = sorted(prediction.features, key=lambda name: (known.get(name, len(known)), name))
    return [
        {
            "name": name, "description": FEATURE_DESCRIPTIONS.get(name, ""), "value": prediction.features[name],
            "typical_no_tumor": ranges.get(name, {}).get("no_tumor"),
            "typical_tumor": ranges.get(name, {}).get("tumor"),
            "contribution": contribution.get(name),
        }
        for name in names
    ]


# Leading characters that make a spreadsheet read a cell as a formula (OWASP's CSV injection list).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
EXPORT_COLUMNS = ["study", "submitted_at", "patient", "submitted_by", "status", "result", "probability",
                  "model_version", "images", "series", "suspicious_slices", "images_unassessable", "quality",
                  "finished_at", "error"]
EXPORT_CHUNK_SIZE = 1000  # studies read per database round trip while an export streams


def export_rows(studies: QuerySet[Study]):
    """One CSV row per study; a formula-looking cell is prefixed so spreadsheets do not run it.

    Studies are read EXPORT_CHUNK_SIZE at a time, so an export of the whole worklist never sits in memory.
    """
    stream = studies.annotate(n_images=Count("images")).iterator(chunk_size=EXPORT_CHUNK_SIZE)
    while chunk := list(islice(stream, EXPORT_CHUNK_SIZE)):
        versions, refused = {}, {}
        for study_id, version, position, quality, code in Prediction.objects.filter(image__study__in=chunk).order_by(
                "image__position", "created_at").values_list("image__study_id", "model_version", "image__position",
                                                             "quality", "quality_code"):
            versions[study_id] = version
            refused.setdefault(study_id, {})[position] = code if quality == Prediction.Quality.REJECTED else None
        for study in chunk:
            # "image: reason" for each image the quality gate refused (positions from 1, as on the study page).
            reasons = [f"{position + 1}: {code}" for position, code in sorted(refused.get(study.pk, {}).items())
                       if code]
            row = [str(study.pk), study.created_at.isoformat(), study.patient.code, study.submitted_by.get_username(),
                   study.status, study.label, "" if study.probability is None else f"{study.probability:.4f}",
                   versions.get(study.pk, ""), study.n_images, "yes" if study.series else "no",
                   "" if study.suspicious_slices is None else study.suspicious_slices, len(reasons), "; ".join(reasons),
                   study.finished_at.isoformat() if study.finished_at else "", study.error]
            yield [f"'{cell}" if isinstance(cell, str) and cell[:1] in FORMULA_STARTS else cell for cell in row]
