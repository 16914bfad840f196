"""The error shape for every kind of failure, and throttling per user and per anonymous address."""

import pytest
from django.core.exceptions import ImproperlyConfigured
from rest_framework.test import APIClient

from brainscan import env
from tests.api.helpers import error_of, token_client

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("method,url,kwargs,status,code", [
    ("get", "/api/v1/studies/", {}, 401, "not_authenticated"),
    ("get", "/api/v1/nothing-here/", {}, 404, "not_found"),
    ("put", "/api/v1/studies/", {}, 405, "method_not_allowed"),
    ("post", "/api/v1/patients/", {"data": "{not json", "content_type": "application/json"}, 400, "parse_error"),
    ("post", "/api/v1/patients/", {"data": "<x/>", "content_type": "application/xml"}, 415, "unsupported_media_type"),
    ("get", "/api/v1/studies/", {"HTTP_ACCEPT": "text/csv"}, 406, "not_acceptable"),
])
def test_every_error_has_the_same_shape(method, url, kwargs, status, code, admin_user):
    client = token_client(None if status == 401 else admin_user)
    response = getattr(client, method)(url, **kwargs)
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert error_of(response)["code"] == code


def test_an_oversized_body_is_413_in_the_same_shape(api_a, settings):
    settings.MAX_UPLOAD_BYTES = 1024
    settings.MAX_FILES_PER_STUDY = 1
    response = api_a.post("/api/v1/studies/", data=b"x" * (1024 + 1_048_577), content_type="application/octet-stream")
    assert response.status_code == 413
    assert error_of(response)["code"] == "payload_too_large"


def test_anonymous_requests_are_throttled_per_address(settings):
    """The anonymous rate guards what anonymous callers can reach: the token endpoint, the schema and docs."""
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK,
                               "DEFAULT_THROTTLE_RATES": {"anon": "2/minute", "user": "100/minute"}}
    here, elsewhere = APIClient(REMOTE_ADDR="10.0.0.1"), APIClient(REMOTE_ADDR="10.0.0.2")
    guess = {"username": "someone", "password": "guess"}
    assert [here.post("/api/v1/auth/token/", guess).status_code for _ in range(2)] == [401, 401]
    # A made-up X-Forwarded-For does not pass for another client.
    throttled = here.post("/api/v1/auth/token/", guess, HTTP_X_FORWARDED_FOR="10.9.9.9")
    assert throttled.status_code == 429
    assert error_of(throttled)["code"] == "throttled"
    assert 0 < int(throttled["Retry-After"]) <= 60
    assert here.get("/api/schema/").status_code == 429
    assert elsewhere.post("/api/v1/auth/token/", guess).status_code == 401


def test_users_are_throttled_each_on_their_own(clinician_a, clinician_b, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK,
                               "DEFAULT_THROTTLE_RATES": {"anon": "100/minute", "user": "3/minute"}}
    a, b = token_client(clinician_a), token_client(clinician_b)
    assert [a.get("/api/v1/models/").status_code for _ in range(4)] == [200, 200, 200, 429]
    assert b.get("/api/v1/models/").status_code == 200


@pytest.mark.no_db
@pytest.mark.parametrize("value,ok", [("30/minute", True), ("5/s", True), ("1000/day", True), ("0/minute", False),
                                      ("30 per minute", False), ("30/fortnight", False), ("-3/hour", False)])
def test_rates_are_parsed_strictly(monkeypatch, value, ok):
    monkeypatch.setenv("BRAINSCAN_API_USER_RATE", value)
    if ok:
        assert env.rate("BRAINSCAN_API_USER_RATE", "600/minute") == value
    else:
        with pytest.raises(ImproperlyConfigured, match="BRAINSCAN_API_USER_RATE"):
            env.rate("BRAINSCAN_API_USER_RATE", "600/minute")
