"""Read an uploaded DICOM file: its frames as grayscale slices, a de-identified copy, acquisition facts.

The upload stays in memory. What is stored later is the de-identified copy (diagnosis.deidentify)
and one PNG per frame; the original bytes are never written anywhere.
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass

import numpy as np
import pydicom
from django.conf import settings
from pydicom import config as pydicom_config
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut

from diagnosis.deidentify import StudyKey, deidentify
from ml.imaging import MIN_SIDE, UnreadableImage

DICM_OFFSET = 128
DICM_MAGIC = b"DICM"
MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_PARTIAL_420", "YBR_ICT", "YBR_RCT")
LUMINANCE = np.array([0.299, 0.587, 0.114])
PERCENTILE_WINDOW = (0.5, 99.5)

# pydicom's warnings and log lines (even at ERROR, with tracebacks) can quote an element's value, which
# may be a name; warnings go to stderr, the server's log. None of them is needed: every failure reaches
# the uploader as a plain refusal. (pydicom sets its logger's level when imported, so LOGGING cannot.)
pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
warnings.filterwarnings("ignore", module=r"(pydicom|diagnosis\.dicom|diagnosis\.deidentify)(\.|$)")
logging.getLogger("pydicom").setLevel(logging.CRITICAL)


class DicomRefused(UnreadableImage):
    """A DICOM file BrainScan will not use; `code` says why, for the audit trail and the API."""

    def __init__(self, message: str, code: str = "unreadable"):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class DicomImage:
    frames: list[np.ndarray]  # (H, W) float32 in [0, 1], one per frame
    acquisition: list[dict]  # non-identifying facts, one dict per frame
    deidentified: bytes  # the de-identified DICOM file


def is_dicom(head: bytes) -> bool:
    """A DICOM Part 10 file: a 128-byte preamble, then 'DICM'."""
    return head[DICM_OFFSET:DICM_OFFSET + len(DICM_MAGIC)] == DICM_MAGIC


def read_dicom(data: bytes, key: StudyKey) -> DicomImage:
    """Frames, acquisition facts and a de-identified copy; raises UnreadableImage with the reason."""
    try:
        return _read(data, key)
    except (UnreadableImage, MemoryError):
        raise
    except Exception:  # pydicom raises many types on malformed input; their messages may quote values
        raise DicomRefused("The DICOM file is damaged or incomplete, or uses an encoding BrainScan cannot "
                           "read.") from None


def _read(data: bytes, key: StudyKey) -> DicomImage:
    _refuse_deflated(data)
    ds = pydicom.dcmread(io.BytesIO(data))  # without force: a file with no DICOM header is refused
    if str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES":
        raise DicomRefused("The DICOM file declares text burned into its pixels (Burned In Annotation = YES), "
                           "which can show who the patient is. Export the images without burned-in "
                           "annotations.", "burned_in_annotation")
    frame_count = _check_geometry(ds)
    frames = _grayscale_frames(ds, _decode_pixels(ds), frame_count)
    deidentify(ds, key)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return DicomImage(frames, [acquisition_facts(ds, index, frame_count) for index in range(frame_count)],
                      buffer.getvalue())


def _refuse_deflated(data: bytes) -> None:
    """pydicom inflates a deflated dataset whole, before any limit can be checked: a 300 kB file that
    inflates to 300 MB took minutes to parse (a zip bomb). Only the file meta group is read here."""
    stream = io.BytesIO(data)
    stream.seek(DICM_OFFSET + len(DICM_MAGIC))
    meta = pydicom.filereader._read_file_meta_info(stream)
    if meta.get("TransferSyntaxUID") == pydicom.uid.DeflatedExplicitVRLittleEndian:
        raise DicomRefused("Deflate-compressed DICOM files are not accepted. Export the images uncompressed "
                           "(Explicit VR Little Endian).", "unsupported_type")


def _check_geometry(ds: Dataset) -> int:
    """The number of frames, once the image is known to be within the limits; nothing is decoded yet."""
    if not any(keyword in ds for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        kind = f" (it is a {ds.SOPClassUID.name} object)" if "SOPClassUID" in ds else ""
        raise DicomRefused(f"The DICOM file holds no image{kind}.", "unsupported_type")
    rows, columns = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    frames = int(ds.get("NumberOfFrames") or 1)
    if not rows or not columns:
        raise DicomRefused("The DICOM file holds no image (it has no image size).", "unsupported_type")
    if min(rows, columns) < MIN_SIDE or frames < 1:
        raise DicomRefused(f"The DICOM image is only {columns}x{rows} pixels; at least {MIN_SIDE}x{MIN_SIDE} "
                           "is needed.")
    if frames > settings.MAX_DICOM_FRAMES:
        raise DicomRefused(f"The DICOM file holds {frames} frames; at most {settings.MAX_DICOM_FRAMES} are taken "
                           "from one file. Export fewer slices, or the series as several files.", "too_large")
    if rows * columns * frames > settings.MAX_IMAGE_PIXELS:
        raise DicomRefused(f"The DICOM file holds {frames} frame(s) of {columns}x{rows} pixels; the limit is "
                           f"{settings.MAX_IMAGE_PIXELS:,} pixels per file.", "too_large")
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if photometric not in MONOCHROME + COLOUR:
        raise DicomRefused(f"DICOM images in the {photometric or 'unknown'} colour encoding are not supported; "
                           "export them in grayscale (MONOCHROME2).", "unsupported_type")
    return frames


def _decode_pixels(ds: Dataset) -> np.ndarray:
    syntax = ds.file_meta.TransferSyntaxUID
    try:
        return np.asarray(ds.pixel_array)
    except Exception:
        if syntax.is_compressed:
            raise DicomRefused(f"The DICOM pixel data is compressed as {syntax.name}, which this server cannot "
                               "decode. Export the images uncompressed (Explicit VR Little Endian).",
                               "unsupported_type") from None
        raise


def _grayscale_frames(ds: Dataset, pixels: np.ndarray, frame_count: int) -> list[np.ndarray]:
    """Display values in [0, 1]: rescale, then the file's window (or a robust one), MONOCHROME1 inverted."""
    if frame_count == 1:
        pixels = pixels[np.newaxis]
    if str(ds.PhotometricInterpretation).upper() in COLOUR:  # pydicom has converted it to RGB
        peak = float(2 ** int(ds.get("BitsStored") or 8) - 1)
        return [np.clip(frame @ LUMINANCE / peak, 0.0, 1.0).astype(np.float32) for frame in pixels]
    values = [_modality_values(ds, pixels[index], index) for index in range(frame_count)]
    windows = [_file_window(ds, index) for index in range(frame_count)]
    fallback = _percentile_window(values) if None in windows else None
    inverted = str(ds.PhotometricInterpretation).upper() == "MONOCHROME1"
    frames = []
    for value, window in zip(values, windows):
        gray = apply_window(value, *(window or fallback))
        frames.append((1.0 - gray if inverted else gray).astype(np.float32))
    return frames


