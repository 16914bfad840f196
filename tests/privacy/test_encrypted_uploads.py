"""Uploads stream to disk encrypted under a key held only in memory, and are gone when the request ends."""

from __future__ import annotations

import io
import os

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from diagnosis.models import Study
from diagnosis.upload_handlers import EncryptedTemporaryFile
from tests.factories import phantom_bytes
from tests.privacy.samples import IDENTIFYING, identifiable_mr, to_bytes

pytestmark = pytest.mark.no_db


def test_what_is_written_is_noise_and_reads_back_exactly_from_any_offset(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    plain = to_bytes(identifiable_mr())
    spooled = EncryptedTemporaryFile()
    for start in range(0, len(plain), 1000):  # chunks as Django hands them over, of any size
        spooled.append(plain[start:start + 1000])
    assert spooled.read() == plain
    [path] = (tmp_path / "uploads").iterdir()
    on_disk = path.read_bytes()
    assert len(on_disk) == len(plain) and IDENTIFYING["PatientName"].encode() not in on_disk
    assert oct(path.stat().st_mode & 0o777) == "0o600" and oct((tmp_path / "uploads").stat().st_mode & 0o777) == "0o700"
    for offset in (0, 1, 15, 16, 17, 4095, len(plain) - 3):
        spooled.seek(offset)
        assert spooled.read(50) == plain[offset:offset + 50]
    spooled.seek(-10, io.SEEK_END)
    assert spooled.read() == plain[-10:]
    spooled.close()
    assert not path.exists()


@pytest.mark.django_db
def test_an_upload_through_the_form_leaves_no_file_behind(settings, tmp_path, client_a, patient_a):
    settings.VAR_DIR = tmp_path
    data = to_bytes(identifiable_mr())
    # The test client hands files to the handler like a browser's multipart body does.
    response = client_a.post(reverse("study-new"), {"patient": patient_a.code, "images": [
        SimpleUploadedFile("scan.dcm", data), SimpleUploadedFile("b.png", phantom_bytes(2))]})
    assert response.status_code == 302 and Study.objects.get().images.count() == 2
    assert os.listdir(tmp_path / "uploads") == []
