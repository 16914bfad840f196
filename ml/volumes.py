"""Whole series: NIfTI volumes, zip archives of DICOM files, and the order of a series' slices.

A series is assessed slice by slice; what these helpers add is reading a volume without unbounded
memory, and putting slices in their anatomical order (by position along the slice normal), not in
the order of file names.
"""

from __future__ import annotations

import gzip
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ml.imaging import DEFAULT_LIMITS, PERCENTILE_WINDOW, ImageTooLarge, Limits, UnreadableImage, downsize

NIFTI_SUFFIXES = (".nii", ".nii.gz")
GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"
NIFTI1_MAGICS = (b"n+1\x00", b"ni1\x00")
NIFTI2_MAGICS = (b"n+2\x00", b"ni2\x00")


class SeriesRefused(UnreadableImage):
    """A series BrainScan will not take; `code` says why."""

    def __init__(self, message: str, code: str = "unreadable"):
        super().__init__(message)
        self.code = code


# --- Reading bounded: gzip and zip ---------------------------------------------------------------


def gunzip_bounded(data: bytes, limit: int) -> bytes:
    """Decompress gzip data, refusing (before holding it) anything that would inflate past `limit` bytes."""
    out = io.BytesIO()
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
            while chunk := stream.read(1 << 20):
                out.write(chunk)
                if out.tell() > limit:
                    raise SeriesRefused(f"The compressed file inflates past {limit / 1_048_576:.0f} MB.", "too_large")
    except (OSError, EOFError) as error:
        raise SeriesRefused(f"The compressed file is damaged ({error}).") from None
    return out.getvalue()


def zip_members(source, *, max_members: int, max_total: int) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of each file in a zip archive (bytes or a seekable file), one at a time, folders and hidden
    files skipped; sizes checked from the archive's directory before anything is inflated, and again while
    inflating (a directory can lie)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source)
    except zipfile.BadZipFile:
        raise SeriesRefused("The .zip archive is damaged.") from None
    entries = [info for info in archive.infolist()
               if not info.is_dir() and not info.filename.rsplit("/", 1)[-1].startswith(".")
               and "__MACOSX" not in info.filename]
    if len(entries) > max_members:
        raise SeriesRefused(f"The archive holds {len(entries)} files; at most {max_members} are taken.", "too_large")
    if sum(info.file_size for info in entries) > max_total:
        raise SeriesRefused(f"The archive inflates past {max_total / 1_048_576:.0f} MB.", "too_large")
    total = 0
    for info in entries:
        if info.flag_bits & 0x1:
            raise SeriesRefused("The archive is encrypted; send it without a password.", "unsupported_type")
        try:
            with archive.open(info) as handle:
                content = handle.read(info.file_size + 1)
        except (zipfile.BadZipFile, OSError, EOFError):
            raise SeriesRefused("The .zip archive is damaged.") from None
        total += len(content)
        if len(content) > info.file_size or total > max_total:
            raise SeriesRefused(f"The archive inflates past {max_total / 1_048_576:.0f} MB.", "too_large")
        yield info.filename, content


# --- NIfTI ------------------------------------------------------------------------------------


def is_nifti(head: bytes) -> bool:
    """A NIfTI-1 or -2 header (gzip-compressed or not) by its magic, whatever the file is called."""
    return head[:2] == GZIP_MAGIC or head[344:348] in NIFTI1_MAGICS or head[4:8] in NIFTI2_MAGICS


def nifti_slices(data: bytes, limits: Limits = DEFAULT_LIMITS, max_slices: int = 400,
                 max_bytes: int = 600 * 1024 * 1024) -> list[np.ndarray]:
    """The axial slices of a NIfTI volume, inferior to superior, each displayed as radiologists do (anterior
    at the top, the patient's right on the left) and windowed over the whole volume by percentiles.

    The axial axis is found from the affine (the one closest to superior-inferior), whatever order the
    file stores its axes in. Sizes are checked from the header before the voxels are read.
    """
    import nibabel

    if data[:2] == GZIP_MAGIC:
        data = gunzip_bounded(data, max_bytes)
    try:
        image = nibabel.Nifti1Image.from_bytes(data) if data[344:348] in NIFTI1_MAGICS else \
            nibabel.Nifti2Image.from_bytes(data)
    except Exception as error:  # nibabel raises many kinds on malformed headers
        raise SeriesRefused(f"The NIfTI file is damaged or not a volume ({type(error).__name__}).") from None
    shape = image.header.get_data_shape()
    if len(shape) < 3 or any(int(n) < 1 for n in shape[:3]) or (len(shape) > 3 and int(np.prod(shape[3:])) > 1):
        raise SeriesRefused(f"The NIfTI file holds a {len(shape)}-D image of shape {tuple(shape)}; a single 3-D "
                            "volume is needed.", "unsupported_type")
    canonical = nibabel.as_closest_canonical(image)  # axes: right, anterior, superior (RAS+)
    columns, rows, slices = (int(n) for n in canonical.shape[:3])
    if slices > max_slices:
        raise SeriesRefused(f"The volume holds {slices} axial slices; at most {max_slices} are taken.", "too_large")
    try:
        limits.check(columns, rows, 1, 4, slices, what="The volume's slices")
    except ImageTooLarge as error:
        raise SeriesRefused(str(error), "too_large") from None
    except UnreadableImage as error:
        raise SeriesRefused(str(error)) from None
    volume = np.asarray(canonical.dataobj, dtype=np.float32).reshape(columns, rows, slices)
    volume = np.nan_to_num(volume, nan=0.0, posinf=0.0, neginf=0.0)
    step = max(1, int(np.ceil((volume.size / 2_000_000) ** (1 / 3))))
    low, high = np.percentile(volume[::step, ::step, ::step], PERCENTILE_WINDOW)
    scale = (high - low) if high > low else 1.0
    return [downsize(np.clip((volume[::-1, ::-1, k].T - low) / scale, 0.0, 1.0).astype(np.float32))
            for k in range(slices)]


