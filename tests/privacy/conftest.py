"""Helpers of the privacy tests: the files a test stored (in its `media_root`), uploads, completed studies."""

from __future__ import annotations

from pathlib import Path

from django.core.files.uploadedfile import SimpleUploadedFile

from diagnosis import services
from diagnosis.models import Study
from tests.factories import phantom_bytes


def stored_files(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in root.rglob("*") if path.is_file()}


def png_upload(seed: int = 1, name: str = "slice.png") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, phantom_bytes(seed, True), content_type="image/png")


def submit_and_assess(user, patient, uploads) -> Study:
    """A study submitted through the service and assessed in this process by the real model."""
    study = services.submit_study(user=user, patient=patient, uploads=uploads).study
    services.assess_study(str(study.pk))
    study.refresh_from_db()
    assert study.status == Study.Status.COMPLETED, study.error
    return study
