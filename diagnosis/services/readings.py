"""What a clinician does with a study: run it again, record a reading."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from diagnosis import audit
from diagnosis.models import AuditEvent, Reading, Study
from diagnosis.services.errors import InvalidState
from diagnosis.services.submission import check_can_submit, enqueue
from diagnosis.services.transitions import move

Action = AuditEvent.Action
Status = Study.Status
# Failures a new run would repeat: the stored scan itself is unusable, so only a new study can help. The
# others (an outage, runs that kept crashing, a consent withdrawn and since recorded again) can clear up.
PERMANENT_FAILURES = frozenset({"unreadable_image", "assessment_error"})


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
    with transaction.atomic():
        # Another retry may have run meanwhile and failed for good: then the study stays failed.
        moved = move(Study.objects.filter(pk=study.pk, status__in=(Status.FAILED, Status.CANCELLED))
                     .exclude(error_code__in=PERMANENT_FAILURES), Status.QUEUED, attempts=0, enqueued_at=timezone.now())
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
