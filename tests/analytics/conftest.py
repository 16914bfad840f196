"""Fixtures of the analytics tests: private storage, phantom folders, a copy of the model registry."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from analytics import selectors as analytics_selectors
from diagnosis import selectors as diagnosis_selectors
from ml.phantoms import write_phantom_folder
from ml.registry import ModelRegistry


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


@pytest.fixture(scope="session")
def committed_version() -> str:
    """The version committed in models/ that the application serves by default (the phantom demo model
    until the release model is committed)."""
    name = ModelRegistry(Path(django_settings.BASE_DIR) / "models").active_name()
    assert name, "no model is committed in models/"
    return name


@pytest.fixture
def registry_copy(settings, tmp_path, committed_version):
    """A private registry of copies of the committed model, whose cards a test may change."""
    root = tmp_path / "models"
    source = Path(django_settings.BASE_DIR) / "models" / committed_version

    def add(name: str, changes: dict | None = None, remove: tuple[str, ...] = ()) -> str:
        shutil.copytree(source, root / name)
        card = json.loads((root / name / "card.json").read_text())
        card.update(changes or {})
        for key in remove:
            card.pop(key)
        card["version"] = name
        (root / name / "card.json").write_text(json.dumps(card))
        return name

    settings.MODEL_DIR = root
    settings.MODEL_VERSION = None
    add.registry = lambda: ModelRegistry(root)
    return add


@pytest.fixture(scope="session")
def live_server(request):
    """pytest-django's live server, started with a placeholder MEDIA_URL.

    BrainScan sets MEDIA_URL to None (files never have a public URL), and Django's live server wraps
    the application in a media handler that cannot start without one. The placeholder only exists
    while the server starts; no page links to it.
    """
    from django.test.utils import override_settings
    from pytest_django import live_server_helper

    with override_settings(MEDIA_URL="/unused-media-url/"):
        server = live_server_helper.LiveServer("localhost")
    yield server
    server.stop()
