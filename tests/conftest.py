"""Shared fixtures: the personas of every permission rule, and real services.

Personas: clinician A and clinician B (each on their own patient's care team), an administrator,
and an anonymous visitor. Services (Redis, PostgreSQL, Chromium) are real; when one is missing on
a developer's machine the tests that need it are skipped with the reason, and with
BRAINSCAN_REQUIRE_SERVICES=1 (set by .ci/run) they fail instead.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import json
import os
import shutil
import socket
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client, override_settings

import ml
from ml.phantoms import write_phantom_folder
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
def media_root(settings, tmp_path) -> Path:
    """An empty storage folder for this test, so that 'every stored file' means this test's files."""
    root = tmp_path / "media"
    settings.MEDIA_ROOT = root
    default = settings.STORAGES["default"]
    settings.STORAGES = {**settings.STORAGES,
                         "default": {**default, "OPTIONS": {**default["OPTIONS"], "location": str(root)}}}
    return root


@pytest.fixture(autouse=True)
def no_stored_audit_checkpoints():
    """Each test starts on an empty database, so with an audit trail that has no checkpoint stored yet
    (checkpoints live in the file storage, which outlives the test database's rollback)."""
    from diagnosis.audit import CHECKPOINT_FOLDER

    shutil.rmtree(Path(settings.MEDIA_ROOT) / CHECKPOINT_FOLDER, ignore_errors=True)


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


# The model the tests serve: a tiny network trained on synthetic phantoms through the release pipeline,
# registered like a real model. Training it takes over a minute, so it is kept in the user's cache folder
# (every clone on the machine shares it), keyed by the code that trains and serves it (every file of ml/), by
# the versions of the packages that do, and by its configuration: a change to any of them trains a new one,
# and parallel test processes wait for one of them to train it.
TINY = dict(epochs=12, patience=12, widths=(8, 8, 16, 16, 32), decoder_width=16, batch_size=16, learning_rate=3e-3,
            variants=2, gate_epochs=6, gate_negatives_per_kind=24,
            dropout=0.1, weight_decay=1e-4)  # 12 epochs on 240 phantoms need none of the release's regularisation
TINY_PHANTOMS = dict(per_class=120, seed=1)
TINY_PACKAGES = ("tensorflow", "tensorflow-cpu", "keras", "tf2onnx", "onnx", "onnxruntime", "numpy", "scipy", "pillow")
TEST_CACHE = Path(os.environ.get("BRAINSCAN_TEST_CACHE")
                  or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "brainscan" / "test-models")
TINY_KEPT_DAYS = 30  # a cached model no run has used for this long is removed when another is trained


@pytest.fixture(scope="session")
def tiny_training_folder(tmp_path_factory) -> Path:
    return write_phantom_folder(tmp_path_factory.mktemp("phantoms"), **TINY_PHANTOMS)


def _installed_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:  # tensorflow or tensorflow-cpu: one of them is installed
        return None


def _tiny_key() -> str:
    versions = [_installed_version(package) for package in TINY_PACKAGES]
    digest = hashlib.sha256(repr((sorted(TINY.items()), sorted(TINY_PHANTOMS.items()), versions)).encode())
    for source in sorted(Path(ml.__file__).parent.glob("*.py")):
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, tiny_training_folder):
    """(registry root, version) of a small network with its quality gate, trained for a few epochs on 240
    phantoms; each test session gets a private copy of the registry."""
    from ml.pipeline import train_and_register
    from ml.train import TrainConfig

    cached = TEST_CACHE / f"tiny-{_tiny_key()}"
    TEST_CACHE.mkdir(parents=True, exist_ok=True)
    with open(TEST_CACHE / "tiny.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (cached / "ACTIVE").is_file():
            shutil.rmtree(cached, ignore_errors=True)
            staging = cached.with_suffix(".partial")
            shutil.rmtree(staging, ignore_errors=True)
            train_and_register([tiny_training_folder], staging, TrainConfig(**TINY), verbose=0, name_prefix="tiny")
            staging.rename(cached)
            _forget_unused_tiny_models()
        os.utime(cached)  # in use: not removed by a later run
    root = tmp_path_factory.mktemp("registry") / "models"
    shutil.copytree(cached, root)
    return root, ModelRegistry(root).active()


def _forget_unused_tiny_models() -> None:
    """Remove cached tiny models that no run used for TINY_KEPT_DAYS (their code or packages have changed)."""
    cutoff = time.time() - TINY_KEPT_DAYS * 86400
    for folder in TEST_CACHE.glob("tiny-*"):
        if folder.is_dir() and folder.stat().st_mtime < cutoff:
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def served_model(tiny_model):
    """Every test serves the tiny model (workers started by tests inherit it through settings.MODEL_DIR):
    the application's behaviour must not hang on how the release model reads synthetic images. Tests of
    the release model itself ask for `release_model`."""
    root, version = tiny_model
    settings.MODEL_DIR, settings.MODEL_VERSION = root, None
    return version


@pytest.fixture
def release_model(settings):
    """The version committed in models/ that the application serves by default, served by this test."""
    settings.MODEL_DIR, settings.MODEL_VERSION = Path(settings.BASE_DIR) / "models", None
    name = ModelRegistry(settings.MODEL_DIR).active_name()
    assert name, "no model is committed in models/"
    return ModelRegistry(settings.MODEL_DIR).get(name)


@pytest.fixture
def registry_copy(settings, tmp_path, tiny_model):
    """A private registry of copies of the served (tiny) model, whose cards a test may change."""
    root = tmp_path / "models"
    source = tiny_model[1].path

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
