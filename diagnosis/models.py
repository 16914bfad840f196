"""Patients, consent, studies, images, predictions, readings and the audit trail.

No model holds a patient's name or birth date: a patient is known by a pseudonymous code, and the
hospital keeps the key to that code in its own systems.
"""

from __future__ import annotations

import secrets
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O or 1/I: codes are read aloud


def new_patient_code() -> str:
    return "P-" + "".join(secrets.choice(CODE_ALPHABET) for _ in range(8))


class Patient(models.Model):
    code = models.CharField(max_length=32, unique=True, default=new_patient_code,
                            help_text="Pseudonymous code shown everywhere instead of the patient's identity.")
    care_team = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="patients", blank=True,
                                       help_text="Clinicians who may see this patient and submit studies.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code

    def has_active_consent(self, scope: str) -> bool:
        return self.consents.active(scope).exists()


class ConsentQuerySet(models.QuerySet):
    def active(self, scope: str):
        return self.filter(scope=scope, granted_at__lte=timezone.now(), withdrawn_at__isnull=True)


class Consent(models.Model):
    class Scope(models.TextChoices):
        AI_ANALYSIS = "ai_analysis", "AI analysis of scans"

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="consents")
    scope = models.CharField(max_length=32, choices=Scope.choices, default=Scope.AI_ANALYSIS)
    granted_at = models.DateTimeField(default=timezone.now)
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True,
                                    related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ConsentQuerySet.as_manager()

    class Meta:
        ordering = ["-granted_at"]

    def __str__(self) -> str:
        state = "withdrawn" if self.withdrawn_at else "granted"
        return f"{self.patient.code}: {self.get_scope_display()} ({state})"

    @property
    def is_active(self) -> bool:
        return self.withdrawn_at is None and self.granted_at <= timezone.now()


class Study(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        PROCESSING = "processing", "Processing"
        COMPLETED = "completed", "Completed"
        # Every image was refused by the quality gate: a clinician reads it by hand.
        UNASSESSABLE = "unassessable", "Cannot be assessed"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE_STATES = (Status.QUEUED, Status.PROCESSING)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="studies")
    submitted_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="studies")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True, help_text="When its task was last sent.")
    attempts = models.PositiveIntegerField(default=0, help_text="Times a worker has started this study.")
    # The delivery that holds the study while it runs; a second delivery sees it and stands back.
    claim = models.CharField(max_length=64, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    error_code = models.CharField(max_length=32, blank=True, default="")
    error = models.TextField(blank=True, default="", help_text="Why the study failed, for a clinician.")
    # The study's result: that of its most suspicious image, or for a series its most suspicious region.
    probability = models.FloatField(null=True, blank=True)
    label = models.CharField(max_length=16, blank=True, default="")
    series = models.BooleanField(default=False, help_text="One series (volume) in anatomical order, rather than "
                                                           "separate slices.")
    suspicious_slices = models.PositiveIntegerField(null=True, blank=True, help_text="Slices at or above the "
                                                                                     "threshold, once assessed.")
    region = models.JSONField(default=dict, blank=True, help_text="A series' most suspicious run of slices: first, "
                                                                  "last and peak position, and its score.")
    idempotency_key = models.CharField(max_length=128, blank=True, default="")

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "studies"
        constraints = [
            models.UniqueConstraint(fields=["submitted_by", "idempotency_key"], condition=~Q(idempotency_key=""),
                                    name="unique_idempotency_key_per_user"),
        ]
        indexes = [models.Index(fields=["submitted_by", "-created_at"]), models.Index(fields=["status", "updated_at"])]

    def __str__(self) -> str:
        return f"Study {str(self.id)[:8]} of {self.patient.code}"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE_STATES

    @property
    def short_id(self) -> str:
        return str(self.id)[:8]


def image_upload_path(image: "StudyImage", filename: str) -> str:
    return f"studies/{image.study_id}/{image.id}.png"


def dicom_upload_path(image: "StudyImage", filename: str) -> str:
    return f"studies/{image.study_id}/{image.id}.dcm"


class StudyImage(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="images")
    position = models.PositiveIntegerField()
    file = models.FileField(upload_to=image_upload_path, max_length=255)
    # The de-identified DICOM the PNG was made from (the frames of one file share it); the upload
    # itself is never stored.
    dicom = models.FileField(upload_to=dicom_upload_path, max_length=255, null=True, blank=True)
    source_format = models.CharField(max_length=16, help_text="JPEG, PNG or DICOM, as uploaded.")
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64, help_text="Of the stored, re-encoded file.")
    # Non-identifying DICOM attributes (modality, sequence, slice thickness, pixel spacing...).
    acquisition = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["position"]
        constraints = [models.UniqueConstraint(fields=["study", "position"], name="unique_image_position")]

    def __str__(self) -> str:
        return f"Image {self.position + 1} of {self.study}"


