"""A tiny network trained on synthetic phantoms through the release pipeline, registered like a real model.

Training it takes about a minute, so it is kept under var/test-cache/, keyed by the code that trains and
serves it (every file of ml/) and by its configuration: a change to either trains a new one, and
parallel test processes wait for one of them to train it instead of each training their own.
"""

import fcntl
import hashlib
import shutil
from pathlib import Path

import pytest

import ml
from ml.phantoms import write_phantom_folder

pytestmark = pytest.mark.no_db
TINY = dict(epochs=12, patience=12, widths=(8, 8, 16, 16, 32), decoder_width=16, batch_size=16, learning_rate=3e-3,
            variants=2, gate_epochs=6, gate_negatives_per_kind=24)
PHANTOMS = dict(per_class=120, seed=1)
CACHE = Path(__file__).resolve().parents[2] / "var" / "test-cache"


@pytest.fixture(scope="session")
def phantom_folder(tmp_path_factory):
    return write_phantom_folder(tmp_path_factory.mktemp("phantoms"), **PHANTOMS)


def _key() -> str:
    digest = hashlib.sha256(repr((sorted(TINY.items()), sorted(PHANTOMS.items()))).encode())
    for source in sorted(Path(ml.__file__).parent.glob("*.py")):
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, phantom_folder):
    """(registry root, version) of a small network with its quality gate, trained for a few epochs on 240
    phantoms; each test session gets a private copy of the registry."""
    from ml.pipeline import train_and_register
    from ml.registry import ModelRegistry
    from ml.train import TrainConfig

    cached = CACHE / f"tiny-{_key()}"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "tiny.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (cached / "ACTIVE").is_file():
            shutil.rmtree(cached, ignore_errors=True)
            staging = cached.with_suffix(".partial")
            shutil.rmtree(staging, ignore_errors=True)
            train_and_register([phantom_folder], staging, TrainConfig(**TINY), verbose=0, name_prefix="tiny")
            staging.rename(cached)
    root = tmp_path_factory.mktemp("registry") / "models"
    shutil.copytree(cached, root)
    return root, ModelRegistry(root).active()
