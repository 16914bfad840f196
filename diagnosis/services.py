"""Every write of the diagnosis app: submitting, assessing, retrying, reading, consent, erasure.

A study moves queued -> processing -> completed | failed (or cancelled when consent is
withdrawn before it completes). Each move is a conditional UPDATE on the current state, so two
deliveries of one task, or a worker and the sweeper, can never both act on a study.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from diagnosis import audit
from diagnosis.inference import ModelUnavailable, get_predictor
from diagnosis.models import AuditEvent, Consent, Patient, Prediction, Reading, Study, StudyImage, heatmap_name
from diagnosis.selectors import patients_for, submission_rejections
from diagnosis.uploads import Rejection, decode_uploads, display_name
from ml.explain import heatmap_png
from ml.imaging import UnreadableImage, encode_png, read_image
from ml.predictor import TUMOR, Assessment

log = logging.getLogger(__name__)
Action = AuditEvent.Action
Status = Study.Status


class ServiceError(Exception):
    """A request that cannot be carried out; the message is meant for the user."""

    code = "invalid"


class NotAllowed(ServiceError):
    code = "not_allowed"


class ConsentRequired(ServiceError):
    code = "consent_required"


class InvalidState(ServiceError):
    """The study is not in a state that allows this action (for example, a retry of a completed study)."""

    code = "invalid_state"


class NothingUsable(ServiceError):
    """None of the uploaded files could be used; nothing was stored."""

    code = "no_usable_file"

    def __init__(self, message: str, rejections: list[Rejection]):
        super().__init__(message)
        self.rejections = rejections


class TransientError(Exception):
    """Worth trying again later: the database, storage or model was briefly unavailable."""


def _transient_errors() -> tuple[type[BaseException], ...]:
    errors = [DatabaseError, OSError, TimeoutError, ModelUnavailable, SoftTimeLimitExceeded]
    try:
        from botocore.exceptions import BotoCoreError, ClientError

        errors += [BotoCoreError, ClientError]
    except ImportError:
        pass
    return tuple(errors)


TRANSIENT_ERRORS = _transient_errors()


# --- Submitting ------------------------------------------------------------------------------------


@dataclass
class Submission:
    study: Study
    rejections: list[Rejection] = field(default_factory=list)
    created: bool = True


def submit_study(*, user, patient: Patient, uploads: list, request=None, via: str = "web",
                 idempotency_key: str = "") -> Submission:
    """Store the usable files as a new queued study and enqueue it once the transaction commits.

    Files that cannot be used are reported in `rejections` and audited; the others go through.
    With an idempotency key, a repeated submission returns the study the first one created, and the files it
    rejected.
    """
    if idempotency_key:
        existing = Study.objects.filter(submitted_by=user, idempotency_key=idempotency_key).first()
        if existing is not None:
            return _replay(existing, uploads)
    check_can_submit(user, patient)
    if not uploads:
        raise ServiceError("Choose at least one image to upload.")
    if len(uploads) > settings.MAX_FILES_PER_STUDY:
        raise ServiceError(f"A study holds at most {settings.MAX_FILES_PER_STUDY} files; {len(uploads)} were sent.")
    slices, rejections = decode_uploads(uploads, patient_code=patient.code)
    for rejection in rejections:
        audit.record(Action.UPLOAD_REJECTED, actor=user, request=request, patient_code=patient.code, via=via,
                     details={"reason": rejection.code})
    if len(slices) > settings.MAX_FILES_PER_STUDY:
        raise ServiceError(f"The files hold {len(slices)} images; a study holds at most "
                           f"{settings.MAX_FILES_PER_STUDY}.")
    if not slices:
        raise NothingUsable("None of the files could be used; nothing was stored.", rejections)
    stored: list[str] = []
    try:
        with transaction.atomic():
            study = Study.objects.create(patient=patient, submitted_by=user, idempotency_key=idempotency_key,
                                         enqueued_at=timezone.now())
            dicom_names: dict = {}  # the frames of one DICOM file share its de-identified copy
            for position, piece in enumerate(slices):
                png = encode_png(piece.gray)
                image = StudyImage(study=study, position=position, source_format=piece.source_format,
                                   width=piece.gray.shape[1], height=piece.gray.shape[0],
                                   sha256=hashlib.sha256(png).hexdigest(), acquisition=piece.acquisition)
                image.file.save("scan.png", ContentFile(png), save=False)
                stored.append(image.file.name)
                if piece.dicom is not None:
                    if piece.dicom not in dicom_names:
                        image.dicom.save("scan.dcm", ContentFile(piece.dicom.data), save=False)
                        dicom_names[piece.dicom] = image.dicom.name
                        stored.append(image.dicom.name)
                    image.dicom.name = dicom_names[piece.dicom]
                image.save()
            replayable = {"rejected": _recorded(uploads, rejections)} if idempotency_key else {}
            audit.record(Action.STUDY_CREATED, actor=user, request=request, obj=study, patient_code=patient.code,
                         via=via, details={"images": len(slices), "rejected_files": len(rejections), **replayable})
            enqueue(study)
    except IntegrityError:
        _delete_files(stored)
        if idempotency_key:  # the same key won a race in another request
            return _replay(Study.objects.get(submitted_by=user, idempotency_key=idempotency_key), uploads)
        raise
    except BaseException:
        _delete_files(stored)
        raise
    return Submission(study, rejections)


def _recorded(uploads: list, rejections: list[Rejection]) -> list[dict]:
    """The rejections, for a replay, with each file named by its position: file names may name the patient and
    are never stored."""
    names = [display_name(upload) for upload in uploads]
    recorded, position = [], -1
    for rejection in rejections:  # in upload order: each is the next upload of its name
        position = names.index(rejection.filename, position + 1)
        recorded.append({"file": position, "code": rejection.code, "reason": rejection.reason})
    return recorded


def _replay(study: Study, uploads: list) -> Submission:
    """The study a submission with the same key created, with its rejections named after this request's files
    (a replay sends the same files again)."""
    names = [display_name(upload) for upload in uploads]
    rejections = [Rejection(names[r["file"]] if r["file"] < len(names) else f"file {r['file'] + 1}", r["reason"],
                            r["code"]) for r in submission_rejections(study)]
    return Submission(study, rejections, created=False)


def check_can_submit(user, patient: Patient) -> None:
    if not patients_for(user).filter(pk=patient.pk).exists():
        raise NotAllowed("You are not on this patient's care team.")
    if not patient.has_active_consent(Consent.Scope.AI_ANALYSIS):
        raise ConsentRequired(f"Patient {patient.code} has no active consent for AI analysis. Record the "
                              "patient's consent (an administrator can) before submitting a study.")


def enqueue(study: Study) -> None:
    """Send the study's task after the surrounding transaction commits.

    If the broker is down the study simply stays queued, marked as never sent, and the sweeper's next
    round sends it.
    """
    from diagnosis.tasks import assess_study

    study_id = str(study.pk)

    def send() -> None:
        try:
            assess_study.apply_async(args=[study_id], retry=False)
        except Exception as error:  # any broker failure; the study is safe in the database
            log.warning("Could not enqueue study %s (%s); the sweeper will send it", study_id, type(error).__name__)
            _mark_unsent(study_id)

    transaction.on_commit(send)


def _mark_unsent(study_id: str) -> None:
    try:
        Study.objects.filter(pk=study_id, status=Status.QUEUED).update(enqueued_at=None)
    except DatabaseError:  # then the sweeper finds it once it looks stale
        log.warning("Could not mark study %s as unsent", study_id)


def _delete_files(names: list[str]) -> None:
    for name in names:
        try:
            default_storage.delete(name)
        except Exception:
            log.exception("Could not delete stored file %s", name)


# --- Assessing (runs in the worker) ------------------------------------------------------------------


def _claimable(now, delivery: str = "") -> Q:
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
    waiting = Study.objects.filter(pk__in=study_ids).filter(_claimable(now, delivery))
    _cancel_for_withdrawn_consent(waiting.exclude(_consented()))
    exhausted = list(waiting.filter(attempts__gte=settings.STUDY_MAX_ATTEMPTS).select_related("patient"))
    for study in exhausted:
        _fail(study, "attempts_exhausted",
              f"The analysis did not finish after {settings.STUDY_MAX_ATTEMPTS} attempts. The study can be run "
              "again; if it keeps failing, contact your administrator.", delivery=delivery)
    lease = now + timedelta(seconds=settings.TASK_TIME_LIMIT + 5)
    # Consent is checked again in the UPDATE itself, so one withdrawn since the cancelling above still counts.
    waiting.filter(_consented(), attempts__lt=settings.STUDY_MAX_ATTEMPTS).update(
        status=Status.PROCESSING, claim=token, lease_expires_at=lease, attempts=F("attempts") + 1, started_at=now,
        error="", error_code="", updated_at=now)
    return list(Study.objects.filter(pk__in=study_ids, claim=token).select_related("patient"))


def _consented() -> Exists:
    """For filtering studies: their patient has an active consent to AI analysis."""
    return Exists(Consent.objects.active(Consent.Scope.AI_ANALYSIS).filter(patient=OuterRef("patient")))


def _cancel_for_withdrawn_consent(studies, *, actor=None, request=None, via: str = "worker") -> int:
    """Cancel the studies of `studies` (a queryset that names the states they may be in), each audited.

    All rows are locked and moved before the first event is written, so the audit chain's head is the
    last lock taken, as everywhere, and a withdrawal and a worker cancelling the same studies cannot
    deadlock. Returns how many were cancelled.
    """
    now = timezone.now()
    with transaction.atomic():
        cancelled = list(studies.select_for_update(of=("self",)).select_related("patient"))
        Study.objects.filter(pk__in=[study.pk for study in cancelled]).update(
            status=Status.CANCELLED, error_code="consent_withdrawn", finished_at=now, claim="",
            lease_expires_at=None, updated_at=now,
            error="The patient withdrew consent for AI analysis before the analysis finished; no result was kept.")
        for study in cancelled:
            audit.record(Action.STUDY_CANCELLED, actor=actor, request=request, obj=study,
                         patient_code=study.patient.code, via=via, details={"reason": "consent_withdrawn"})
    return len(cancelled)


def assess_study(study_id: str, delivery: str = "") -> str:
    """Claim the study (and other waiting studies, to predict them in one batch) and assess them.

    `delivery` identifies the message (the Celery task id): a redelivery of a message whose run died
    takes that run's studies over at once instead of waiting for their lease to expire.
    Returns what happened, for the worker's log. Safe to call any number of times per study.
    """
    token = new_claim_token(delivery)
    primary = claim([study_id], token, delivery)
    if not primary:
        return "skipped: completed, failed, cancelled or held by another delivery"
    others = list(Study.objects.filter(_claimable(timezone.now(), delivery)).exclude(pk=study_id)
                  .order_by("created_at").values_list("pk", flat=True)[: settings.INFERENCE_BATCH - 1])
    claimed = primary + (claim(others, token, delivery) if others else [])
    for study in claimed:
        audit.record(Action.PREDICTION_STARTED, obj=study, patient_code=study.patient.code, via="worker",
                     details={"attempt": study.attempts})
    try:
        predictor = get_predictor()
        readable, failed = _read_images(_pending_images(claimed, predictor.version), token)
        assessments = predictor.assess([gray for _, gray in readable]) if readable else []
        results: dict = {study.pk: [] for study in claimed}
        for (image, _), assessment in zip(readable, assessments):
            results[image.study_id].append((image, assessment))
        outcomes = [_store_results(study, token, results[study.pk]) for study in claimed if study.pk not in failed]
    except TRANSIENT_ERRORS as error:
        # A time limit may be the study's own doing, so it keeps its attempt; an outage does not.
        refund = not isinstance(error, SoftTimeLimitExceeded)
        for study in claimed:
            release(study, token, refund_attempt=refund)
        raise TransientError(f"{type(error).__name__}: {error}") from error
    return f"completed {sum(outcomes)} of {len(claimed)} studies"


def _pending_images(studies: list[Study], version: str) -> dict:
    """Images of the claimed studies without a prediction from `version`, by study."""
    pending = StudyImage.objects.filter(study__in=studies).exclude(predictions__model_version=version)
    work: dict = {}
    for image in pending.order_by("study_id", "position"):
        work.setdefault(image.study_id, []).append(image)
    return work


def _read_images(work: dict, token: str) -> tuple[list[tuple[StudyImage, object]], set]:
    """Read every pending image back from storage; a study with an unreadable one fails at once.

    Returns the (image, pixels) pairs and the ids of the studies that failed.
    """
    readable, failed = [], set()
    for study_id, images in work.items():
        try:
            pairs = []
            for image in images:
                with default_storage.open(image.file.name, "rb") as handle:
                    pairs.append((image, read_image(handle.read(), max_pixels=settings.MAX_IMAGE_PIXELS)))
            readable.extend(pairs)
        except UnreadableImage as error:
            failed.add(study_id)
            study = Study.objects.select_related("patient").get(pk=study_id)
            _fail(study, "unreadable_image",
                  f"Image {image.position + 1} could not be read from storage ({error}). Upload the scan again "
                  "in a new study.", token=token)
    return readable, failed


def _store_results(study: Study, token: str, pairs: list[tuple[StudyImage, Assessment]]) -> bool:
    """Save heatmaps, then predictions and the completed state in one transaction.

    Heatmap files have deterministic names and the storage overwrites (allow_overwrite locally,
    file_overwrite on S3), so a retry leaves no orphans.
    Returns False if the claim was lost meanwhile (another delivery took over after the lease), or if
    the patient's consent was withdrawn while the model ran: then the study is cancelled instead.
    """
    heatmap_names = {
        image.pk: default_storage.save(heatmap_name(image, assessment.model_version),
                                       ContentFile(heatmap_png(assessment.heatmap)))
        for image, assessment in pairs
    }
    try:
        with transaction.atomic():
            # Locked: a withdrawal that committed first is seen here, and a later one waits for this result.
            if not Consent.objects.active(Consent.Scope.AI_ANALYSIS).filter(
                    patient_id=study.patient_id).select_for_update().exists():
                if _cancel_for_withdrawn_consent(Study.objects.filter(pk=study.pk, status=Status.PROCESSING,
                                                                      claim=token)):
                    transaction.on_commit(lambda: _delete_files(list(heatmap_names.values())))
                return False
            for image, a in pairs:
                Prediction.objects.get_or_create(image=image, model_version=a.model_version, defaults=dict(
                    model_sha256=a.model_sha256, probability=a.probability, label=a.label, threshold=a.threshold,
                    heatmap=heatmap_names[image.pk], features=a.features, feature_probability=a.feature_probability,
                    feature_contributions=a.feature_contributions, inference_ms=a.timings_ms["inference"],
                    latency_ms=a.timings_ms["total"],
                ))
            summary = _study_result(study, pairs[0][1].model_version if pairs else None)
            now = timezone.now()
            moved = Study.objects.filter(pk=study.pk, status=Status.PROCESSING, claim=token).update(
                status=Status.COMPLETED, probability=summary["probability"], label=summary["label"],
                finished_at=now, claim="", lease_expires_at=None, updated_at=now)
            if not moved:
                raise _LostClaim()
            audit.record(Action.PREDICTION_STORED, obj=study, patient_code=study.patient.code, via="worker",
                         details={**summary, "images": len(pairs)})
    except _LostClaim:
        log.info("Study %s was taken over by another delivery; discarding this result", study.pk)
        return False
    return True


class _LostClaim(Exception):
    pass


def _study_result(study: Study, version: str | None) -> dict:
    """The study's result is its most suspicious image's, by the newest model that assessed it."""
    predictions = Prediction.objects.filter(image__study=study)
    if version:
        predictions = predictions.filter(model_version=version)
    top = predictions.order_by("-probability").first()
    if top is None:
        return {"probability": None, "label": "", "model_version": version}
    label = TUMOR if predictions.filter(label=TUMOR).exists() else top.label
    return {"probability": top.probability, "label": label, "model_version": top.model_version}


def release(study: Study, token: str, refund_attempt: bool = True) -> None:
    """Give a claimed study back to the queue after a transient error (best effort).

    An outage is not the study's fault, so by default its attempt is given back: the task's retries
    bound outages, the attempt budget bounds runs that crash or time out.
    """
    refund = {"attempts": F("attempts") - 1} if refund_attempt else {}
    try:
        Study.objects.filter(pk=study.pk, status=Status.PROCESSING, claim=token).update(
            status=Status.QUEUED, claim="", lease_expires_at=None, updated_at=timezone.now(), **refund)
    except DatabaseError:
        log.warning("Could not release study %s; the sweeper will once its lease expires", study.pk)


def _fail(study: Study, code: str, message: str, *, token: str = "", delivery: str = "") -> bool:
    """Fail the study if this run holds it (`token`), or else if nobody does."""
    now = timezone.now()
    held = Q(status=Status.PROCESSING, claim=token) if token else _claimable(now, delivery)
    moved = Study.objects.filter(held, pk=study.pk).update(
        status=Status.FAILED, error_code=code, error=message, finished_at=now, claim="", lease_expires_at=None,
        updated_at=now)
    if moved:
        audit.record(Action.PREDICTION_FAILED, obj=study, patient_code=study.patient.code, via="worker",
                     details={"reason": code})
    return bool(moved)


def fail_after_retries(study_id: str, error: str, delivery: str = "") -> None:
    """The task gave up retrying a transient error: fail the study with a reason a clinician can act on."""
    study = Study.objects.select_related("patient").filter(pk=study_id).first()
    if study is not None:
        _fail(study, "service_unavailable",
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
    Study.objects.filter(status=Status.PROCESSING, lease_expires_at__lt=now).update(
        status=Status.QUEUED, claim="", lease_expires_at=None, enqueued_at=None, updated_at=now)
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


# --- Clinician actions -----------------------------------------------------------------------------


# Failures a new run would repeat: the stored scan itself is unusable, so only a new study can help. The
# others (an outage, runs that kept crashing, a consent withdrawn and since recorded again) can clear up.
PERMANENT_FAILURES = frozenset({"unreadable_image"})


def can_retry(study: Study) -> bool:
    """Whether running the study again could help; the study page offers it only then."""
    return study.status in (Status.FAILED, Status.CANCELLED) and study.error_code not in PERMANENT_FAILURES


def retry_study(*, user, study: Study, request=None, via: str = "web") -> Study:
    """Run a failed or cancelled study again, as a new attempt with a fresh attempt budget."""
    if study.status not in (Status.FAILED, Status.CANCELLED):
        raise InvalidState("Only a failed or cancelled study can be run again.")
    if study.error_code in PERMANENT_FAILURES:
        raise InvalidState("This study cannot be run again: its stored scan is unusable, so a new run would fail "
                           "the same way. Upload the scan again in a new study.")
    check_can_submit(user, study.patient)
    now = timezone.now()
    with transaction.atomic():
        # Another retry may have run meanwhile and failed for good: then the study stays failed.
        moved = (Study.objects.filter(pk=study.pk, status__in=(Status.FAILED, Status.CANCELLED))
                 .exclude(error_code__in=PERMANENT_FAILURES)
                 .update(status=Status.QUEUED, attempts=0, error="", error_code="", finished_at=None,
                         enqueued_at=now, updated_at=now))
        if not moved:
            raise InvalidState("The study was already started again.")
        audit.record(Action.STUDY_RETRIED, actor=user, request=request, obj=study, patient_code=study.patient.code,
                     via=via, details={"previous_error": study.error_code})
        enqueue(study)
    study.refresh_from_db()
    return study


def record_reading(*, user, study: Study, agrees_with_model: bool, finding: str, comment: str = "",
                   request=None, via: str = "web") -> Reading:
    if study.status != Status.COMPLETED:
        raise InvalidState("A reading can be recorded once the assessment is complete.")
    with transaction.atomic():
        reading, created = Reading.objects.update_or_create(
            study=study, clinician=user,
            defaults={"agrees_with_model": agrees_with_model, "finding": finding, "comment": comment.strip()},
        )
        audit.record(Action.READING_RECORDED, actor=user, request=request, obj=study, patient_code=study.patient.code,
                     via=via, details={"agrees_with_model": agrees_with_model, "finding": finding,
                                       "updated": not created})
    return reading


# --- Patients and consent (administrators) --------------------------------------------------------


def create_patient(*, actor, code: str = "", care_team=(), request=None, via: str = "admin") -> Patient:
    """A new patient, known by `code` (a fresh pseudonymous code when empty), on the given care team."""
    with transaction.atomic():
        patient = Patient.objects.create(code=code) if code else Patient.objects.create()
        patient.care_team.set(care_team)
        audit.record(Action.PATIENT_CREATED, actor=actor, request=request, obj=patient, patient_code=patient.code,
                     via=via, details={"care_team": sorted(user.get_username() for user in care_team)})
    return patient


def grant_consent(*, patient: Patient, actor, scope: str = Consent.Scope.AI_ANALYSIS, request=None,
                  via: str = "admin", granted_at=None) -> Consent:
    """Record the patient's consent (given now, or at `granted_at` when it was signed earlier); if one of
    the scope is already active, that one is returned unchanged."""
    with transaction.atomic():
        # Grants for one patient wait for each other, so two at once cannot both find none and record two.
        Patient.objects.select_for_update(no_key=True).get(pk=patient.pk)
        standing = Consent.objects.active(scope).filter(patient=patient).first()
        if standing is not None:
            return standing
        consent = Consent.objects.create(patient=patient, scope=scope, recorded_by=actor,
                                         granted_at=granted_at or timezone.now())
        audit.record(Action.CONSENT_GRANTED, actor=actor, request=request, obj=consent, patient_code=patient.code,
                     via=via, details={"scope": scope})
    return consent


def withdraw_consent(*, consent: Consent, actor, request=None, via: str = "admin") -> int:
    """Withdraw a consent; studies of the patient that have not started are cancelled. Returns how many.

    A study already running is left to its worker, which keeps no result without consent (see `claim`
    and `_store_results`).
    """
    now = timezone.now()
    with transaction.atomic():
        if not Consent.objects.filter(pk=consent.pk, withdrawn_at__isnull=True).update(withdrawn_at=now):
            return 0
        consent.refresh_from_db()
        cancelled = 0
        if not consent.patient.has_active_consent(consent.scope):
            cancelled = _cancel_for_withdrawn_consent(Study.objects.filter(patient=consent.patient,
                                                                           status=Status.QUEUED),
                                                      actor=actor, request=request, via=via)
        audit.record(Action.CONSENT_WITHDRAWN, actor=actor, request=request, obj=consent,
                     patient_code=consent.patient.code, via=via, details={"scope": consent.scope,
                                                                         "studies_cancelled": cancelled})
    return cancelled


def erase_patient(*, patient: Patient, actor, request=None, via: str = "admin") -> dict:
    """Delete a patient's studies, images, heatmaps, predictions, readings and consents, rows and files.

    The audit trail is append-only and hash-chained, so erasure leaves it as it is. Its events name the
    patient by pseudonymous code only, but keep their details, among them the model's results (label,
    probability, model version) and clinicians' findings.
    """
    images = StudyImage.objects.filter(study__patient=patient)
    names = {name for pair in images.values_list("file", "dicom") for name in pair if name}
    names |= {name for name in Prediction.objects.filter(image__in=images).values_list("heatmap", flat=True) if name}
    names = sorted(names)
    counts = {"studies": Study.objects.filter(patient=patient).count(), "images": images.count(), "files": len(names)}
    code = patient.code
    with transaction.atomic():
        patient.delete()
        audit.record(Action.PATIENT_ERASED, actor=actor, request=request, patient_code=code, via=via, details=counts)
        transaction.on_commit(lambda: _delete_files(names))
    return counts
