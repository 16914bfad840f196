"""API fixtures: a study assessed by the served model in-process (token clients are in tests/conftest.py)."""


import pytest

from tests.api.helpers import api_a, api_admin, api_anonymous, api_b, assess, fresh_throttles  # noqa: F401
from tests.factories import StudyFactory


@pytest.fixture
def study_a(clinician_a, patient_a):
    """Clinician A's completed study of two images."""
    return assess(StudyFactory(patient=patient_a, submitted_by=clinician_a, images=2))

