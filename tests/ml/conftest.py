"""A tiny CNN trained once per test session on synthetic phantoms, registered like a real model."""

import pytest

from ml.phantoms import write_phantom_folder

pytestmark = pytest.mark.no_db


@pytest.fixture(scope="session")
def phantom_folder(tmp_path_factory):
    return write_phantom_folder(tmp_path_factory.mktemp("phantoms"), per_class=120, seed=1)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, phantom_folder):
    """(registry root, version) of two small networks (the release recipe's ensemble) trained for a few
    epochs on 240 phantoms. Twelve epochs, not fewer: with eight, the numerics of some CPUs left the
    networks undertrained (held-out accuracy 0.71 at the high-sensitivity threshold)."""
    from ml.pipeline import train_and_register
    from ml.train import TrainConfig

    root = tmp_path_factory.mktemp("registry")
    config = TrainConfig(epochs=12, patience=12, filters=(8, 16, 32, 32), batch_size=16, learning_rate=3e-3,
                         ensemble=2)
    version = train_and_register(phantom_folder, root, config, verbose=0, name_prefix="tiny",
                                 citation="synthetic phantoms")
    return root, version