def heatmap_name(image: StudyImage, model_version: str) -> str:
    """Deterministic, so a retried task overwrites its heatmap instead of leaving a second one."""
    return f"heatmaps/{image.study_id}/{image.pk}-{model_version}.png"


def heatmap_upload_path(prediction: "Prediction", filename: str) -> str:
    return heatmap_name(prediction.image, prediction.model_version)


class Prediction(models.Model):
    """The model's answer for one image. An image the quality gate refused keeps the network's probability
    (for evaluation and audit) but is shown to clinicians as "cannot be assessed", with no label, no
    probability and no heatmap."""

    class Quality(models.TextChoices):
        OK = "ok", "Assessed"
        REJECTED = "rejected", "Cannot be assessed"

    image = models.ForeignKey(StudyImage, on_delete=models.CASCADE, related_name="predictions")
    model_version = models.CharField(max_length=64)
    model_sha256 = models.CharField(max_length=64)
    probability = models.FloatField()
    label = models.CharField(max_length=16)
    threshold = models.FloatField()
    quality = models.CharField(max_length=16, choices=Quality.choices, default=Quality.OK, db_index=True)
    quality_code = models.CharField(max_length=32, blank=True, default="",
                                    help_text="Why the quality gate refused the image (see ml.gate).")
    quality_message = models.CharField(max_length=255, blank=True, default="")
    heatmap = models.FileField(upload_to=heatmap_upload_path, max_length=255, blank=True)
    features = models.JSONField(default=dict)
    feature_probability = models.FloatField(null=True, blank=True)
    feature_contributions = models.JSONField(default=list)
    inference_ms = models.FloatField(help_text="Network only.")
    latency_ms = models.FloatField(help_text="Preprocessing, network, heatmap and features.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["image__position"]
        # The guard that makes a duplicated task harmless: one prediction per image and model.
        constraints = [models.UniqueConstraint(fields=["image", "model_version"], name="one_prediction_per_model")]

    def __str__(self) -> str:
        if not self.usable:
            return f"cannot be assessed ({self.quality_code}) by {self.model_version}"
        return f"{self.label} ({self.probability:.3f}) by {self.model_version}"

    @property
    def usable(self) -> bool:
        return self.quality == self.Quality.OK

    @property
    def quality_summary(self) -> dict:
        """The API's and the export's `quality` object."""
        return {"status": self.quality, "code": self.quality_code, "message": self.quality_message}


class Reading(models.Model):
    """A clinician's own reading of a study, recorded beside the model's."""

    class Finding(models.TextChoices):
        TUMOR = "tumor", "Tumor"
        NO_TUMOR = "no_tumor", "No tumor"
        UNCERTAIN = "uncertain", "Uncertain, needs further imaging"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="readings")
    clinician = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="readings")
    agrees_with_model = models.BooleanField()
    finding = models.CharField(max_length=16, choices=Finding.choices)
    comment = models.TextField(blank=True, default="", max_length=2000)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        constraints = [models.UniqueConstraint(fields=["study", "clinician"], name="one_reading_per_clinician")]


