"""The worker's side: claim waiting studies, assess their images, store the results.

Each claim is an UPDATE on the study's current state (services.transitions) that records the run's
token; storing checks the token again, so a run that lost its study to another delivery keeps nothing.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import DatabaseError, transaction
from django.db.models import F, Q
from django.utils import timezone

from diagnosis import audit, events
from diagnosis.inference import get_predictor
from diagnosis.models import AuditEvent, Consent, Prediction, Study, StudyImage, heatmap_name
from diagnosis.services.errors import TRANSIENT_ERRORS, TransientError
from diagnosis.services.patients import cancel_for_withdrawn_consent, consented
from diagnosis.services.submission import enqueue
from diagnosis.services.transitions import move
from ml.explain import heatmap_png
from ml.imaging import UnreadableImage, read_stored
from ml.predictor import NO_TUMOR, TUMOR, Assessment
from ml.volumes import suspicious_region

log = logging.getLogger(__name__)
Action = AuditEvent.Action
Status = Study.Status


def claimable(now, delivery: str = "") -> Q:
    """Queued, or held by a run that is over: its lease expired, or it was an earlier run of this same
    delivery. The broker hands a message out again when the process that ran it died (or, rarely, when
    its connection dropped: then the earlier run's result is discarded by the token check on storing)."""
    claimable = Q(status=Status.QUEUED) | Q(status=Status.PROCESSING, lease_expires_at__lt=now)
    if delivery:
        claimable |= Q(status=Status.PROCESSING, claim__startswith=_claim_prefix(delivery))
    return claimable


def _claim_prefix(delivery: str) -> str:
    return f"{delivery[:40]}/"


def new_claim_token(delivery: str = "") -> str:
    """A token unique to one run; it starts with the delivery's id so a redelivery recognises its own claim."""
    return f"{_claim_prefix(delivery)}{uuid.uuid4().hex[:16]}" if delivery else uuid.uuid4().hex


def claim(study_ids: list, token: str, delivery: str = "") -> list[Study]:
    """Atomically take the given studies that nobody holds; return the ones taken.

    A study whose patient no longer consents to AI analysis is cancelled instead: it may have been
    running when consent was withdrawn, and come back after its worker died or hit an outage.
    Each claim counts an attempt. A study out of attempts (its runs kept crashing or timing out) is
    failed with the reason instead.
    """
    now = timezone.now()
    waiting = Study.objects.filter(pk__in=study_ids).filter(claimable(now, delivery))
    cancel_for_withdrawn_consent(waiting.exclude(consented()))
    exhausted = list(waiting.filter(attempts__gte=settings.STUDY_MAX_ATTEMPTS).select_related("patient"))
    for study in exhausted:
        fail(study, "attempts_exhausted",
             f"The analysis did not finish after {settings.STUDY_MAX_ATTEMPTS} attempts. The study can be run "
             "again; if it keeps failing, contact your administrator.", delivery=delivery)
    lease = now + timedelta(seconds=settings.TASK_TIME_LIMIT + 5)
    # Consent is checked again in the UPDATE itself, so one withdrawn since the cancelling above still counts.
    move(waiting.filter(consented(), attempts__lt=settings.STUDY_MAX_ATTEMPTS), Status.PROCESSING, claim=token,
         lease_expires_at=lease, attempts=F("attempts") + 1, started_at=now)
    return list(Study.objects.filter(pk__in=study_ids, claim=token).select_related("patient"))


def _claim_and_record(study_ids: list, token: str, delivery: str) -> list[Study]:
    """Claim, and audit each claim as a started prediction in the same transaction: a run killed right after
    its claim still leaves its "started" event."""
    with transaction.atomic():
        claimed = claim(study_ids, token, delivery)
        for study in claimed:
            audit.record(Action.PREDICTION_STARTED, obj=study, patient_code=study.patient.code, via="worker",
                         details={"attempt": study.attempts})
    return claimed


def assess_study(study_id: str, delivery: str = "") -> str:
    """Claim the study (and other waiting studies, to predict them in one batch) and assess them.

    Images go through the model in chunks of BRAINSCAN_INFERENCE_CHUNK; each chunk's results are stored at
    once, so a series shows its progress, and a run that dies resumes where it stopped: only images without
    a result of the served model are assessed, and a result is stored at most once per image and model.
    `delivery` identifies the message (the Celery task id): a redelivery of a message whose run died
    takes that run's studies over at once instead of waiting for their lease to expire.
    Returns what happened, for the worker's log. Safe to call any number of times per study.
    """
    token = new_claim_token(delivery)
    primary = _claim_and_record([study_id], token, delivery)
    if not primary:
        return "skipped: completed, failed, cancelled or held by another delivery"
    others = list(Study.objects.filter(claimable(timezone.now(), delivery), series=False).exclude(pk=study_id)
                  .order_by("created_at").values_list("pk", flat=True)[: settings.INFERENCE_BATCH - 1])
    claimed = primary + (_claim_and_record(others, token, delivery) if others and not primary[0].series else [])
    if settings.TEST_PAUSE_AFTER_CLAIM_SECONDS:  # test only: lets a crash test kill a run that holds a claim
        time.sleep(settings.TEST_PAUSE_AFTER_CLAIM_SECONDS)
    try:
        predictor = get_predictor()
        failed: set = set()
        pending = _pending_images(claimed, predictor.version)
        for start in range(0, len(pending), settings.INFERENCE_CHUNK):
            chunk = [image for image in pending[start:start + settings.INFERENCE_CHUNK] if image.study_id not in failed]
            readable = _read_images(chunk, token, failed)
            _save_predictions(_assess(predictor, readable, token, failed), token)
            _renew_lease(claimed, token)
        outcomes = [finish(study, token, predictor) for study in claimed if study.pk not in failed]
    except TRANSIENT_ERRORS as error:
        # A time limit may be the study's own doing, so it keeps its attempt; an outage does not.
        refund = not isinstance(error, SoftTimeLimitExceeded)
        for study in claimed:
            release(study, token, refund_attempt=refund)
        raise TransientError(f"{type(error).__name__}: {error}") from error
    return f"completed {sum(outcomes)} of {len(claimed)} studies"


def _assess(predictor, readable: list, token: str, failed: set) -> list:
    """(image, assessment) pairs. A chunk goes through the network in one batch; if that raises anything but
    an outage, each study's images are assessed alone, and a study that still raises (MemoryError included)
    fails with the reason while the others go on: one bad study never costs the rest, nor the worker."""

    def run(pairs: list) -> list:
        modalities = [image.acquisition.get("modality", "") for image, _ in pairs]
        assessments = predictor.assess([gray for _, gray in pairs], modalities=modalities) if pairs else []
        return list(zip((image for image, _ in pairs), assessments))

    try:
        return run(readable)
    except TRANSIENT_ERRORS:
        raise
    except Exception:  # noqa: BLE001 - isolate the study that causes it
        log.warning("A chunk of %d images could not be assessed; trying each study alone", len(readable),
                    exc_info=True)
    results = []
    for study_id in dict.fromkeys(image.study_id for image, _ in readable):
        try:
            results += run([(image, gray) for image, gray in readable if image.study_id == study_id])
        except TRANSIENT_ERRORS:
            raise
        except Exception as error:  # noqa: BLE001 - MemoryError and whatever a malformed input causes
            log.exception("Study %s could not be assessed", study_id)
            failed.add(study_id)
            fail(Study.objects.select_related("patient").get(pk=study_id), "assessment_error",
                 f"The images could not be analysed ({type(error).__name__}). Upload the scan again in a new study; "
                 "if this keeps happening, contact your administrator.", token=token)
    return results


def _pending_images(studies: list[Study], version: str) -> list[StudyImage]:
    """Images of the claimed studies without a prediction from `version`, study by study, in slice order."""
    pending = StudyImage.objects.filter(study__in=studies).exclude(predictions__model_version=version)
    return list(pending.order_by("study_id", "position"))


def _read_images(images: list[StudyImage], token: str, failed: set) -> list[tuple[StudyImage, object]]:
    """Read the images back from storage; a study with an unreadable one fails at once (added to `failed`).

    The limits are checked again from each file's header: a file that got past the upload's checks (an
    older version stored it, say) fails its own study instead of taking the worker down.
    """
    readable = []
    for image in images:
        if image.study_id in failed:
            continue
        try:
            with default_storage.open(image.file.name, "rb") as handle:
                readable.append((image, read_stored(handle.read(), settings.IMAGE_LIMITS)))
        except (UnreadableImage, MemoryError) as error:
            failed.add(image.study_id)
            readable = [pair for pair in readable if pair[0].study_id != image.study_id]
            reason = error if isinstance(error, UnreadableImage) else "it is too large to decode"
            fail(Study.objects.select_related("patient").get(pk=image.study_id), "unreadable_image",
                 f"Image {image.position + 1} could not be read from storage ({reason}). Upload the scan again "
                 "in a new study.", token=token)
    return readable


def _save_predictions(pairs: list[tuple[StudyImage, Assessment]], token: str) -> None:
    """Store a chunk's heatmaps, then its predictions in one transaction, for the studies this run still holds.

    Heatmap files have deterministic names and the storage overwrites (allow_overwrite locally,
    file_overwrite on S3), so a retry leaves no orphans; a prediction exists at most once per image and model.
    """
    heatmap_names = {
        image.pk: default_storage.save(heatmap_name(image, assessment.model_version),
                                       ContentFile(heatmap_png(assessment.heatmap)))
        for image, assessment in pairs if assessment.usable
    }
    with transaction.atomic():
        held = set(Study.objects.filter(pk__in={image.study_id for image, _ in pairs}, status=Status.PROCESSING,
                                        claim=token).values_list("pk", flat=True))
        for image, a in pairs:
            if image.study_id not in held:
                continue  # another delivery took the study over: it assesses the image itself
            Prediction.objects.get_or_create(image=image, model_version=a.model_version, defaults=dict(
                model_sha256=a.model_sha256, probability=a.probability, label=a.label, threshold=a.threshold,
                quality=Prediction.Quality.OK if a.usable else Prediction.Quality.REJECTED,
                quality_code=a.quality.code, quality_message=a.quality.message,
                heatmap=heatmap_names.get(image.pk, ""), features=a.features,
                feature_probability=a.feature_probability, feature_contributions=a.feature_contributions,
                inference_ms=a.timings_ms["inference"], latency_ms=a.timings_ms["total"],
            ))


def _renew_lease(studies: list[Study], token: str) -> None:
    """A long series keeps its claim while it makes progress."""
    lease = timezone.now() + timedelta(seconds=settings.TASK_TIME_LIMIT + 5)
    Study.objects.filter(pk__in=[study.pk for study in studies], status=Status.PROCESSING, claim=token).update(
        lease_expires_at=lease)


def finish(study: Study, token: str, predictor) -> bool:
    """Move the study to its final state with its result, once every image has one.

    Completed with the result of its assessable images, or, when the quality gate refused every image,
    marked "cannot be assessed" for a clinician to read by hand. Returns False if the claim was lost meanwhile
    (another delivery took over after the lease), or if the patient's consent was withdrawn while the model
    ran: then the study is cancelled instead, and its results removed.
    """
    with transaction.atomic():
        # Locked: a withdrawal that committed first is seen here, and a later one waits for this result.
        if not Consent.objects.active(Consent.Scope.AI_ANALYSIS).filter(
                patient_id=study.patient_id).select_for_update().exists():
            cancel_for_withdrawn_consent(Study.objects.filter(pk=study.pk, status=Status.PROCESSING, claim=token))
            return False
        summary = study_result(study, predictor.version, predictor.threshold, predictor.series_window)
        held = Study.objects.filter(pk=study.pk, status=Status.PROCESSING, claim=token)
        if summary["assessable"] or not summary["unassessable"]:
            moved = move(held, Status.COMPLETED, probability=summary["probability"], label=summary["label"],
                         suspicious_slices=summary["suspicious_slices"], region=summary["region"])
            action = Action.PREDICTION_STORED
        else:
            moved = move(held, Status.UNASSESSABLE, probability=None, label="", error_code="unassessable",
                         error=summary["message"], suspicious_slices=0, region={})
            action = Action.STUDY_UNASSESSABLE
        if not moved:
            log.info("Study %s was taken over by another delivery; leaving its result to that run", study.pk)
            return False
        audit.record(action, obj=study, patient_code=study.patient.code, via="worker",
                     details={key: summary[key] for key in ("probability", "label", "model_version", "assessable",
                                                            "unassessable", "reasons", "suspicious_slices")})
        study.refresh_from_db()
        events.finished(study)
    return True


def study_result(study: Study, version: str, threshold: float, series_window: int = 1) -> dict:
    """The study's result, by the given model: for separate slices, that of the most suspicious assessable one;
    for a series, its most suspicious region (the highest mean over `series_window` consecutive assessed
    slices; ml.volumes.suspicious_region). The images the quality gate refused are counted, with reasons."""
    predictions = list(Prediction.objects.filter(image__study=study, model_version=version)
                       .select_related("image").order_by("image__position"))
    usable = [p for p in predictions if p.usable]
    refused = [p for p in predictions if not p.usable]
    reasons: dict[str, int] = {}
    for prediction in refused:
        reasons[prediction.quality_code] = reasons.get(prediction.quality_code, 0) + 1
    region = suspicious_region([p.image.position for p in usable], [p.probability for p in usable], threshold,
                               series_window if study.series else 1)
    summary = {"model_version": version, "assessable": len(usable), "unassessable": len(refused), "reasons": reasons,
               "probability": region["score"], "label": "", "suspicious_slices": len(region["suspicious"]),
               "region": {key: region[key] for key in ("first", "last", "peak", "score", "window", "runs")}
               if study.series and usable else {},
               "message": "No image could be assessed: " + "; ".join(
                   f"image {p.image.position + 1}: {p.quality_message}" for p in refused[:5])
               + ("; ..." if len(refused) > 5 else "") + ". Read the study by hand."}
    if usable:
        summary["label"] = TUMOR if region["score"] >= threshold else NO_TUMOR
    return summary


def release(study: Study, token: str, refund_attempt: bool = True) -> None:
    """Give a claimed study back to the queue after a transient error (best effort).

    An outage is not the study's fault, so by default its attempt is given back: the task's retries
    bound outages, the attempt budget bounds runs that crash or time out.
    """
    refund = {"attempts": F("attempts") - 1} if refund_attempt else {}
    try:
        move(Study.objects.filter(pk=study.pk, status=Status.PROCESSING, claim=token), Status.QUEUED, **refund)
    except DatabaseError:
        log.warning("Could not release study %s; the sweeper will once its lease expires", study.pk)


def fail(study: Study, code: str, message: str, *, token: str = "", delivery: str = "") -> bool:
    """Fail the study if this run holds it (`token`), or else if nobody does."""
    held = Q(status=Status.PROCESSING, claim=token) if token else claimable(timezone.now(), delivery)
    with transaction.atomic():
        moved = move(Study.objects.filter(held, pk=study.pk), Status.FAILED, error_code=code, error=message)
        if moved:
            audit.record(Action.PREDICTION_FAILED, obj=study, patient_code=study.patient.code, via="worker",
                         details={"reason": code})
            study.refresh_from_db()
            events.finished(study)
    return bool(moved)


def fail_after_retries(study_id: str, error: str, delivery: str = "") -> None:
    """The task gave up retrying a transient error: fail the study with a reason a clinician can act on."""
    study = Study.objects.select_related("patient").filter(pk=study_id).first()
    if study is not None:
        fail(study, "service_unavailable",
             "The analysis service was unavailable for too long. The study can be run again; if this keeps "
             "happening, contact your administrator.", delivery=delivery)
        log.warning("Study %s failed after retries: %s", study_id, error)


def requeue_stale() -> int:
    """Send again the studies whose worker died or whose message was lost; fail those out of attempts.

    A study whose lease expired is sent at once. A queued study is sent again when its message was
    never sent (the broker was down) or was sent more than BRAINSCAN_STALE_SECONDS ago (the message
    may have been lost with a broker that restarted without persistence); a duplicate is harmless.
    """
    now = timezone.now()
    move(Study.objects.filter(status=Status.PROCESSING, lease_expires_at__lt=now), Status.QUEUED, enqueued_at=None)
    cutoff = now - timedelta(seconds=settings.STALE_AFTER_SECONDS)
    stale = Study.objects.filter(status=Status.QUEUED).filter(Q(enqueued_at__lt=cutoff) | Q(enqueued_at__isnull=True))
    count = 0
    for study in stale.select_related("patient").order_by("created_at")[:500]:
        if study.attempts >= settings.STUDY_MAX_ATTEMPTS:
            claim([study.pk], new_claim_token())  # fails it with the reason
            continue
        if Study.objects.filter(pk=study.pk, status=Status.QUEUED, enqueued_at=study.enqueued_at).update(
                enqueued_at=now, updated_at=now):
            audit.record(Action.STUDY_REQUEUED, obj=study, patient_code=study.patient.code, via="worker")
            with transaction.atomic():
                enqueue(study)
            count += 1
    return count
