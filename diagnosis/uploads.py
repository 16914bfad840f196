"""Turn uploaded files into stored slices, or say in plain words why a file cannot be used.

Each file is judged on its own, so one bad file never costs the others. What is stored later is
re-encoded from the decoded pixels: no metadata of a JPEG or PNG upload survives. A DICOM file also
keeps a de-identified copy of itself (diagnosis.dicom); its original bytes are never stored.

Memory stays bounded whatever is sent: sizes are checked from each file's header before decoding (and
the files of one request share a pixel budget), a process decodes one file at a time, and each slice
is encoded to its stored 16-bit PNG as soon as it is decoded, its pixels dropped.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile

from diagnosis.deidentify import StudyKey
from diagnosis.dicom import read_dicom
from ml.dicom import is_dicom
from ml.imaging import PixelBudget, UnreadableImage, encode_png, read_image

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"


@dataclass(eq=False)
class DeidentifiedDicom:
    """The de-identified copy of one DICOM upload, shared by the slices of its frames."""

    data: bytes


# One decode at a time per process: a web process's threads wait for each other rather than each holding a
# decoded image at once.
_decoding = threading.Lock()


@dataclass
class Slice:
    png: bytes  # the stored form: 16-bit grayscale PNG (ml.imaging.encode_png)
    width: int
    height: int
    source_format: str
    filename: str
    acquisition: dict = field(default_factory=dict)
    dicom: DeidentifiedDicom | None = None


@dataclass(frozen=True)
class Rejection:
    filename: str
    reason: str
    code: str


class UploadTooLarge(UnreadableImage):
    code = "too_large"


class UnsupportedType(UnreadableImage):
    code = "unsupported_type"


def sniff_format(head: bytes) -> str | None:
    if head.startswith(PNG_MAGIC):
        return "PNG"
    if head.startswith(JPEG_MAGIC):
        return "JPEG"
    return None


def decode_upload(upload: UploadedFile, study_key: StudyKey | None = None, limits=None) -> list[Slice]:
    """Slices from one uploaded file; raises UnreadableImage (or a subclass) with the reason.

    `study_key` de-identifies DICOM files consistently within one study; pass the same key for
    every file of a submission, and the same `limits` (they carry the submission's pixel budget).
    """
    with _decoding:
        return _decode(upload, study_key or StudyKey.new(), limits or settings.IMAGE_LIMITS)


def _decode(upload: UploadedFile, study_key: StudyKey, limits) -> list[Slice]:
    name = display_name(upload)
    if upload.size > settings.MAX_UPLOAD_BYTES:
        raise UploadTooLarge(f"The file is {upload.size / 1_048_576:.1f} MB; the limit is "
                             f"{settings.MAX_UPLOAD_BYTES / 1_048_576:.0f} MB.")
    if upload.size == 0:
        raise UnreadableImage("The file is empty.")
    upload.seek(0)
    data = upload.read()
    if is_dicom(data[:132]):
        dicom = read_dicom(data, study_key, limits)
        copy = DeidentifiedDicom(dicom.deidentified)
        return [stored_slice(gray, "DICOM", name, acquisition=facts, dicom=copy)
                for gray, facts in zip(dicom.frames, dicom.acquisition)]
    kind = sniff_format(data[:16])
    if kind is None:
        raise UnsupportedType("The file is not a JPEG, PNG or DICOM image (its content does not match any "
                              "supported format, whatever its name says).")
    return [stored_slice(read_image(data, limits), kind, name)]


def stored_slice(gray, source_format: str, filename: str, **extra) -> Slice:
    return Slice(png=encode_png(gray), width=gray.shape[1], height=gray.shape[0], source_format=source_format,
                 filename=filename, **extra)


def decode_uploads(uploads: list[UploadedFile], *, patient_code: str = "") -> tuple[list[Slice], list[Rejection]]:
    """Slices of every usable file, and the reason for each file that is not."""
    study_key = StudyKey.new(patient_code)
    limits = dataclasses.replace(settings.IMAGE_LIMITS, budget=PixelBudget(settings.MAX_REQUEST_PIXELS))
    slices, rejections = [], []
    for upload in uploads:
        try:
            slices.extend(decode_upload(upload, study_key, limits))
        except UnreadableImage as error:
            rejections.append(Rejection(display_name(upload), str(error), rejection_code(error)))
    return slices, rejections


def rejection_code(error: UnreadableImage) -> str:
    return error.code


def display_name(upload: UploadedFile) -> str:
    """The file's name for the person who uploaded it; it is shown back, never stored."""
    return (upload.name or "file").rsplit("/", 1)[-1][:120]
