"""Submitting a study: store the usable files, audit, and enqueue the assessment once committed."""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass, field

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone

from diagnosis import audit
from diagnosis.models import AuditEvent, Consent, Patient, Study, StudyImage
from diagnosis.selectors import patients_for, submission_rejections
from diagnosis.services.errors import ConsentRequired, NotAllowed, NothingUsable, ServiceError
from diagnosis.uploads import Rejection, display_name, read_uploads

log = logging.getLogger(__name__)
Action = AuditEvent.Action


@dataclass
class Submission:
    study: Study
    rejections: list[Rejection] = field(default_factory=list)
    created: bool = True


@dataclass(frozen=True)
class _Stored:
    """A slice already in storage, waiting for its row."""

    image_id: uuid.UUID
    file_name: str
    dicom_name: str
    width: int
    height: int
    sha256: str
    source_format: str
    acquisition: dict


def submit_study(*, user, patient: Patient, uploads: list, request=None, via: str = "web",
                 idempotency_key: str = "") -> Submission:
    """Store the usable files as a new queued study and enqueue it once the transaction commits.

    Files that cannot be used are reported in `rejections` and audited; the others go through. Each slice
    is stored as soon as it is decoded (a series of hundreds of slices never sits in memory); the rows are
    written in one transaction at the end, in the study's order, and the files are removed again if
    anything fails. With an idempotency key, a repeated submission returns the study the first one created,
    and the files it rejected.
    """
    if idempotency_key:
        existing = Study.objects.filter(submitted_by=user, idempotency_key=idempotency_key).first()
        if existing is not None:
            return _replay(existing, uploads)
    check_can_submit(user, patient)
    if not uploads:
        raise ServiceError("Choose at least one image to upload.")
    if len(uploads) > max(settings.MAX_FILES_PER_STUDY, settings.MAX_SLICES):
        raise ServiceError(f"A study holds at most {settings.MAX_FILES_PER_STUDY} files, or one series of at most "
                           f"{settings.MAX_SLICES} slices; {len(uploads)} files were sent.")
    study_id = uuid.uuid4()
    stored: list[str] = []
    try:
        received = read_uploads(uploads, lambda piece: _store(study_id, piece, stored), patient_code=patient.code)
        for rejection in received.rejections + ([received.refused] if received.refused else []):
            audit.record(Action.UPLOAD_REJECTED, actor=user, request=request, patient_code=patient.code, via=via,
                         details={"reason": rejection.code})
        if received.refused is not None:
            raise NothingUsable(f"Nothing was stored: {received.refused.reason}",
                                received.rejections + [received.refused])
        if not received.kept:
            raise NothingUsable("None of the files could be used; nothing was stored.", received.rejections)
        with transaction.atomic():
            study = Study.objects.create(id=study_id, patient=patient, submitted_by=user, series=received.series,
                                         idempotency_key=idempotency_key, enqueued_at=timezone.now())
            StudyImage.objects.bulk_create([
                StudyImage(id=piece.image_id, study=study, position=position, file=piece.file_name,
                           dicom=piece.dicom_name or None, width=piece.width, height=piece.height,
                           sha256=piece.sha256, source_format=piece.source_format, acquisition=piece.acquisition)
                for position, piece in enumerate(received.kept)])
            replayable = {"rejected": _recorded(uploads, received.rejections)} if idempotency_key else {}
            audit.record(Action.STUDY_CREATED, actor=user, request=request, obj=study, patient_code=patient.code,
                         via=via, details={"images": len(received.kept), "series": received.series,
                                           "rejected_files": len(received.rejections), **replayable})
            enqueue(study)
    except IntegrityError:
        delete_files(stored)
        if idempotency_key:  # the same key won a race in another request
            return _replay(Study.objects.get(submitted_by=user, idempotency_key=idempotency_key), uploads)
        raise
    except BaseException:
        delete_files(stored)
        raise
    return Submission(study, received.rejections)


def _store(study_id: uuid.UUID, piece, stored: list[str]) -> _Stored:
    """Put one decoded slice (and, once per DICOM file, its de-identified copy) in storage."""
    image_id = uuid.uuid4()
    file_name = default_storage.save(f"studies/{study_id}/{image_id}.png", ContentFile(piece.png))
    stored.append(file_name)
    dicom_name = ""
    if piece.dicom is not None:
        if not piece.dicom.stored_as:  # the frames of one DICOM file share its copy
            piece.dicom.stored_as = default_storage.save(f"studies/{study_id}/{image_id}.dcm",
                                                         ContentFile(piece.dicom.data))
            piece.dicom.data = b""  # stored: no need to keep it in memory
            stored.append(piece.dicom.stored_as)
        dicom_name = piece.dicom.stored_as
    return _Stored(image_id, file_name, dicom_name, piece.width, piece.height, hashlib.sha256(piece.png).hexdigest(),
                   piece.source_format, piece.acquisition)


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
    from diagnosis.tasks import assess_study_task

    study_id = str(study.pk)

    def send() -> None:
        try:
            assess_study_task.apply_async(args=[study_id], retry=False)
        except Exception as error:  # any broker failure; the study is safe in the database
            log.warning("Could not enqueue study %s (%s); the sweeper will send it", study_id, type(error).__name__)
            _mark_unsent(study_id)

    transaction.on_commit(send)


def _mark_unsent(study_id: str) -> None:
    try:
        Study.objects.filter(pk=study_id, status=Study.Status.QUEUED).update(enqueued_at=None)
    except DatabaseError:  # then the sweeper finds it once it looks stale
        log.warning("Could not mark study %s as unsent", study_id)


def delete_files(names: list[str]) -> None:
    for name in names:
        try:
            default_storage.delete(name)
        except Exception:
            log.exception("Could not delete stored file %s", name)