def frame_value(ds: Dataset, index: int, macro: str, keyword: str):
    """An attribute of one frame: from its per-frame functional group, the shared one, or the top level."""
    for groups, item in (("PerFrameFunctionalGroupsSequence", index), ("SharedFunctionalGroupsSequence", 0)):
        sequence = ds.get(groups)
        if sequence is not None and len(sequence) > item:
            nested = sequence[item].get(macro)
            if nested and keyword in nested[0]:
                return nested[0].get(keyword)
    return ds.get(keyword)


def _modality_values(ds: Dataset, pixels: np.ndarray, index: int) -> np.ndarray:
    """Stored values to modality values (PS3.3 C.11.1): the Modality LUT, or slope and intercept."""
    if "ModalityLUTSequence" in ds:
        values = apply_modality_lut(pixels, ds)
    else:
        slope = _first_number(frame_value(ds, index, "PixelValueTransformationSequence", "RescaleSlope"), 1.0)
        intercept = _first_number(frame_value(ds, index, "PixelValueTransformationSequence", "RescaleIntercept"),
                                  0.0)
        values = pixels.astype(np.float64) * slope + intercept
    return np.nan_to_num(np.asarray(values, dtype=np.float64))


def _file_window(ds: Dataset, index: int) -> tuple[float, float, str] | None:
    center = _first_number(frame_value(ds, index, "FrameVOILUTSequence", "WindowCenter"), None)
    width = _first_number(frame_value(ds, index, "FrameVOILUTSequence", "WindowWidth"), None)
    function = str(frame_value(ds, index, "FrameVOILUTSequence", "VOILUTFunction") or "LINEAR").strip().upper()
    if center is None or width is None or width < 1 or function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        return None
    return center, width, function


def _percentile_window(values: list[np.ndarray]) -> tuple[float, float, str]:
    """A window over the middle 99% of the file's values, the same for every frame."""
    low, high = np.percentile(np.concatenate([value.ravel() for value in values]), PERCENTILE_WINDOW)
    return (low + high) / 2, max(float(high - low), 1e-6), "LINEAR_EXACT"


def apply_window(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """A VOI window (PS3.3 C.11.2.1.2 and C.11.2.1.3) onto [0, 1]."""
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(np.clip(-4.0 * (values - center) / width, -500, 500)))
    if function == "LINEAR_EXACT":
        scaled = (values - center) / width + 0.5
    elif width <= 1:
        scaled = (values > center - 0.5).astype(np.float64)
    else:
        scaled = (values - (center - 0.5)) / (width - 1) + 0.5
    return np.clip(scaled, 0.0, 1.0)


def acquisition_facts(ds: Dataset, index: int, frame_count: int) -> dict:
    """Clinically useful, non-identifying facts of one frame, read from the de-identified dataset."""
    facts = {
        "modality": _text(ds.get("Modality")),
        "series_description": _text(ds.get("SeriesDescription")),
        "sequence_name": _text(ds.get("SequenceName")),
        "slice_thickness": _first_number(frame_value(ds, index, "PixelMeasuresSequence", "SliceThickness"), None),
        "pixel_spacing": _numbers(frame_value(ds, index, "PixelMeasuresSequence", "PixelSpacing")),
        "magnetic_field_strength": _first_number(ds.get("MagneticFieldStrength"), None),
        "repetition_time": _first_number(
            frame_value(ds, index, "MRTimingAndRelatedParametersSequence", "RepetitionTime"), None),
        "echo_time": _first_number(ds.get("EchoTime"), None),
        "patient_sex": _text(ds.get("PatientSex")),  # present only with BRAINSCAN_DICOM_KEEP_SEX_AGE
        "patient_age": _text(ds.get("PatientAge")),
        "frame": f"{index + 1} of {frame_count}" if frame_count > 1 else None,
    }
    return {name: value for name, value in facts.items() if value not in (None, "", [])}


def _text(value) -> str:
    return str(value).strip() if value is not None else ""


def _numbers(value) -> list[float]:
    if value is None or value == "":
        return []
    items = value if isinstance(value, (list, tuple, MultiValue)) else [value]
    try:
        return [round(float(item), 6) for item in items]
    except (TypeError, ValueError):
        return []


def _first_number(value, default):
    numbers = _numbers(value)
    return numbers[0] if numbers else default
