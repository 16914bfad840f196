"""API fixtures: token clients for the personas, and a study assessed by the real model in-process."""


import pytest
from django.core.cache import cache

from tests.api.helpers import assess, token_client
from tests.factories import StudyFactory


@pytest.fixture(autouse=True)
def fresh_throttles():
    """Request counts live in the cache; each test starts with none."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def api_a(clinician_a):
    return token_client(clinician_a)


@pytest.fixture
def api_b(clinician_b):
    return token_client(clinician_b)


@pytest.fixture
def api_admin(admin_user):
    return token_client(admin_user)


@pytest.fixture
def api_anonymous():
    return token_client(None)


@pytest.fixture
def study_a(clinician_a, patient_a):
    """Clinician A's completed study of two images."""
    return assess(StudyFactory(patient=patient_a, submitted_by=clinician_a, images=2))

