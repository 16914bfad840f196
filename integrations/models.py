"""Webhook endpoints, the deliveries owed to them (an outbox) and every attempt to send one.

A delivery's body names the study and the patient's pseudonymous code only; it carries no file and
nothing identifying. The endpoint's secret is stored as it is: it must be at hand to sign every delivery.
"""

from __future__ import annotations

import base64
import secrets
import uuid

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

EVENTS = [
    ("study.completed", "Study completed (the model's result is ready)"),
    ("study.unassessable", "Study cannot be assessed (no image passed the quality check)"),
    ("study.failed", "Study failed"),
    ("study.cancelled", "Study cancelled (consent withdrawn)"),
]
EVENT_NAMES = [name for name, _ in EVENTS]
SECRET_PREFIX = "whsec_"
RESPONSE_BODY_LIMIT = 1024  # bytes of a receiver's answer kept with an attempt


def all_events() -> list[str]:
    return list(EVENT_NAMES)


def new_secret() -> str:
    """A Standard Webhooks secret: "whsec_" and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def new_webhook_id() -> str:
    """The message id (`webhook-id`): the same on every attempt, so a receiver can drop a repeat."""
    return f"msg_{uuid.uuid4().hex}"


def validate_events(value) -> None:
    if not isinstance(value, list) or not value:
        raise ValidationError("Choose at least one event.")
    unknown = sorted({str(event) for event in value} - set(EVENT_NAMES))
    if unknown:
        raise ValidationError(f"Unknown event(s): {', '.join(unknown)}. Choose among {', '.join(EVENT_NAMES)}.")


class WebhookEndpoint(models.Model):
    url = models.URLField(max_length=500, help_text="Where deliveries are POSTed: https (http only outside "
                                                    "production), on a public address unless BRAINSCAN_WEBHOOK_ALLOW "
                                                    "allows it.")
    events = models.JSONField(default=all_events, validators=[validate_events],
                              help_text="The events this endpoint receives.")
    active = models.BooleanField(default=True, help_text="Deliveries are sent only to active endpoints.")
    secret = models.CharField(max_length=100, default=new_secret, editable=False,
                              help_text="Signs every delivery (Standard Webhooks); shown once, at creation.")
    created_at = models.DateTimeField(default=timezone.now)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=255, blank=True, default="")
    failing_since = models.DateTimeField(null=True, blank=True,
                                         help_text="First failed attempt since the last success.")

    class Meta:
        ordering = ["url", "pk"]

    def __str__(self) -> str:
        return self.url

    def clean(self) -> None:
        from integrations.delivery import UrlRefused, resolve

        if self.url:
            try:
                resolve(self.url)
            except UrlRefused as error:
                raise ValidationError({"url": str(error)}) from error

    @property
    def masked_secret(self) -> str:
        return f"{SECRET_PREFIX}{'•' * 8}{self.secret[-4:]}"


class WebhookDelivery(models.Model):
    """One event owed to one endpoint. Sent by a task, or by the sweep when it is due; a sender holds it
    under a short lease (`claim`, `lease_expires_at`), so two workers never send it at the same time."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed, will be retried"
        GIVEN_UP = "given_up", "Given up"

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=32, choices=EVENTS)
    study_id = models.UUIDField(db_index=True, help_text="The study (no link: the delivery outlives an erasure).")
    payload = models.JSONField(help_text="The body's content; each attempt serialises and signs it.")
    webhook_id = models.CharField(max_length=64, unique=True, default=new_webhook_id,
                                  help_text="Sent as webhook-id, the same on every attempt.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    # Who is sending it right now; empty with a lease = reserved by the sweep for a queued task.
    claim = models.CharField(max_length=32, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name_plural = "webhook deliveries"
        indexes = [models.Index(fields=["status", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"{self.event} of study {str(self.study_id)[:8]} to {self.endpoint}"


class WebhookAttempt(models.Model):
    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="history")
    at = models.DateTimeField(default=timezone.now)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.FloatField(default=0)
    error = models.CharField(max_length=500, blank=True, default="")
    response_body = models.TextField(blank=True, default="", help_text="At most the first 1 kB of the answer.")

    class Meta:
        ordering = ["at", "pk"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.status_code or self.error[:40]}"
