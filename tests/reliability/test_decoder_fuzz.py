"""Random and mutated bytes into the decoders: an image or UnreadableImage, nothing else, and quickly."""

from datetime import timedelta

import numpy as np
import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diagnosis.uploads import decode_upload
from ml.imaging import Limits, UnreadableImage, read_image, read_stored
from tests.reliability.badfiles import seeds

pytestmark = pytest.mark.no_db
MAX_PIXELS = 4_000_000
FUZZ = settings(max_examples=300, deadline=timedelta(seconds=5),  # generous: the machine may be busy
                suppress_health_check=[HealthCheck.too_slow])


@st.composite
def mutated(draw) -> bytes:
    """A valid PNG, JPEG or DICOM file (see seeds()) with bytes overwritten, inserted or cut off."""
    data = bytearray(draw(st.sampled_from(seeds())))
    for _ in range(draw(st.integers(1, 8))):
        position = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["overwrite", "insert", "delete"]))
        chunk = draw(st.binary(min_size=1, max_size=8))
        if kind == "overwrite":
            data[position:position + len(chunk)] = chunk
        elif kind == "insert":
            data[position:position] = chunk
        else:
            del data[position:position + len(chunk)]
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


untrusted_bytes = st.one_of(
    st.binary(max_size=2048),
    st.builds(lambda magic, tail: magic + tail, st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"]),
              st.binary(max_size=2048)),
    mutated(),
)


def check_image(gray, max_pixels: int) -> None:
    assert isinstance(gray, np.ndarray) and gray.ndim == 2 and gray.dtype == np.float32
    assert gray.size <= max_pixels and np.isfinite(gray).all() and gray.min() >= 0.0 and gray.max() <= 1.0


@FUZZ
@given(untrusted_bytes)
def test_read_image_answers_an_image_or_unreadable(data):
    try:
        gray = read_image(data, Limits(max_pixels=MAX_PIXELS))
    except UnreadableImage as error:
        assert str(error)
    else:
        check_image(gray, MAX_PIXELS)


@FUZZ
@given(untrusted_bytes)
def test_decode_upload_answers_slices_or_unreadable(data):
    upload = SimpleUploadedFile("scan.png", data, content_type="image/png")
    try:
        slices = decode_upload(upload)
    except UnreadableImage as error:
        assert str(error)
    else:
        assert slices
        for piece in slices:
            check_image(read_stored(piece.png), django_settings.MAX_IMAGE_PIXELS)
