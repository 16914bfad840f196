"""What is stored from an upload: pixels re-encoded (no metadata of any kind), a de-identified DICOM copy,
never the uploaded bytes, and never a temporary file on disk."""

from __future__ import annotations

import io
import struct
import zipfile

import numpy as np
import pydicom
import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile, TemporaryUploadedFile
from django.urls import reverse
from PIL import Image, ImageCms
from PIL.PngImagePlugin import PngInfo

from diagnosis.models import AuditEvent, Study, StudyImage
from ml.files import read_file
from ml.imaging import read_stored
from tests.factories import phantom_bytes
from tests.privacy.conftest import stored_files, submit_and_assess
from tests.privacy.samples import IDENTIFYING_WORDS, dicom_upload, identifiable_mr, multiframe_mr, to_bytes

pytestmark = pytest.mark.django_db

SECRET = "Quillfeather-Zebedee"  # written into every metadata slot of the uploads below


def _exif() -> bytes:
    exif = Image.Exif()
    exif[0x010E] = f"ImageDescription {SECRET}"
    exif[0x013B] = f"Artist {SECRET}"
    return exif.tobytes()


def _xmp() -> bytes:
    return f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description creator="{SECRET}"/></x:xmpmeta>'.encode()


def _icc() -> bytes:
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    return profile.tobytes() + SECRET.encode()  # any bytes in an APP2/iCCP slot must go


def _zip_payload() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("patient.txt", f"Name: {SECRET}")
    return buffer.getvalue()


def jpeg_with_everything() -> bytes:
    image = Image.open(io.BytesIO(phantom_bytes(3, True))).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=_exif(), icc_profile=_icc(), comment=f"COM {SECRET}", xmp=_xmp())
    return buffer.getvalue() + _zip_payload()


def png_with_everything() -> bytes:
    image = Image.open(io.BytesIO(phantom_bytes(4, False)))
    info = PngInfo()
    info.add_text("Author", SECRET)
    info.add_itxt("Description", f"iTXt {SECRET}")
    info.add_text("Comment", f"zTXt {SECRET}", zip=True)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, exif=_exif(), icc_profile=_icc())
    return buffer.getvalue() + _zip_payload()


def png_chunks(data: bytes) -> list[str]:
    chunks, offset = [], 8
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        chunks.append(kind.decode())
        offset += 12 + length
        if kind == b"IEND":
            break
    assert offset == len(data), "bytes after IEND"
    return chunks


def test_the_metadata_is_really_in_the_uploads():
    jpeg, png = jpeg_with_everything(), png_with_everything()
    with Image.open(io.BytesIO(jpeg)) as image:
        assert {"exif", "icc_profile", "comment", "xmp"} <= set(image.info)
    with Image.open(io.BytesIO(png)) as image:
        assert {"Author", "Description", "Comment", "exif", "icc_profile"} <= set(image.info)
    assert SECRET.encode() in jpeg and b"PK\x03\x04" in png


@pytest.mark.parametrize("name, data", [("photo.jpg", jpeg_with_everything()), ("scan.png", png_with_everything())])
def test_stored_and_served_images_are_rebuilt_from_pixels(media_root, client_a, patient_a, name, data):
    response = client_a.post(reverse("study-new"), {"patient": patient_a.code,
                                                    "images": [SimpleUploadedFile(name, data)]})
    assert response.status_code == 302
    image = StudyImage.objects.get()
    stored = default_storage.open(image.file.name).read()
    served = b"".join(client_a.get(reverse("study-image", args=[image.study_id, image.pk])).streaming_content)
    assert served == stored
    for content in (stored, served):
        assert SECRET.encode() not in content and b"PK\x03\x04" not in content
        assert png_chunks(content) == ["IHDR", "IDAT", "IEND"]  # no tEXt, iTXt, zTXt, eXIf, iCCP, nothing after
        with Image.open(io.BytesIO(content)) as decoded:
            assert decoded.info == {} and decoded.mode == "I;16"  # stored at 16 bits: full depth for every input
    # the stored file is what the model reads: exactly the slice the command line reads from the upload
    np.testing.assert_array_equal(read_stored(stored), read_file(data).slices[0])
    assert list(stored_files(media_root)) == [image.file.name]


def test_dicom_through_the_web_form_stores_pixels_and_a_deidentified_copy_only(media_root, client_a, patient_a):
    original = to_bytes(identifiable_mr())
    response = client_a.post(reverse("study-new"), {"patient": patient_a.code, "images": [dicom_upload(original)]})
    assert response.status_code == 302
    image = StudyImage.objects.get()
    assert image.source_format == "DICOM" and (image.width, image.height) == (128, 128)
    assert image.acquisition["series_description"] == "AX T1 FLAIR"
    files = stored_files(media_root)
    assert sorted(files) == sorted([image.file.name, image.dicom.name])
    assert original not in files.values()
    for content in files.values():
        for word in IDENTIFYING_WORDS:
            assert word.encode() not in content, word
    copy = pydicom.dcmread(io.BytesIO(files[image.dicom.name]))
    assert copy.PatientName == patient_a.code and copy.PatientIdentityRemoved == "YES"


