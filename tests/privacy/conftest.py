"""Fixtures and helpers of the privacy tests: a private, empty file storage per test, completed studies."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from diagnosis import services
from diagnosis.models import Study
from tests.factories import phantom_bytes


@pytest.fixture
def media_root(tmp_path, settings) -> Path:
    """An empty storage folder for this test, so 'every stored file' means this test's files."""
    root = tmp_path / "media"
    settings.MEDIA_ROOT = root
    default = settings.STORAGES["default"]
    settings.STORAGES = {**settings.STORAGES,
                         "default": {**default, "OPTIONS": {**default["OPTIONS"], "location": str(root)}}}
    return root


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
