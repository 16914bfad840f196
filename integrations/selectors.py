"""Reads for the exports and webhook bodies. Who may see a study is decided by diagnosis.selectors
(studies_for, worklist): the API and web views fetch the study there first, so what a caller may not see
is a 404 before anything here runs."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Prefetch, Q, QuerySet, prefetch_related_objects
from django.urls import reverse
from django.utils import timezone

from diagnosis import selectors
from diagnosis.models import Prediction, Study, StudyImage
from integrations.models import WebhookDelivery, WebhookEndpoint

Status = Study.Status
# The studies whose report is final: a result, or the verdict that no image could be assessed.
REPORTED = (Status.COMPLETED, Status.UNASSESSABLE)
DISABLE_AFTER = timedelta(days=1)  # an endpoint failing this long without a success is disabled


def with_results(studies: list[Study]) -> list[Study]:
    """Prefetch the images and their predictions of a page of studies (two queries, whatever its size)."""
    prefetch_related_objects(studies, Prefetch("images", queryset=StudyImage.objects.prefetch_related("predictions")))
    return studies


def assessed_images(study: Study) -> list[tuple[StudyImage, Prediction | None]]:
    """Each image of the study with its latest prediction (None before it is assessed)."""
    return [(image, selectors.latest_prediction(image)) for image in study.images.all()]


def study_result(study: Study, images: list | None = None) -> dict | None:
    """The study's result, or None before it completes: separate images give that of the most suspicious one;
    a series that of its most suspicious region (diagnosis.services.assessment.study_result), with its peak."""
    if study.status != Status.COMPLETED or study.probability is None:
        return None
    images = images if images is not None else assessed_images(study)
    assessed = [(image, p) for image, p in images if p and p.usable]
    if not assessed:
        return None
    peak = (study.region or {}).get("peak")
    _, top = next(((image, p) for image, p in assessed if image.position == peak), None) or max(
        assessed, key=lambda pair: pair[1].probability)
    result = {"label": study.label, "probability": study.probability, "threshold": top.threshold,
              "model_version": top.model_version}
    if study.series:
        result.update(series=True, slices=len(images), assessed=len(assessed),
                      suspicious_slices=study.suspicious_slices or 0, region=study.region)
    return result


def reported_images(study: Study, images: list) -> list:
    """The images an export reports one by one: every image of separate slices; of a series (which may hold
    hundreds), the suspicious slices and the region's peak, the rest being summed up in the series' result."""
    if not study.series:
        return images
    peak = (study.region or {}).get("peak")
    return [(image, p) for image, p in images if p is not None and p.usable
            and (p.probability >= p.threshold or image.position == peak)]


def has_dicom(study: Study) -> bool:
    return StudyImage.objects.filter(study=study).exclude(dicom="").exclude(dicom__isnull=True).exists()


def reported(studies: QuerySet[Study]) -> QuerySet[Study]:
    """The studies of a (filtered, access-checked) list whose report is final."""
    return studies.filter(status__in=REPORTED)


def public_url(name: str, *args) -> str:
    """An absolute link for a system outside any request (a webhook body): BRAINSCAN_PUBLIC_URL and the route."""
    return settings.PUBLIC_URL + reverse(name, args=args)


def webhook_body(study: Study, event: str) -> dict:
    """The body of a delivery: small, with the study's id and the patient's pseudonymous code, no file."""
    links = {"study": public_url("api:study-detail", study.pk), "fhir": public_url("api:study-fhir", study.pk)}
    if has_dicom(study):
        links["dicom_sr"] = public_url("api:study-dicom-sr", study.pk)
    stamp = study.finished_at or study.updated_at or timezone.now()
    return {
        "type": event,
        "timestamp": stamp.isoformat().replace("+00:00", "Z"),
        "data": {
            "study": str(study.pk),
            "patient": study.patient.code,
            "status": study.status,
            "result": study_result(study),
            "error": {"code": study.error_code, "message": study.error} if study.error else None,
            "links": links,
        },
    }


def due_deliveries(now) -> QuerySet[WebhookDelivery]:
    """Deliveries to send now: waiting or failed, due, to an active endpoint, and held by nobody (or by a
    sender whose lease expired: its worker died)."""
    return (WebhookDelivery.objects
            .filter(status__in=(WebhookDelivery.Status.PENDING, WebhookDelivery.Status.FAILED),
                    next_attempt_at__lte=now, endpoint_id__in=active_endpoints())
            .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now)))


def active_endpoints() -> QuerySet:
    """The active endpoints' ids, as a subquery: an UPDATE filtered by it stays a plain UPDATE of the deliveries
    (no join), so PostgreSQL rechecks a delivery's own conditions after waiting for a concurrent claim."""
    return WebhookEndpoint.objects.filter(active=True).values("pk")


def endpoints_needing_attention() -> QuerySet[WebhookEndpoint]:
    """Endpoints disabled for failing, or failing now: the admin pages warn about them."""
    return WebhookEndpoint.objects.filter(Q(active=False, disabled_at__isnull=False) |
                                          Q(active=True, failing_since__isnull=False))
