"""The ml tests' folder of phantoms: the one the tiny model (tests/conftest.py) was trained on."""

import pytest


@pytest.fixture(scope="session")
def phantom_folder(tiny_training_folder):
    return tiny_training_folder
