"""Patients and their consent (administrators), and erasure."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from diagnosis import audit, events
from diagnosis.models import AuditEvent, Consent, Patient, Prediction, Study, StudyImage
from diagnosis.services.submission import delete_files
from diagnosis.services.transitions import move

Action = AuditEvent.Action
Status = Study.Status
WITHDRAWN = "The patient withdrew consent for AI analysis before the analysis finished; no result was kept."


def consented() -> Exists:
    """For filtering studies: their patient has an active consent to AI analysis."""
    return Exists(Consent.objects.active(Consent.Scope.AI_ANALYSIS).filter(patient=OuterRef("patient")))


def cancel_for_withdrawn_consent(studies, *, actor=None, request=None, via: str = "worker") -> int:
    """Cancel the studies of `studies` (a queryset that names the states they may be in), each audited.

    All rows are locked and moved before the first event is written, so the audit chain's head is the
    last lock taken, as everywhere, and a withdrawal and a worker cancelling the same studies cannot
    deadlock. Returns how many were cancelled.
    """
    with transaction.atomic():
        cancelled = list(studies.select_for_update(of=("self",)).select_related("patient"))
        ids = [study.pk for study in cancelled]
        move(Study.objects.filter(pk__in=ids), Status.CANCELLED, error_code="consent_withdrawn", error=WITHDRAWN)
        # What a run had stored before the withdrawal (a series' first chunks) is not kept either.
        results = Prediction.objects.filter(image__study__in=ids)
        heatmaps = [name for name in results.values_list("heatmap", flat=True) if name]
        results.delete()
        transaction.on_commit(lambda: delete_files(heatmaps))
        for study in cancelled:
            audit.record(Action.STUDY_CANCELLED, actor=actor, request=request, obj=study,
                         patient_code=study.patient.code, via=via, details={"reason": "consent_withdrawn"})
            study.refresh_from_db()
            events.finished(study)
    return len(cancelled)


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

    A study already running is left to its worker, which keeps no result without consent (see
    `assessment.claim` and `assessment.finish`).
    """
    now = timezone.now()
    with transaction.atomic():
        if not Consent.objects.filter(pk=consent.pk, withdrawn_at__isnull=True).update(withdrawn_at=now):
            return 0
        consent.refresh_from_db()
        cancelled = 0
        if not consent.patient.has_active_consent(consent.scope):
            cancelled = cancel_for_withdrawn_consent(Study.objects.filter(patient=consent.patient,
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
        transaction.on_commit(lambda: delete_files(names))
    return counts
