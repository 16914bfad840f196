"""The pixels of a DICOM file as grayscale slices at full depth: one reader for uploads and the command line.

Sizes are checked from the header (rows, columns, frames, samples per pixel, bits allocated)
before any pixel is decoded; each frame is turned into display values with the file's own window
(or, when it has none, a window over the middle 99% of its values, never the maximum) and shrunk
to at most SLICE_SIDE pixels at once. De-identification and acquisition facts live in
diagnosis.dicom; this module reads, and keeps, nothing identifying.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Callable

import numpy as np
import pydicom
from pydicom import config as pydicom_config
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut

from ml.imaging import (DEFAULT_LIMITS, PERCENTILE_WINDOW, ImageTooLarge, Limits, UnreadableImage, downsize,
                        shrink_array)

DICM_OFFSET = 128
DICM_MAGIC = b"DICM"
MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_PARTIAL_420", "YBR_ICT", "YBR_RCT")
LUMINANCE = np.array([0.299, 0.587, 0.114], dtype=np.float32)
MAX_FRAMES = 400

# pydicom's warnings and log lines (even at ERROR, with tracebacks) can quote an element's value, which
# may be a name; warnings go to stderr, the server's log. None of them is needed: every failure reaches
# the uploader as a plain refusal. (pydicom sets its logger's level when imported, so LOGGING cannot.)
pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
warnings.filterwarnings("ignore", module=r"(pydicom|ml\.dicom|diagnosis\.dicom|diagnosis\.deidentify)(\.|$)")
logging.getLogger("pydicom").setLevel(logging.CRITICAL)


class DicomRefused(UnreadableImage):
    """A DICOM file BrainScan will not use; `code` says why, for the audit trail and the API."""

    def __init__(self, message: str, code: str = "unreadable"):
        super().__init__(message)
        self.code = code


def is_dicom(head: bytes) -> bool:
    """A DICOM Part 10 file: a 128-byte preamble, then 'DICM'."""
    return head[DICM_OFFSET:DICM_OFFSET + len(DICM_MAGIC)] == DICM_MAGIC


def parse(data: bytes) -> Dataset:
    """The dataset of a DICOM file, pixels not yet decoded; refuses what cannot be read safely."""
    refuse_deflated(data)
    return pydicom.dcmread(io.BytesIO(data))  # without force: a file with no DICOM header is refused


def refuse_deflated(data: bytes) -> None:
    """pydicom inflates a deflated dataset whole, before any limit can be checked: a 300 kB file that
    inflates to 300 MB took minutes to parse (a zip bomb). Only the file meta group is read here."""
    stream = io.BytesIO(data)
    stream.seek(DICM_OFFSET + len(DICM_MAGIC))
    meta = pydicom.filereader._read_file_meta_info(stream)
    if meta.get("TransferSyntaxUID") == pydicom.uid.DeflatedExplicitVRLittleEndian:
        raise DicomRefused("Deflate-compressed DICOM files are not accepted. Export the images uncompressed "
                           "(Explicit VR Little Endian).", "unsupported_type")


def check_geometry(ds: Dataset, limits: Limits = DEFAULT_LIMITS, max_frames: int = MAX_FRAMES) -> int:
    """The number of frames, once the image is known to be within the limits; nothing is decoded yet."""
    if not any(keyword in ds for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        kind = f" (it is a {ds.SOPClassUID.name} object)" if "SOPClassUID" in ds else ""
        raise DicomRefused(f"The DICOM file holds no image{kind}.", "unsupported_type")
    rows, columns = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    frames = int(ds.get("NumberOfFrames") or 1)
    if not rows or not columns or frames < 1:
        raise DicomRefused("The DICOM file holds no image (it has no image size).", "unsupported_type")
    if frames > max_frames:
        raise DicomRefused(f"The DICOM file holds {frames} frames; at most {max_frames} are taken from one file. "
                           "Export fewer slices, or the series as several files.", "too_large")
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if photometric not in MONOCHROME + COLOUR:
        raise DicomRefused(f"DICOM images in the {photometric or 'unknown'} colour encoding are not supported; "
                           "export them in grayscale (MONOCHROME2).", "unsupported_type")
    samples = int(ds.get("SamplesPerPixel") or 1)
    bits = int(ds.get("BitsAllocated") or 16)
    try:
        limits.check(columns, rows, samples, max(1, -(-bits // 8)), frames, what="The DICOM image")
    except ImageTooLarge as error:
        raise DicomRefused(str(error), "too_large") from None
    except UnreadableImage as error:
        raise DicomRefused(str(error)) from None
    return frames


def frames(ds: Dataset, limits: Limits = DEFAULT_LIMITS, max_frames: int = MAX_FRAMES) -> list[np.ndarray]:
    """Display values in [0, 1] of every frame, each at most SLICE_SIDE on its longest side."""
    count = check_geometry(ds, limits, max_frames)
    pixels = decode_pixels(ds)
    if count == 1:
        pixels = pixels[np.newaxis]
    if str(ds.PhotometricInterpretation).upper() in COLOUR:  # pydicom has converted it to RGB
        peak = float(2 ** int(ds.get("BitsStored") or 8) - 1)
        return [downsize(np.clip(shrink_array(frame).astype(np.float32) @ LUMINANCE / peak, 0.0, 1.0))
                for frame in pixels]
    windows = [file_window(ds, index) for index in range(count)]
    fallback = percentile_window(ds, pixels) if None in windows else None
    inverted = str(ds.PhotometricInterpretation).upper() == "MONOCHROME1"
    out = []
    for index, window in enumerate(windows):
        gray = apply_window(modality_values(ds, shrink_array(pixels[index]), index), *(window or fallback))
        out.append(downsize((1.0 - gray if inverted else gray).astype(np.float32)))
    return out


def read(data: bytes, limits: Limits = DEFAULT_LIMITS, max_frames: int = MAX_FRAMES,
         before_pixels: Callable[[Dataset], None] | None = None) -> tuple[Dataset, list[np.ndarray]]:
    """The dataset and its frames; raises UnreadableImage (DicomRefused) with the reason.

    `before_pixels` may refuse a dataset from its header, before any pixel is decoded.
    """
    try:
        ds = parse(data)
        if before_pixels is not None:
            before_pixels(ds)
        return ds, frames(ds, limits, max_frames)
    except (UnreadableImage, MemoryError):
        raise
    except Exception:  # pydicom raises many types on malformed input; their messages may quote values
        raise DicomRefused("The DICOM file is damaged or incomplete, or uses an encoding BrainScan cannot "
                           "read.") from None


def decode_pixels(ds: Dataset) -> np.ndarray:
    syntax = ds.file_meta.TransferSyntaxUID
    try:
        return np.asarray(ds.pixel_array)
    except Exception:
        if syntax.is_compressed:
            raise DicomRefused(f"The DICOM pixel data is compressed as {syntax.name}, which this server cannot "
                               "decode. Export the images uncompressed (Explicit VR Little Endian).",
                               "unsupported_type") from None
        raise


def frame_value(ds: Dataset, index: int, macro: str, keyword: str):
    """An attribute of one frame: from its per-frame functional group, the shared one, or the top level."""
    for groups, item in (("PerFrameFunctionalGroupsSequence", index), ("SharedFunctionalGroupsSequence", 0)):
        sequence = ds.get(groups)
        if sequence is not None and len(sequence) > item:
            nested = sequence[item].get(macro)
            if nested and keyword in nested[0]:
                return nested[0].get(keyword)
    return ds.get(keyword)


def modality_values(ds: Dataset, pixels: np.ndarray, index: int) -> np.ndarray:
    """Stored values to modality values (PS3.3 C.11.1): the Modality LUT, or slope and intercept."""
    if "ModalityLUTSequence" in ds:
        values = apply_modality_lut(np.rint(pixels).astype(np.int64) if pixels.dtype.kind == "f" else pixels, ds)
    else:
        slope = first_number(frame_value(ds, index, "PixelValueTransformationSequence", "RescaleSlope"), 1.0)
        intercept = first_number(frame_value(ds, index, "PixelValueTransformationSequence", "RescaleIntercept"), 0.0)
        values = pixels.astype(np.float32) * np.float32(slope) + np.float32(intercept)
    return np.nan_to_num(np.asarray(values, dtype=np.float32))


def file_window(ds: Dataset, index: int) -> tuple[float, float, str] | None:
    center = first_number(frame_value(ds, index, "FrameVOILUTSequence", "WindowCenter"), None)
    width = first_number(frame_value(ds, index, "FrameVOILUTSequence", "WindowWidth"), None)
    function = str(frame_value(ds, index, "FrameVOILUTSequence", "VOILUTFunction") or "LINEAR").strip().upper()
    if center is None or width is None or width < 1 or function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        return None
    return center, width, function


def percentile_window(ds: Dataset, pixels: np.ndarray) -> tuple[float, float, str]:
    """A window over the middle 99% of the file's modality values, the same for every frame (sampled, so
    its cost does not grow with the file)."""
    step = max(1, int(np.ceil(np.sqrt(pixels[0].size * len(pixels) / 1_000_000))))
    sample = np.concatenate([modality_values(ds, frame[::step, ::step], index).ravel()
                             for index, frame in enumerate(pixels)])
    low, high = np.percentile(sample, PERCENTILE_WINDOW)
    return (low + high) / 2, max(float(high - low), 1e-6), "LINEAR_EXACT"


def apply_window(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """A VOI window (PS3.3 C.11.2.1.2 and C.11.2.1.3) onto [0, 1]."""
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(np.clip(-4.0 * (values - center) / width, -500, 500)))
    if function == "LINEAR_EXACT":
        scaled = (values - center) / width + 0.5
    elif width <= 1:
        scaled = (values > center - 0.5).astype(np.float32)
    else:
        scaled = (values - (center - 0.5)) / (width - 1) + 0.5
    return np.clip(scaled, 0.0, 1.0)


def numbers(value) -> list[float]:
    from pydicom.multival import MultiValue

    if value is None or value == "":
        return []
    items = value if isinstance(value, (list, tuple, MultiValue)) else [value]
    try:
        return [round(float(item), 6) for item in items]
    except (TypeError, ValueError):
        return []


def first_number(value, default):
    found = numbers(value)
    return found[0] if found else default