def test_the_study_page_shows_acquisition_facts_and_offers_the_deidentified_copy(media_root, client_a, clinician_a,
                                                                                 patient_a):
    ds = identifiable_mr()
    ds.MagneticFieldStrength = 3
    study = submit_and_assess(clinician_a, patient_a, [dicom_upload(ds)])
    image = study.images.get()
    page = client_a.get(reverse("study-detail", args=[study.pk])).content.decode()
    for text in ("Series", "AX T1 FLAIR", "Slice thickness (mm)", "0.8", "Pixel spacing (mm)", "0.3125 × 0.3125",
                 "Field strength (T)", "Download de-identified DICOM"):
        assert text in page, text
    response = client_a.get(reverse("study-image-dicom", args=[study.pk, image.pk]))
    assert response.status_code == 200 and response["Content-Type"] == "application/dicom"
    assert response["Content-Disposition"] == f'attachment; filename="study-{study.short_id}-image-1.dcm"'
    assert pydicom.dcmread(io.BytesIO(b"".join(response.streaming_content))).PatientName == patient_a.code
    assert AuditEvent.objects.filter(action="image.viewed", object_id=str(image.pk),
                                     details__format="dicom").exists()


def test_a_png_image_has_no_dicom_to_download(media_root, client_a, clinician_a, patient_a):
    study = submit_and_assess(clinician_a, patient_a, [SimpleUploadedFile("a.png", phantom_bytes(1))])
    image = study.images.get()
    assert client_a.get(reverse("study-image-dicom", args=[study.pk, image.pk])).status_code == 404


def test_multi_frame_dicom_gives_one_image_per_frame_sharing_one_copy(media_root, client_a, patient_a, settings):
    settings.MAX_DICOM_FRAMES = 5
    response = client_a.post(reverse("study-new"), {"patient": patient_a.code,
                                                    "images": [dicom_upload(multiframe_mr(5))]})
    assert response.status_code == 302
    images = list(StudyImage.objects.order_by("position"))
    assert len(images) == 5 and len({image.dicom.name for image in images}) == 1
    assert [image.acquisition["frame"] for image in images] == [f"{n} of 5" for n in range(1, 6)]
    assert len(stored_files(media_root)) == 6


def test_refusals_reach_the_form_and_the_audit_trail_without_identifying_data(media_root, client_a, patient_a,
                                                                              settings):
    settings.MAX_DICOM_FRAMES = 2
    burned = identifiable_mr(BurnedInAnnotation="YES")
    response = client_a.post(reverse("study-new"), {
        "patient": patient_a.code,
        "images": [dicom_upload(burned), dicom_upload(multiframe_mr(3), "series.dcm"),
                   SimpleUploadedFile("ok.png", phantom_bytes(1))],
    })
    assert response.status_code == 302  # the good file went through
    messages = [str(m) for m in response.wsgi_request._messages]
    assert any("Burned In Annotation = YES" in m for m in messages)
    assert any("holds 3 frames; at most 2" in m for m in messages)
    reasons = sorted(AuditEvent.objects.filter(action="upload.rejected").values_list("details__reason", flat=True))
    assert reasons == ["burned_in_annotation", "too_large"]
    assert Study.objects.get().images.count() == 1
    assert list(stored_files(media_root)) == [StudyImage.objects.get().file.name]


def test_uploads_stay_in_memory_even_above_the_default_memory_threshold(media_root, client_a, patient_a, settings,
                                                                       monkeypatch):
    def no_temporary_file(*args, **kwargs):
        pytest.fail("An upload was written to a temporary file")

    monkeypatch.setattr(TemporaryUploadedFile, "__init__", no_temporary_file)
    settings.MAX_DICOM_FRAMES = 12
    ds = multiframe_mr(1)
    ds.Rows = ds.Columns = 512
    ds.NumberOfFrames = 6
    ds.PixelData = np.random.default_rng(0).integers(0, 4000, (6, 512, 512), dtype="<i2").tobytes()
    data = to_bytes(ds)
    assert len(data) > 2_621_440  # Django's default FILE_UPLOAD_MAX_MEMORY_SIZE
    response = client_a.post(reverse("study-new"), {"patient": patient_a.code, "images": [dicom_upload(data)]})
    assert response.status_code == 302
    assert StudyImage.objects.count() == 6
