"""Scans, heatmaps and DICOM copies have no public URL; each is served through a permission-checked view
(streamed, handed to nginx with X-Accel-Redirect, or redirected to a short-lived pre-signed S3 link), and
every access is audited."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import boto3
import pytest
from django.core.files.storage import default_storage
from django.urls import reverse

from diagnosis.models import AuditEvent
from tests.privacy.conftest import png_upload, submit_and_assess
from tests.privacy.samples import dicom_upload, identifiable_mr

pytestmark = pytest.mark.django_db


@pytest.fixture
def study(media_root, clinician_a, patient_a):
    return submit_and_assess(clinician_a, patient_a, [dicom_upload(identifiable_mr())])


def routes(study) -> dict[str, tuple[str, str, str]]:
    """Route -> (stored name, content type, audited action) for the study's first image."""
    image = study.images.get(position=0)
    prediction = image.predictions.get()
    return {
        reverse("study-image", args=[study.pk, image.pk]): (image.file.name, "image/png", "image.viewed"),
        reverse("study-heatmap", args=[study.pk, image.pk]): (prediction.heatmap.name, "image/png", "heatmap.viewed"),
        reverse("study-image-dicom", args=[study.pk, image.pk]): (image.dicom.name, "application/dicom",
                                                                  "image.viewed"),
    }


def test_stored_files_have_no_public_url(study, client_a):
    image = study.images.get()
    for field in (image.file, image.dicom, image.predictions.get().heatmap):
        with pytest.raises(ValueError, match="not accessible via a URL"):
            field.url
        assert client_a.get("/media/" + field.name).status_code == 404


def test_local_storage_streams_each_file_and_audits_each_access(study, client_a, clinician_a):
    for path, (name, content_type, action) in routes(study).items():
        before = AuditEvent.objects.filter(action=action).count()
        for _ in range(2):
            response = client_a.get(path)
            assert response.status_code == 200
            assert response["Content-Type"] == content_type
            assert response["Cache-Control"] == "private, no-store"
            assert b"".join(response.streaming_content) == default_storage.open(name).read()
        events = AuditEvent.objects.filter(action=action).order_by("id")
        assert events.count() == before + 2
        last = events.last()
        assert last.actor == clinician_a and last.patient_code == study.patient.code and last.ip_address


def test_a_download_names_the_study_not_the_patient(study, client_a):
    image = study.images.get()
    response = client_a.get(reverse("study-image", args=[study.pk, image.pk]), {"download": "1"})
    assert response["Content-Disposition"] == f'attachment; filename="study-{study.short_id}-image-1.png"'
    assert AuditEvent.objects.filter(action="image.viewed", details__download=True).exists()


def test_x_accel_redirect_hands_the_transfer_to_nginx(study, client_a, client_b, settings):
    settings.X_ACCEL_REDIRECT_PREFIX = "/protected/"
    for path, (name, content_type, action) in routes(study).items():
        response = client_a.get(path)
        assert response.status_code == 200
        assert response["X-Accel-Redirect"] == "/protected/" + name
        assert response["Content-Type"] == content_type
        assert response["Cache-Control"] == "private, no-store"
        assert response.content == b""  # nginx sends the file; Django sends none of it
        denied = client_b.get(path)
        assert denied.status_code == 404 and "X-Accel-Redirect" not in denied
    image = study.images.get()
    download = client_a.get(reverse("study-image", args=[study.pk, image.pk]), {"download": "1"})
    assert download["Content-Disposition"].startswith("attachment;") and download["X-Accel-Redirect"]
    assert AuditEvent.objects.filter(action__in=["image.viewed", "heatmap.viewed"]).count() == 4


@pytest.fixture
def s3(settings, media_root):
    """S3 storage against moto's in-process S3 (no network), configured as the production settings do."""
    from moto import mock_aws

    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="brainscan-scans")
        settings.STORAGE_BACKEND = "s3"
        settings.STORAGES = {**settings.STORAGES, "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {"bucket_name": "brainscan-scans", "region_name": "us-east-1", "access_key": "testing",
                        "secret_key": "testing", "default_acl": "private", "file_overwrite": True,
                        "querystring_auth": True, "querystring_expire": 60, "signature_version": "s3v4"},
        }}
        yield boto3.client("s3", region_name="us-east-1")


def test_s3_files_are_private_and_served_by_a_short_lived_presigned_link(s3, clinician_a, patient_a, client_a,
                                                                        client_b):
    study = submit_and_assess(clinician_a, patient_a, [dicom_upload(identifiable_mr()), png_upload()])
    for path, (name, _, action) in routes(study).items():
        grants = s3.get_object_acl(Bucket="brainscan-scans", Key=name)["Grants"]
        assert [grant["Permission"] for grant in grants] == ["FULL_CONTROL"]  # the owner only: not public
        response = client_a.get(path)
        assert response.status_code == 302
        link = urlparse(response["Location"])
        query = parse_qs(link.query)
        assert link.path.endswith("/" + name)
        assert query["X-Amz-Expires"] == ["60"] and query["X-Amz-Signature"]
        assert response["Cache-Control"] == "private, no-store"
        assert client_b.get(path).status_code == 404
    assert AuditEvent.objects.filter(action__in=["image.viewed", "heatmap.viewed"]).count() == 3
