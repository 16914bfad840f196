"""API fixtures: token clients for the personas, and a study assessed by the real model in-process."""

import uuid

import pytest
from django.core.cache import cache
from django.test import override_settings
from pytest_django.live_server_helper import LiveServer

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


@pytest.fixture(scope="session")
def live_server():
    """pytest-django's live server. Django's test server also serves MEDIA_URL, and cannot start with None (how
    BrainScan makes sure no scan has a public URL): while it starts, MEDIA_URL is an unguessable path."""
    with override_settings(MEDIA_URL=f"/{uuid.uuid4().hex}/"):
        server = LiveServer("localhost")
    yield server
    server.stop()
