"""Fixtures of the analytics tests: private storage, phantom folders."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings as django_settings

from analytics import selectors as analytics_selectors
from diagnosis import selectors as diagnosis_selectors
from ml.phantoms import write_phantom_folder


@pytest.fixture(autouse=True)
def private_storage(settings, tmp_path):
    """Each test stores its analytics files in its own folder."""
    settings.STORAGES = {**django_settings.STORAGES, "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(tmp_path / "media")}}}
    return tmp_path / "media"


@pytest.fixture(autouse=True)
def fresh_card_caches():
    """Cards are cached per process by version name; tests register versions of their own."""
    diagnosis_selectors.model_card.cache_clear()
    analytics_selectors.cached_card_digest.cache_clear()
    yield
    diagnosis_selectors.model_card.cache_clear()
    analytics_selectors.cached_card_digest.cache_clear()


@pytest.fixture(scope="session")
def phantom_folder(tmp_path_factory) -> Path:
    """Six phantoms per label, tumor ones split into two subtype folders as in the real data."""
    root = tmp_path_factory.mktemp("phantoms") / "data"
    write_phantom_folder(root, 6, seed=11)
    tumors = sorted((root / "tumor").iterdir())
    for index, path in enumerate(tumors):
        target = root / ("glioma" if index % 2 else "meningioma")
        target.mkdir(exist_ok=True)
        path.rename(target / path.name)
    (root / "tumor").rmdir()
    return root
