"""Shared fixtures: the personas of every permission rule, and real services.

Personas: clinician A and clinician B (each on their own patient's care team), an administrator,
and an anonymous visitor. Services (Redis, PostgreSQL, Chromium) are real; when one is missing on
a developer's machine the tests that need it are skipped with the reason, and with
BRAINSCAN_REQUIRE_SERVICES=1 (set by .ci/run) they fail instead.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client, override_settings

from ml.registry import ModelRegistry, sha256_of
from tests.factories import PASSWORD, PatientFactory, UserFactory

REQUIRE_SERVICES = os.environ.get("BRAINSCAN_REQUIRE_SERVICES") == "1"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379


def need(condition: bool, reason: str) -> None:
    """Skip (or, in CI, fail) when a real service the test needs is missing."""
    if not condition:
        if REQUIRE_SERVICES:
            pytest.fail(f"Required service missing: {reason}")
        pytest.skip(reason)


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def live_server():
    """pytest-django's live server (browser and API tests). Django's test server wraps the site in a
    media handler that cannot start with MEDIA_URL = None (how BrainScan makes sure no scan has a
    public URL): while it starts, MEDIA_URL is an unguessable path; afterwards it is None again."""
    from pytest_django.live_server_helper import LiveServer

    with override_settings(MEDIA_URL=f"/{uuid.uuid4().hex}/"):
        server = LiveServer("localhost")
    yield server
    server.stop()


@pytest.fixture
def isolated_media(settings, tmp_path):
    """Files stored by this test go to a folder of its own (for tests that count stored files)."""
    location = tmp_path / "media"
    settings.MEDIA_ROOT = location
    default = settings.STORAGES["default"]
    settings.STORAGES = {**settings.STORAGES,
                         "default": {**default, "OPTIONS": {**default["OPTIONS"], "location": str(location)}}}
    return location


@pytest.fixture
def clinician_a(db):
    return UserFactory(username="clinician_a")


@pytest.fixture
def clinician_b(db):
    return UserFactory(username="clinician_b")


@pytest.fixture
def admin_user(db):
    return UserFactory(username="admin", is_staff=True, is_superuser=True)


@pytest.fixture
def patient_a(clinician_a):
    return PatientFactory(care_team=[clinician_a])


@pytest.fixture
def patient_b(clinician_b):
    return PatientFactory(care_team=[clinician_b])


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def client_a(clinician_a):
    return logged_in(clinician_a)


@pytest.fixture
def client_b(clinician_b):
    return logged_in(clinician_b)


@pytest.fixture
def admin_client_(admin_user):
    return logged_in(admin_user)


@pytest.fixture
def anonymous():
    return Client()


@pytest.fixture
def personas(clinician_a, clinician_b, admin_user):
    return {"clinician_a": clinician_a, "clinician_b": clinician_b, "admin": admin_user, "anonymous": None}


@pytest.fixture(scope="session")
def redis_available() -> bool:
    return port_open(REDIS_HOST, REDIS_PORT)


@pytest.fixture(scope="module")
def worker_env() -> dict:
    """Extra environment variables for the module's worker; a module overrides this fixture to set some."""
    return {}


@pytest.fixture(scope="module")
def worker(request, django_db_setup, django_db_blocker, redis_available, tmp_path_factory, worker_env):
    """A real Celery worker process, over Redis and on the test database, for the test module."""
    from tests.workers import Worker

    need(redis_available, "Redis is not running on 127.0.0.1:6379")
    name = request.module.__name__.rsplit(".", 1)[-1]
    with django_db_blocker.unblock():
        process = Worker(name, tmp_path_factory.mktemp("workers"), **worker_env).start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    need(Path(path).exists(), "Chromium is not installed (apt-get install chromium)")
    return path


@pytest.fixture(scope="session")
def dataset_dir() -> Path:
    path = Path(settings.DATASET_DIR)
    need(path.is_dir(), f"The shared MRI dataset is not at {path} (set BRAINSCAN_DATASET); a user's clone has none")
    return path


__all__ = ["PASSWORD", "need", "port_open", "logged_in"]


@pytest.fixture(scope="session")
def committed_version() -> str:
    """The version committed in models/ that the application serves by default."""
    name = ModelRegistry(Path(settings.BASE_DIR) / "models").active_name()
    assert name, "no model is committed in models/"
    return name


@pytest.fixture
def registry_copy(settings, tmp_path, committed_version):
    """A private registry of copies of the committed model, whose cards a test may change."""
    root = tmp_path / "models"
    source = Path(settings.BASE_DIR) / "models" / committed_version

    def add(name: str, changes: dict | None = None, remove: tuple[str, ...] = ()) -> str:
        shutil.copytree(source, root / name)
        card = json.loads((root / name / "card.json").read_text())
        card.update(changes or {})
        for key in remove:
            card.pop(key)
        card["version"] = name
        (root / name / "card.json").write_text(json.dumps(card))
        # The checksums cover the card: a test's variant is a new version, with its own sums.
        sums = {path.name: sha256_of(path) for path in sorted((root / name).iterdir()) if path.name != "SHA256SUMS"}
        (root / name / "SHA256SUMS").write_text("".join(f"{digest}  {file}\n" for file, digest in sums.items()))
        return name

    settings.MODEL_DIR = root
    settings.MODEL_VERSION = None
    add.registry = lambda: ModelRegistry(root)
    return add

