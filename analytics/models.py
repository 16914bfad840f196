"""What the analytics commands computed: numbers in JSON, images in storage under ANALYTICS_DIR.

Pages only read these rows (and the model cards); the heavy work runs in management commands.
"""

from django.db import models
from django.utils import timezone


class DatasetStudy(models.Model):
    """One run of `build_analytics` over a data folder; the newest is shown."""

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    source = models.CharField(max_length=255, help_text="Name of the data folder studied.")
    images = models.PositiveIntegerField()
    seconds = models.FloatField(help_text="How long the build took.")
    numbers = models.JSONField(help_text="Counts, features, duplicates, and the stored figures with alt texts.")

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "dataset studies"

    def __str__(self) -> str:
        return f"Dataset study of {self.source} ({self.images} images, {self.created_at:%Y-%m-%d %H:%M})"


class ModelReport(models.Model):
    """The rendered figures and measured inference time of one model version's card.

    Built by a task (analytics.tasks) when a model is trained or first served, never in a web request:
    the row exists from the moment the build is asked for, `preparing` until the figures are stored.
    """

    class Status(models.TextChoices):
        PREPARING = "preparing", "Being prepared"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    version = models.CharField(max_length=64)
    card_digest = models.CharField(max_length=64, help_text="sha256 of the card the figures were drawn from.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PREPARING)
    error = models.TextField(blank=True, default="")
    requested_at = models.DateTimeField(default=timezone.now, help_text="When the build was last asked for.")
    created_at = models.DateTimeField(default=timezone.now)
    figures = models.JSONField(default=dict, help_text="Per place on the page: stored name, title and alt text.")
    inference = models.JSONField(default=dict, help_text="Per-image serving time measured on phantoms.")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["version", "card_digest"], name="one_report_per_card")]

    def __str__(self) -> str:
        return f"Report of {self.version}"


class LearningCurve(models.Model):
    """Test figures of the model's architecture trained on growing shares of its own train split."""

    model_version = models.CharField(max_length=64, db_index=True)
    created_at = models.DateTimeField(default=timezone.now)
    source = models.CharField(max_length=255)
    matches_model_split = models.BooleanField(
        help_text="Whether the folder reproduced the test split recorded in the model card.")
    epochs = models.PositiveIntegerField()
    seconds = models.FloatField()
    points = models.JSONField(help_text="One entry per share of the training set.")
    figure = models.JSONField(help_text="Stored name, title and alt text of the plot.")

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Learning curve of {self.model_version} ({self.created_at:%Y-%m-%d %H:%M})"