class WorkerHeartbeat(models.Model):
    hostname = models.CharField(max_length=255, unique=True)
    last_seen = models.DateTimeField()
    model_version = models.CharField(max_length=64, blank=True, default="")

    def __str__(self) -> str:
        return self.hostname


class AuditEventQuerySet(models.QuerySet):
    """No bulk update or delete: the application can only append to the trail."""

    def update(self, **kwargs):
        raise PermissionError("Audit events cannot be changed.")

    def delete(self):
        raise PermissionError("Audit events cannot be deleted.")


class ApiToken(models.Model):
    """A REST API credential that expires and can be revoked.

    Only the token's SHA-256 is stored: a copy of the database holds no usable token. Tokens are
    256 random bits, so an unsalted hash is enough.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"API token of {self.user} until {self.expires_at:%Y-%m-%d %H:%M}"


class AuditEvent(models.Model):
    """One thing that happened, append-only and hash-chained to the event before it.

    It names objects by type and id and patients by their pseudonymous code only, so that erasing
    a patient removes nothing from the trail but the link to their data.
    """

    class Action(models.TextChoices):
        LOGIN = "auth.login", "Logged in"
        LOGOUT = "auth.logout", "Logged out"
        LOGIN_FAILED = "auth.login_failed", "Failed login"
        STUDY_CREATED = "study.created", "Study created"
        STUDY_VIEWED = "study.viewed", "Study viewed"
        STUDY_LISTED = "study.listed", "Studies listed"
        STUDY_RETRIED = "study.retried", "Study run again"
        STUDY_REQUEUED = "study.requeued", "Study re-queued by the sweeper"
        STUDY_CANCELLED = "study.cancelled", "Study cancelled"
        STUDY_EXPORTED = "study.exported", "Studies exported"
        UPLOAD_REJECTED = "upload.rejected", "Upload rejected"
        IMAGE_VIEWED = "image.viewed", "Image viewed"
        HEATMAP_VIEWED = "heatmap.viewed", "Heatmap viewed"
        PREDICTION_STARTED = "prediction.started", "Prediction started"
        PREDICTION_STORED = "prediction.stored", "Prediction stored"
        PREDICTION_FAILED = "prediction.failed", "Prediction failed"
        STUDY_UNASSESSABLE = "study.unassessable", "Study cannot be assessed"
        READING_RECORDED = "reading.recorded", "Reading recorded"
        PATIENT_CREATED = "patient.created", "Patient created"
        PATIENT_CHANGED = "patient.changed", "Patient changed"
        PATIENT_VIEWED = "patient.viewed", "Patients listed"
        PATIENT_ERASED = "patient.erased", "Patient erased"
        CONSENT_GRANTED = "consent.granted", "Consent granted"
        CONSENT_WITHDRAWN = "consent.withdrawn", "Consent withdrawn"
        USER_CHANGED = "user.changed", "Account changed"
        MODEL_LISTED = "model.listed", "Models listed"
        API_TOKEN_ISSUED = "api.token_issued", "API token issued"
        API_TOKEN_REVOKED = "api.token_revoked", "API token revoked"
        ANALYTICS_VIEWED = "analytics.viewed", "Analytics viewed"

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                              related_name="+")
    actor_username = models.CharField(max_length=150, blank=True, default="")
    action = models.CharField(max_length=32, choices=Action.choices, db_index=True)
    object_type = models.CharField(max_length=32, blank=True, default="")
    object_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    patient_code = models.CharField(max_length=32, blank=True, default="", db_index=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    via = models.CharField(max_length=16, blank=True, default="", help_text="web, api, admin, worker or command")
    details = models.JSONField(default=dict, blank=True)
    previous_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)
    key_id = models.CharField(max_length=16, blank=True, default="",
                              help_text="The audit key that signed this event; empty for events from before keys.")

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_username or '-'} {self.action}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise PermissionError("Audit events cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("Audit events cannot be deleted.")


class AuditChainHead(models.Model):
    """A single row locked while an event is appended, so the chain never forks."""

    last_hash = models.CharField(max_length=64)
