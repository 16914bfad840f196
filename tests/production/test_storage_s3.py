"""Scans and heatmaps on a real S3-compatible server (moto's server mode on a local port).

The settings come from the same environment variables as in production (BRAINSCAN_STORAGE=s3 and
AWS_*), applied with override_settings(STORAGES=...), which in Django 5.2 resets default_storage
through the setting_changed signal. The worker subprocess gets the variables themselves.

moto serves pre-signed links but checks neither their signature nor their expiry (MinIO and AWS do),
so the lifetime is checked in the link itself.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, override_settings
from django.urls import reverse

from diagnosis import services
from diagnosis.models import AuditEvent, Prediction, Study, StudyImage
from tests.conftest import logged_in, need
from tests.factories import PatientFactory, StudyFactory, UserFactory, phantom_bytes
from tests.production.conftest import object_keys, s3_variables, settings_with
from tests.workers import Worker, wait_for

LINK_SECONDS = 45


@pytest.fixture(scope="module")
def s3_settings(s3_endpoint, s3_bucket):
    bucket, _ = s3_bucket
    computed = settings_with(**s3_variables(s3_endpoint, bucket, BRAINSCAN_S3_URL_SECONDS=str(LINK_SECONDS)))
    return {name: computed[name] for name in ("STORAGE_BACKEND", "STORAGES", "CONTENT_SECURITY_POLICY")}


@pytest.fixture
def s3(s3_settings, s3_bucket):
    with override_settings(**s3_settings):
        assert default_storage.bucket_name == s3_bucket[0]  # default_storage was rebuilt for S3
        yield s3_bucket


def uploads(*seeds: int) -> list[SimpleUploadedFile]:
    return [SimpleUploadedFile(f"scan-{seed}.png", phantom_bytes(seed, seed % 2 == 0), content_type="image/png")
            for seed in seeds]


def fetch(link: str) -> requests.Response:
    return requests.get(link, timeout=10)


@pytest.mark.django_db
def test_a_submitted_study_is_stored_in_the_bucket_and_reads_back(s3, clinician_a, patient_a):
    bucket, client = s3
    study = services.submit_study(user=clinician_a, patient=patient_a, uploads=uploads(1, 2)).study

    keys = object_keys(client, bucket, f"studies/{study.pk}/")
    images = list(study.images.order_by("position"))
    assert keys == sorted(image.file.name for image in images) and len(keys) == 2
    for image in images:
        stored = client.get_object(Bucket=bucket, Key=image.file.name)["Body"].read()
        assert hashlib.sha256(stored).hexdigest() == image.sha256
        with default_storage.open(image.file.name, "rb") as handle:  # the application's own read path
            assert handle.read() == stored


@pytest.mark.django_db
def test_storage_overwrites_a_name_on_s3_as_on_local_disk(s3, tmp_path):
    """A retried task saves its heatmap under the same name: both backends must keep that name."""
    name = "heatmaps/overwrite-check/image-v1.png"
    assert default_storage.save(name, ContentFile(b"first")) == name
    assert default_storage.save(name, ContentFile(b"second")) == name
    with default_storage.open(name, "rb") as handle:
        assert handle.read() == b"second"
    default_storage.delete(name)
    local = settings_with(BRAINSCAN_MEDIA_ROOT=str(tmp_path))["STORAGES"]
    with override_settings(STORAGES=local):
        assert default_storage.save(name, ContentFile(b"first")) == name
        assert default_storage.save(name, ContentFile(b"second")) == name
        assert (tmp_path / name).read_bytes() == b"second"


@pytest.fixture
def stored_study(s3, clinician_a, patient_a):
    return services.submit_study(user=clinician_a, patient=patient_a, uploads=uploads(3)).study


@pytest.mark.django_db
@pytest.mark.parametrize("persona", ["clinician_a", "admin"])
def test_the_image_view_redirects_to_a_short_lived_presigned_link_that_works(persona, personas, stored_study, s3,
                                                                             s3_endpoint):
    image = stored_study.images.get()
    response = logged_in(personas[persona]).get(reverse("study-image", args=[stored_study.pk, image.pk]))

    assert response.status_code == 302
    link = response["Location"]
    query = parse_qs(urlparse(link).query)
    assert link.startswith(f"{s3_endpoint}/{s3[0]}/{image.file.name}?")
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"] and "X-Amz-Signature" in query
    assert query["X-Amz-Expires"] == [str(LINK_SECONDS)]
    signed_at = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    assert abs((datetime.now(timezone.utc) - signed_at).total_seconds()) < 30
    assert response["Cache-Control"] == "private, no-store"
    assert AuditEvent.objects.filter(action=AuditEvent.Action.IMAGE_VIEWED, object_id=str(image.pk)).exists()

    fetched = fetch(link)
    assert fetched.status_code == 200
    assert hashlib.sha256(fetched.content).hexdigest() == image.sha256
    assert fetched.headers["Content-Type"] == "image/png"
    assert fetched.headers["Cache-Control"] == "private, no-store"


@pytest.mark.django_db
def test_a_download_link_makes_s3_send_the_attachment_header(client_a, stored_study, s3):
    image = stored_study.images.get()
    response = client_a.get(reverse("study-image", args=[stored_study.pk, image.pk]) + "?download=1")
    fetched = fetch(response["Location"])
    assert fetched.status_code == 200
    assert fetched.headers["Content-Disposition"] == (
        f'attachment; filename="study-{stored_study.short_id}-image-1.png"')


@pytest.mark.django_db
@pytest.mark.parametrize("persona, status", [("clinician_b", 404), ("anonymous", 302)])
def test_no_link_for_someone_who_may_not_see_the_study(persona, status, personas, stored_study, s3):
    image = stored_study.images.get()
    user = personas[persona]
    client = logged_in(user) if user else Client()
    response = client.get(reverse("study-image", args=[stored_study.pk, image.pk]))
    assert response.status_code == status
    assert "X-Amz-Signature" not in response.get("Location", "")
    if persona == "anonymous":
        assert response["Location"].startswith(reverse("login"))


@pytest.mark.django_db
def test_links_are_signed_for_the_public_endpoint_and_allowed_by_the_csp(s3_endpoint, s3_bucket, client_a,
                                                                         stored_study):
    """In compose the servers reach http://minio:9000 while browsers reach the site itself."""
    bucket, _ = s3_bucket
    public = s3_endpoint.replace("localhost", "127.0.0.1")
    computed = settings_with(**s3_variables(s3_endpoint, bucket, BRAINSCAN_S3_PUBLIC_URL=public))
    with override_settings(STORAGES=computed["STORAGES"], STORAGE_BACKEND="s3",
                           CONTENT_SECURITY_POLICY=computed["CONTENT_SECURITY_POLICY"]):
        image = stored_study.images.get()
        link = client_a.get(reverse("study-image", args=[stored_study.pk, image.pk]))["Location"]
        assert link.startswith(f"{public}/{bucket}/")
        assert fetch(link).status_code == 200
        page = client_a.get(reverse("study-detail", args=[stored_study.pk]))
        img_src = next(part for part in page["Content-Security-Policy"].split(";") if "img-src" in part)
        assert public in img_src.split()


