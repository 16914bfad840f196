"""BRAINSCAN_PRODUCTION=1: the application refuses to start without its secrets or with a bad value,
and with them Django's deployment check finds nothing to warn about. Each case is a fresh process,
as a server start is."""

from __future__ import annotations

import pytest

from tests.production.conftest import PRODUCTION_AUDIT_KEYS, PRODUCTION_SECRET, clean_env, manage, production_env

pytestmark = [pytest.mark.no_db, pytest.mark.slow]


@pytest.mark.parametrize("variables, message", [
    ({}, "The environment variable DJANGO_SECRET_KEY is required"),
    ({"DJANGO_SECRET_KEY": "too-short-" * 3}, "DJANGO_SECRET_KEY must be at least 50 random characters"),
    ({"DJANGO_SECRET_KEY": "django-insecure-" + "x1y2z3w4v5" * 5}, "not a django-insecure- key"),
    ({"DJANGO_SECRET_KEY": "a" * 60}, "DJANGO_SECRET_KEY must be at least 50 random characters"),
    ({"DJANGO_SECRET_KEY": PRODUCTION_SECRET}, "BRAINSCAN_AUDIT_KEYS is required in production"),
    ({"DJANGO_SECRET_KEY": PRODUCTION_SECRET, "BRAINSCAN_AUDIT_KEYS": "k1:short"}, "must be at least 32 characters"),
    ({"DJANGO_SECRET_KEY": PRODUCTION_SECRET, "BRAINSCAN_AUDIT_KEYS": PRODUCTION_AUDIT_KEYS},
     "DJANGO_ALLOWED_HOSTS is required in production"),
    ({"DJANGO_SECRET_KEY": PRODUCTION_SECRET, "BRAINSCAN_AUDIT_KEYS": PRODUCTION_AUDIT_KEYS,
      "DJANGO_ALLOWED_HOSTS": "*"}, "DJANGO_ALLOWED_HOSTS cannot be *"),
    ({"DJANGO_SECRET_KEY": PRODUCTION_SECRET, "BRAINSCAN_AUDIT_KEYS": PRODUCTION_AUDIT_KEYS,
      "DJANGO_ALLOWED_HOSTS": "a.example", "DJANGO_DEBUG": "1"},
     "DJANGO_DEBUG cannot be on when BRAINSCAN_PRODUCTION is on"),
])
def test_production_refuses_to_start_without_its_secrets(tmp_path, variables, message):
    result = manage(clean_env(tmp_path, BRAINSCAN_PRODUCTION="1", **variables), "check")
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and message in result.stderr


@pytest.mark.parametrize("variables, message", [
    ({"BRAINSCAN_MAX_UPLOAD_MB": "abc"}, "BRAINSCAN_MAX_UPLOAD_MB='abc' is not an integer."),
    ({"BRAINSCAN_MAX_UPLOAD_MB": "0"}, "BRAINSCAN_MAX_UPLOAD_MB=0 is outside [1, 1024]."),
    ({"BRAINSCAN_TASK_SOFT_SECONDS": "0"}, "BRAINSCAN_TASK_SOFT_SECONDS=0 is below its minimum, 1."),
    ({"BRAINSCAN_BEHIND_PROXY": "maybe"}, "BRAINSCAN_BEHIND_PROXY='maybe' is not a boolean"),
    ({"BRAINSCAN_STORAGE": "ftp"}, "BRAINSCAN_STORAGE='ftp' must be one of local, s3."),
    ({"BRAINSCAN_STORAGE": "s3"}, "AWS_STORAGE_BUCKET_NAME is required with BRAINSCAN_STORAGE=s3."),
    ({"DATABASE_URL": "mysql://db/brainscan"}, "DATABASE_URL must be a URL with one of the schemes"),
    ({"AWS_S3_ENDPOINT_URL": "minio:9000"}, "AWS_S3_ENDPOINT_URL must be a URL with one of the schemes"),
])
def test_a_bad_value_stops_the_start_with_its_name(tmp_path, variables, message):
    result = manage(production_env(tmp_path, **variables), "check")
    assert result.returncode != 0
    assert message in result.stderr


@pytest.mark.parametrize("variables", [
    {},
    # The compose stack's shape: behind nginx, files on S3.
    {"BRAINSCAN_BEHIND_PROXY": "1", "BRAINSCAN_STORAGE": "s3", "AWS_STORAGE_BUCKET_NAME": "brainscan-scans",
     "AWS_S3_ENDPOINT_URL": "http://minio:9000", "BRAINSCAN_S3_PUBLIC_URL": "https://brainscan.example.org"},
], ids=["plain", "compose"])
def test_the_deployment_check_passes_without_a_warning(tmp_path, variables):
    result = manage(production_env(tmp_path, **variables), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_the_development_settings_do_warn(tmp_path):
    """The check above is not vacuous: without the production switch it fails on the same command."""
    result = manage(clean_env(tmp_path), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode != 0
    assert "security.W004" in result.stderr and "security.W012" in result.stderr
