"""Turn uploaded files into grayscale slices, or say in plain words why a file cannot be used.

Each file is judged on its own, so one bad file never costs the others. What is stored later is
re-encoded from the decoded pixels: no metadata of the upload survives.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile

from ml.imaging import UnreadableImage, read_image

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"


@dataclass
class Slice:
    gray: np.ndarray  # (H, W) float32 in [0, 1]
    source_format: str
    filename: str
    acquisition: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Rejection:
    filename: str
    reason: str
    code: str


class UploadTooLarge(UnreadableImage):
    pass


class UnsupportedType(UnreadableImage):
    pass


def sniff_format(head: bytes) -> str | None:
    if head.startswith(PNG_MAGIC):
        return "PNG"
    if head.startswith(JPEG_MAGIC):
        return "JPEG"
    return None


def decode_upload(upload: UploadedFile) -> list[Slice]:
    """Slices from one uploaded file; raises UnreadableImage (or a subclass) with the reason."""
    name = display_name(upload)
    if upload.size > settings.MAX_UPLOAD_BYTES:
        raise UploadTooLarge(f"The file is {upload.size / 1_048_576:.1f} MB; the limit is "
                             f"{settings.MAX_UPLOAD_BYTES / 1_048_576:.0f} MB.")
    if upload.size == 0:
        raise UnreadableImage("The file is empty.")
    upload.seek(0)
    data = upload.read()
    kind = sniff_format(data[:16])
    if kind is None:
        raise UnsupportedType("The file is not a JPEG or PNG image (its content does not match any supported "
                              "format, whatever its name says).")
    gray = read_image(data, max_pixels=settings.MAX_IMAGE_PIXELS)
    return [Slice(gray=gray, source_format=kind, filename=name)]


def decode_uploads(uploads: list[UploadedFile]) -> tuple[list[Slice], list[Rejection]]:
    slices, rejections = [], []
    for upload in uploads:
        try:
            slices.extend(decode_upload(upload))
        except UnreadableImage as error:
            rejections.append(Rejection(display_name(upload), str(error), rejection_code(error)))
    return slices, rejections


def rejection_code(error: UnreadableImage) -> str:
    if isinstance(error, UploadTooLarge):
        return "too_large"
    if isinstance(error, UnsupportedType):
        return "unsupported_type"
    return "unreadable"


def display_name(upload: UploadedFile) -> str:
    """The file's name for the person who uploaded it; it is shown back, never stored."""
    return (upload.name or "file").rsplit("/", 1)[-1][:120]
