"""Helpers for the API tests: token clients (and their fixtures, imported by the conftests of the folders that
call the API), in-process assessment, uploads and the error shape."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from diagnosis import services
from diagnosis.api import tokens
from diagnosis.models import Study


def token_client(user) -> APIClient:
    """A client that authenticates as `user` with a real API token (none for the anonymous persona)."""
    client = APIClient()
    if user is not None:
        secret, _ = tokens.issue(user=user, request=None)
        client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    return client


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


def assess(study: Study) -> Study:
    """Run the real assessment service (the worker's code, the real model) in this process."""
    services.assess_study(str(study.pk))
    study.refresh_from_db()
    assert study.status == Study.Status.COMPLETED, study.error
    return study


def upload(name: str, data: bytes, content_type: str = "image/png") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


def error_of(response) -> dict:
    """The error object of an API error response, checking the shape every error shares."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["code"], str) and body["error"]["code"]
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert set(body["error"]) <= {"code", "message", "fields", "rejected"}, body
    return body["error"]