# --- The order of a DICOM series ----------------------------------------------------------------------


@dataclass(frozen=True)
class SliceGeometry:
    """What a DICOM slice's header says of where it lies, read before its pixels."""

    series_uid: str
    rows: int
    columns: int
    orientation: tuple[float, ...] | None  # ImageOrientationPatient: row and column direction cosines
    position: tuple[float, ...] | None  # ImagePositionPatient of the first pixel, mm
    instance: int | None  # InstanceNumber


def slice_order(slices: list[SliceGeometry]) -> list[int]:
    """Indices of `slices` in anatomical order: by position along the slice normal where every slice has one,
    else by instance number, else as given. Raises SeriesRefused when they are not one series."""
    if len({s.series_uid for s in slices}) > 1:
        raise SeriesRefused(f"The files belong to {len({s.series_uid for s in slices})} different series; send one "
                            "series per study.", "mixed_series")
    if len({(s.rows, s.columns) for s in slices}) > 1:
        raise SeriesRefused("The slices differ in size; they are not one series.", "mixed_series")
    orientations = {tuple(round(v, 3) for v in s.orientation) for s in slices if s.orientation}
    if len(orientations) > 1:
        raise SeriesRefused("The slices lie in different planes; send one series per study.", "mixed_series")
    if orientations and all(s.position for s in slices):
        row, column = np.array(next(iter(orientations))[:3]), np.array(next(iter(orientations))[3:6])
        normal = np.cross(row, column)
        along = [float(np.dot(normal, s.position)) for s in slices]
        order = sorted(range(len(slices)), key=lambda i: along[i])
        if len({round(along[i], 3) for i in order}) < len(order):
            raise SeriesRefused("Two slices of the series lie at the same position; send each slice once.",
                                "mixed_series")
        return order
    if all(s.instance is not None for s in slices):
        return sorted(range(len(slices)), key=lambda i: slices[i].instance)
    return list(range(len(slices)))


# --- A series' result ------------------------------------------------------------------------------


def suspicious_region(positions: list[int], probabilities: list[float], threshold: float, window: int) -> dict:
    """The most suspicious run of `window` consecutive assessed slices of a series, and every suspicious slice.

    `positions` and `probabilities` are the assessed slices in order (a slice the quality gate refused is left
    out, so a run may step over it). The region's score is the highest mean probability over `window`
    consecutive slices (fewer when the series is shorter): one bright slice among normal ones counts less than
    a lesion seen on several, which is how a lesion spans a volume. Suspicious slices are those at or above
    the threshold, grouped into runs of neighbours.
    """
    if not positions:
        return {"score": None, "first": None, "last": None, "peak": None, "suspicious": [], "runs": [],
                "window": window}
    values = np.asarray(probabilities, dtype=float)
    width = max(1, min(window, len(values)))
    means = np.convolve(values, np.ones(width) / width, mode="valid")
    start = int(np.argmax(means))
    peak = start + int(np.argmax(values[start:start + width]))
    suspicious = [position for position, value in zip(positions, values) if value >= threshold]
    runs: list[list[int]] = []
    for position in suspicious:
        if runs and position == runs[-1][1] + 1:
            runs[-1][1] = position
        else:
            runs.append([position, position])
    return {"score": float(means[start]), "first": positions[start], "last": positions[start + width - 1],
            "peak": positions[peak], "suspicious": suspicious, "runs": runs, "window": width}


def smoothed(probabilities: np.ndarray, window: int) -> np.ndarray:
    """Each slice's mean with its neighbours over `window` slices (centred, shorter at the ends): the per-slice
    score the region rule ranks by, used to choose `window` on validation volumes."""
    if window <= 1:
        return np.asarray(probabilities, dtype=float)
    kernel = np.ones(window)
    padded = np.convolve(probabilities, kernel, mode="same")
    counts = np.convolve(np.ones(len(probabilities)), kernel, mode="same")
    return padded / counts
