"""Turn uploaded files into stored slices, or say in plain words why a file cannot be used.

A study is either up to BRAINSCAN_MAX_FILES separate slices (JPEG, PNG, DICOM, in any mix), or one
series of up to BRAINSCAN_MAX_SLICES slices: a NIfTI volume, a .zip of one DICOM series, a multi-frame
DICOM file, or the DICOM files of one series sent together. A series' slices are put in anatomical order
(their position along the slice normal), whatever the files are called.

Each file is judged on its own, so one bad file never costs the others. What is stored is re-encoded
from the decoded pixels: no metadata of a JPEG or PNG upload survives, and a DICOM file keeps only a
de-identified copy (diagnosis.dicom); its original bytes are never stored. Memory stays bounded whatever
is sent: sizes are checked from each file's header before decoding (and the files of one request share
a pixel budget), a process decodes one file at a time, and each slice is handed over for storage as
soon as it is decoded, its pixels dropped.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile

from diagnosis.deidentify import StudyKey
from diagnosis.dicom import read_dicom
from ml.dicom import is_dicom
from ml.gate import PHOTOGRAPH
from ml.imaging import PixelBudget, UnreadableImage, decode_image, encode_png
from ml.volumes import ZIP_MAGIC, SeriesRefused, SliceGeometry, is_nifti, nifti_slices, slice_order, zip_members

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
MIN_SERIES = 3  # fewer DICOM slices of one series are taken as separate slices


@dataclass(eq=False)
class DeidentifiedDicom:
    """The de-identified copy of one DICOM file, shared by the slices of its frames."""

    data: bytes
    stored_as: str = ""  # its name in storage, once stored


# One decode at a time per process: a web process's threads wait for each other rather than each holding a
# decoded image at once.
_decoding = threading.Lock()


@dataclass
class Slice:
    png: bytes  # the stored form: 16-bit grayscale PNG (ml.imaging.encode_png)
    width: int
    height: int
    source_format: str  # JPEG, PNG, DICOM or NIFTI
    filename: str
    acquisition: dict = field(default_factory=dict)
    dicom: DeidentifiedDicom | None = None
    geometry: SliceGeometry | None = None  # where a DICOM slice lies, for a series' order
    volume: bool = False  # one of the slices of a NIfTI volume, already in order
    archive: bool = False  # came out of a .zip


@dataclass(frozen=True)
class Rejection:
    filename: str
    reason: str
    code: str


@dataclass
class Received:
    """What `read_uploads` made of a request: the kept slices (what `keep` returned for each) in study order,
    the files that could not be used, whether the slices are one series, or why none can be used together."""

    kept: list = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    series: bool = False
    refused: Rejection | None = None


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


def read_uploads(uploads: list[UploadedFile], keep: Callable[[Slice], object], *, patient_code: str = "") -> Received:
    """Decode every file, handing each slice to `keep` as soon as it is decoded (it stores the slice and returns
    what the caller needs of it), then put the kept slices in study order.

    When the slices cannot form a study (mixed series, too many), `refused` says why; the caller then
    removes what `keep` stored.
    """
    study_key = StudyKey.new(patient_code)
    limits = dataclasses.replace(settings.IMAGE_LIMITS, budget=PixelBudget(settings.MAX_REQUEST_PIXELS))
    received, pieces = Received(), []
    for upload in uploads:
        for item in iter_slices(upload, study_key, limits):
            if isinstance(item, Rejection):
                received.rejections.append(item)
            else:
                pieces.append(_Kept(keep(item), item.source_format, item.geometry, item.volume, item.archive))
    received.series, order, received.refused = _arrange(pieces)
    if received.refused is None:
        received.kept = [pieces[index].handle for index in order]
    return received


@dataclass(frozen=True)
class _Kept:
    handle: object
    source_format: str
    geometry: SliceGeometry | None
    volume: bool
    archive: bool


def _arrange(pieces: list[_Kept]) -> tuple[bool, list[int], Rejection | None]:
    """(series?, the study order, why they cannot be kept together)."""
    volumes = sum(1 for piece in pieces if piece.volume)
    dicom = [piece for piece in pieces if piece.source_format == "DICOM"]
    series_uids = {piece.geometry.series_uid for piece in dicom if piece.geometry}
    everything = list(range(len(pieces)))
    if volumes:
        if volumes != len(pieces):
            return False, everything, _refusal("A NIfTI volume is a study of its own; send other files in another "
                                               "study.", "mixed_series")
        return _counted(True, everything)
    from_archive = any(piece.archive for piece in pieces)
    if pieces and len(dicom) == len(pieces) and (from_archive or len(pieces) >= MIN_SERIES):
        if len(series_uids) == 1:
            try:
                return _counted(True, slice_order([piece.geometry for piece in pieces]))
            except SeriesRefused as error:
                return True, everything, _refusal(str(error), error.code)
        if from_archive or len(pieces) > settings.MAX_FILES_PER_STUDY:
            return False, everything, _refusal(f"The files belong to {len(series_uids)} different series; send one "
                                               "series per study.", "mixed_series")
    if from_archive:
        return False, everything, _refusal("A .zip archive must hold the DICOM files of one series.",
                                           "unsupported_type")
    return _counted(False, everything)


def _counted(series: bool, order: list[int]) -> tuple[bool, list[int], Rejection | None]:
    limit = settings.MAX_SLICES if series else settings.MAX_FILES_PER_STUDY
    if len(order) > limit:
        what = "series holds" if series else "files hold"
        return series, order, _refusal(f"The {what} {len(order)} images; a study holds at most {limit}.",
                                       "too_many_files")
    return series, order, None


def _refusal(reason: str, code: str) -> Rejection:
    return Rejection("the upload", reason, code)


def iter_slices(upload: UploadedFile, study_key: StudyKey, limits) -> Iterator[Slice | Rejection]:
    """The slices of one uploaded file as they are decoded, or the reason it (or a file inside it) cannot be used."""
    name = display_name(upload)
    try:
        _check_size(upload)
        upload.seek(0)
        head = upload.read(352)
        upload.seek(0)
        if head.startswith(ZIP_MAGIC):
            yield from _archive_slices(upload, name, study_key, limits)
            return
        with _decoding:
            pieces = decode_bytes(upload.read(), name, study_key, limits)
        yield from pieces
    except UnreadableImage as error:
        yield Rejection(name, str(error), error.code)


def _check_size(upload: UploadedFile) -> None:
    limit = settings.MAX_SERIES_BYTES if upload.name and _is_volume_name(upload.name) else settings.MAX_UPLOAD_BYTES
    if upload.size > limit:
        raise UploadTooLarge(f"The file is {upload.size / 1_048_576:.1f} MB; the limit is {limit / 1_048_576:.0f} MB.")
    if upload.size == 0:
        raise UnreadableImage("The file is empty.")


def _is_volume_name(name: str) -> bool:
    return name.lower().endswith((".zip", ".nii", ".nii.gz"))


def _archive_slices(upload: UploadedFile, name: str, study_key: StudyKey, limits) -> Iterator[Slice | Rejection]:
    """Each DICOM file of a .zip, read from the (encrypted, on disk) upload one member at a time."""
    members = zip_members(upload.file, max_members=settings.MAX_SLICES, max_total=settings.MAX_SERIES_BYTES)
    for member, data in members:
        label = f"{name}/{member.rsplit('/', 1)[-1]}"[:120]
        try:
            if not is_dicom(data[:132]):
                raise UnsupportedType("A file in the archive is not DICOM; a .zip must hold one DICOM series.")
            with _decoding:
                pieces = decode_bytes(data, label, study_key, limits)
        except UnreadableImage as error:
            yield Rejection(label, str(error), error.code)
            continue
        yield from (dataclasses.replace(piece, archive=True) for piece in pieces)


def decode_bytes(data: bytes, name: str, study_key: StudyKey, limits) -> list[Slice]:
    """The slices of one file's bytes (DICOM, NIfTI, PNG or JPEG); raises UnreadableImage with the reason."""
    if is_dicom(data[:132]):
        dicom = read_dicom(data, study_key, limits)
        copy = DeidentifiedDicom(dicom.deidentified)
        return [stored_slice(gray, "DICOM", name, acquisition=facts, dicom=copy, geometry=geometry)
                for gray, facts, geometry in zip(dicom.frames, dicom.acquisition, dicom.geometry)]
    if is_nifti(data[:352]):
        grays = nifti_slices(data, limits, settings.MAX_SLICES, settings.MAX_SERIES_BYTES)
        return [stored_slice(gray, "NIFTI", name, acquisition={"frame": f"{k + 1} of {len(grays)}"}, volume=True)
                for k, gray in enumerate(grays)]
    kind = sniff_format(data[:16])
    if kind is None:
        raise UnsupportedType("The file is not a JPEG, PNG, DICOM, NIfTI or .zip file (its content does not match "
                              "any supported format, whatever its name says).")
    gray, colour = decode_image(data, limits)
    # The worker's gate refuses a colour picture; the stored slice is gray, so the fact travels with it.
    return [stored_slice(gray, kind, name, acquisition={"modality": PHOTOGRAPH} if colour else {})]


def decode_upload(upload: UploadedFile, study_key: StudyKey | None = None, limits=None) -> list[Slice]:
    """The slices of one uploaded file; raises UnreadableImage (or a subclass) with the reason (the first one,
    for an archive)."""
    slices = []
    for item in iter_slices(upload, study_key or StudyKey.new(), limits or settings.IMAGE_LIMITS):
        if isinstance(item, Rejection):
            error = UnreadableImage(item.reason)
            error.code = item.code
            raise error
        slices.append(item)
    return slices


def stored_slice(gray, source_format: str, filename: str, **extra) -> Slice:
    return Slice(png=encode_png(gray), width=gray.shape[1], height=gray.shape[0], source_format=source_format,
                 filename=filename, **extra)


def display_name(upload: UploadedFile) -> str:
    """The file's name for the person who uploaded it; it is shown back, never stored."""
    return (upload.name or "file").rsplit("/", 1)[-1][:120]
