"""End to end with a real worker: a scan with a patient's identity written into it is submitted, assessed
and viewed; no identifying value appears in anything stored, returned or logged."""

from __future__ import annotations

import io
import logging

import pytest
from django.apps import apps
from django.core import serializers
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image

from diagnosis.models import Study
from tests.conftest import logged_in
from tests.factories import phantom_bytes
from tests.privacy.conftest import stored_files
from tests.privacy.samples import (IDENTIFYING_WORDS, MR_SMALL_SOP_UID, MR_SMALL_STUDY_DATE, MR_SMALL_STUDY_UID,
                                   MARKER, dicom_upload, identifiable_mr, marked_mr)
from tests.workers import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]
FORBIDDEN = IDENTIFYING_WORDS + [MR_SMALL_STUDY_UID, MR_SMALL_SOP_UID, MR_SMALL_STUDY_DATE, "CompressedSamples", MARKER]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    return tmp_path_factory.mktemp("privacy-media")


@pytest.fixture(scope="module")
def worker_env(media):
    return {"BRAINSCAN_MEDIA_ROOT": str(media), "BRAINSCAN_LOG_LEVEL": "DEBUG"}


@pytest.fixture
def shared_media(settings, media):
    """This process stores where the worker reads."""
    default = settings.STORAGES["default"]
    settings.STORAGES = {**settings.STORAGES,
                         "default": {**default, "OPTIONS": {**default["OPTIONS"], "location": str(media)}}}
    return media


def jpeg_with_exif() -> bytes:
    exif = Image.Exif()
    exif[0x013B] = "Quillfeather Zebedee"  # Artist
    exif[0x010E] = "MRN40417733 Saint Brigid Infirmary"  # ImageDescription
    buffer = io.BytesIO()
    Image.open(io.BytesIO(phantom_bytes(5))).save(buffer, format="JPEG", exif=exif.tobytes(),
                                                  comment="Quillfeather")
    return buffer.getvalue()


def database_as_json() -> str:
    return "\n".join(serializers.serialize("json", model._base_manager.all()) for model in apps.get_models())


def test_no_identifying_value_is_stored_returned_or_logged(worker, shared_media, caplog, clinician_a, patient_a,
                                                          admin_user):
    uploads = [dicom_upload(identifiable_mr()), SimpleUploadedFile("Quillfeather_Zebedee_photo.jpg", jpeg_with_exif()),
               dicom_upload(identifiable_mr(BurnedInAnnotation="YES"), "refused.dcm"),
               dicom_upload(marked_mr(), "marked.dcm")]
    caplog.set_level(logging.DEBUG)  # everything this process logs from here on, at the most verbose level
    client = logged_in(clinician_a)
    response = client.post(reverse("study-new"), {"patient": patient_a.code, "images": uploads})
    assert response.status_code == 302
    study = Study.objects.get()
    study = wait_for(lambda: Study.objects.filter(pk=study.pk, status=Study.Status.COMPLETED).first(), timeout=90,
                     message=f"study to complete; worker log:\n{worker.log()[-3000:]}")
    images = list(study.images.order_by("position"))
    assert [image.source_format for image in images] == ["DICOM", "JPEG", "DICOM"]

    returned = {}
    for name, path in [("detail", reverse("study-detail", args=[study.pk])),
                       ("panel", reverse("study-panel", args=[study.pk])),
                       ("status", reverse("study-status", args=[study.pk])),
                       ("worklist", reverse("worklist")), ("export", reverse("study-export")),
                       ("new", reverse("study-new"))]:
        returned[name] = client.get(path).getvalue()  # the export streams
    for image in images:
        # MR_small's own pixels (the marked file) are not a brain slice: the gate refuses them, with no heatmap.
        routes = ("study-image", "study-heatmap") if image.predictions.get().heatmap else ("study-image",)
        for route in routes:
            returned[f"{route} {image.position}"] = b"".join(
                client.get(reverse(route, args=[study.pk, image.pk])).streaming_content)
    for image in (images[0], images[2]):
        returned[f"dicom {image.position}"] = b"".join(
            client.get(reverse("study-image-dicom", args=[study.pk, image.pk])).streaming_content)
    returned["api"] = client.get(f"/api/v1/studies/{study.pk}/").content
    admin = logged_in(admin_user)
    for path in (reverse("admin:diagnosis_study_change", args=[study.pk]),
                 reverse("admin:diagnosis_prediction_changelist"), reverse("admin:diagnosis_auditevent_changelist")):
        returned[path] = admin.get(path).content
    assert b"AX T1 FLAIR" in returned["detail"]  # the page does show the scrubbed acquisition facts

    stored = {"database": database_as_json().encode(), **stored_files(shared_media)}
    logged = {"this process": caplog.text.encode(), "worker": worker.log().encode()}
    assert "prediction.stored" in stored["database"].decode() and "succeeded" in logged["worker"].decode()

    leaks = [f"{word!r} in {kind} {name}"
             for kind, found in (("stored", stored), ("returned", returned), ("logged", logged))
             for name, content in found.items() for word in FORBIDDEN if word.lower().encode() in content.lower()]
    assert not leaks, "\n".join(leaks)
