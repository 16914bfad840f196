"""Slices from a file of any accepted type (JPEG, PNG, DICOM), exactly as the worker will see them.

Uploads are decoded by the same readers (diagnosis.uploads) and stored as 16-bit PNG, which the
worker reads back; `as_stored` applies that round trip here, so the command line, the evaluation
and the worker assess identical pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ml import dicom
from ml.gate import PHOTOGRAPH
from ml.imaging import DEFAULT_LIMITS, Limits, UnreadableImage, as_stored, decode_image


@dataclass(frozen=True)
class ImageFile:
    slices: list[np.ndarray]  # as stored: what the worker assesses
    modality: str = ""  # a DICOM file's Modality, for the quality gate; for JPEG and PNG, PHOTOGRAPH or ""


def read_file(source: str | Path | bytes, limits: Limits = DEFAULT_LIMITS) -> ImageFile:
    """Every slice of the file (a DICOM file may hold several frames); raises UnreadableImage."""
    try:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
    except OSError as error:
        raise UnreadableImage(f"The file cannot be read ({error.strerror or error}).") from None
    if not dicom.is_dicom(data[:dicom.DICM_OFFSET + len(dicom.DICM_MAGIC)]):
        gray, colour = decode_image(data, limits)
        return ImageFile([as_stored(gray)], PHOTOGRAPH if colour else "")
    ds, frames = dicom.read(data, limits)
    return ImageFile([as_stored(frame) for frame in frames], str(ds.get("Modality", "") or ""))