def test_without_an_endpoint_the_csp_allows_aws_links():
    computed = settings_with(BRAINSCAN_STORAGE="s3", AWS_STORAGE_BUCKET_NAME="brainscan-scans",
                             AWS_S3_ENDPOINT_URL="", BRAINSCAN_S3_PUBLIC_URL="")
    assert "https://*.amazonaws.com" in computed["CONTENT_SECURITY_POLICY"]["DIRECTIVES"]["img-src"]
    local = settings_with(BRAINSCAN_STORAGE="local")
    assert local["CONTENT_SECURITY_POLICY"]["DIRECTIVES"]["img-src"] == ["'self'", "data:", "blob:"]


@pytest.mark.django_db
def test_uploads_carry_no_acl_header(s3, clinician_a, patient_a):
    """Buckets with ACLs disabled (the AWS default since 2023) refuse a PUT that carries one."""
    assert default_storage.default_acl is None
    study = services.submit_study(user=clinician_a, patient=patient_a, uploads=uploads(4)).study
    bucket, client = s3
    grants = client.get_object_acl(Bucket=bucket, Key=study.images.get().file.name)["Grants"]
    assert all(grant["Grantee"].get("URI", "").split("/")[-1] != "AllUsers" for grant in grants)


# --- The worker path: a real Celery worker reading scans from and writing heatmaps to S3 -------------


@pytest.fixture(scope="module")
def s3_worker(django_db_setup, django_db_blocker, redis_available, s3_endpoint, s3_bucket, tmp_path_factory):
    need(redis_available, "Redis is not running on 127.0.0.1:6379")
    with django_db_blocker.unblock():
        worker = Worker("s3", tmp_path_factory.mktemp("workers"), **s3_variables(s3_endpoint, s3_bucket[0])).start()
    yield worker
    worker.stop()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_worker_assesses_from_s3_and_erasure_empties_the_bucket(s3_worker, s3):
    bucket, client = s3
    clinician = UserFactory(username="s3-clinician")
    patient = PatientFactory(care_team=[clinician])
    study = services.submit_study(user=clinician, patient=patient, uploads=uploads(5, 6)).study

    done = wait_for(lambda: Study.objects.filter(pk=study.pk, status=Study.Status.COMPLETED).first(), timeout=120,
                    message=f"the study to complete on S3; worker log:\n{s3_worker.log()[-3000:]}")
    predictions = list(Prediction.objects.filter(image__study=done))
    assert len(predictions) == 2
    heatmaps = object_keys(client, bucket, f"heatmaps/{study.pk}/")
    assert heatmaps == sorted(p.heatmap.name for p in predictions)
    link = logged_in(clinician).get(reverse("study-heatmap", args=[study.pk, predictions[0].image_id]))["Location"]
    assert fetch(link).content[:8] == b"\x89PNG\r\n\x1a\n"

    admin = UserFactory(username="s3-admin", is_staff=True, is_superuser=True)
    other = StudyFactory(images=1)  # another patient's files stay
    counts = services.erase_patient(patient=patient, actor=admin)
    assert counts == {"studies": 1, "images": 2, "files": 4}
    wait_for(lambda: not object_keys(client, bucket, f"studies/{study.pk}/")
             and not object_keys(client, bucket, f"heatmaps/{study.pk}/"), timeout=10, message="objects deleted")
    assert StudyImage.objects.filter(study=other).get().file.name in object_keys(client, bucket, "studies/")
    event = AuditEvent.objects.get(action=AuditEvent.Action.PATIENT_ERASED)
    assert event.patient_code == patient.code and event.details == counts
