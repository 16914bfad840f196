"""Read an uploaded DICOM file: its frames as grayscale slices, a de-identified copy, acquisition facts.

The upload is read from its encrypted temporary file (diagnosis.upload_handlers). What is stored later is the
de-identified copy (diagnosis.deidentify) and one PNG per frame; the original bytes are never written anywhere.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from pydicom.dataset import Dataset

from diagnosis.deidentify import StudyKey, deidentify
from ml import dicom as pixels
from ml.dicom import DicomRefused, first_number, frame_value, numbers
from ml.volumes import SliceGeometry


@dataclass(frozen=True)
class DicomImage:
    frames: list[np.ndarray]  # (H, W) float32 in [0, 1], one per frame
    acquisition: list[dict]  # non-identifying facts, one dict per frame
    deidentified: bytes  # the de-identified DICOM file
    geometry: list[SliceGeometry]  # where each frame lies (its series UID as de-identified: the same in a study)


def read_dicom(data: bytes, key: StudyKey, limits=None) -> DicomImage:
    """Frames, acquisition facts and a de-identified copy; raises UnreadableImage with the reason."""
    ds, frames = pixels.read(data, limits or settings.IMAGE_LIMITS, settings.MAX_DICOM_FRAMES,
                             before_pixels=_refuse_burned_in)
    try:
        deidentify(ds, key)
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
    except Exception:  # a malformed element pydicom read but cannot write; its message may quote values
        raise DicomRefused("The DICOM file is damaged or incomplete, or uses an encoding BrainScan cannot "
                           "read.") from None
    return DicomImage(frames, [acquisition_facts(ds, index, len(frames)) for index in range(len(frames))],
                      buffer.getvalue(), [geometry(ds, index) for index in range(len(frames))])


def geometry(ds: Dataset, index: int) -> SliceGeometry:
    """Where frame `index` lies: series, size, plane and position (per-frame functional groups first)."""
    orientation = numbers(frame_value(ds, index, "PlaneOrientationSequence", "ImageOrientationPatient"))
    position = numbers(frame_value(ds, index, "PlanePositionSequence", "ImagePositionPatient"))
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if int(first_number(ds.get("NumberOfFrames"), 1)) > 1 and not (
            per_frame is not None and len(per_frame) > index and per_frame[index].get("PlanePositionSequence")):
        position = []  # one position for many frames says where the first lies: they keep the file's order
    instance = first_number(ds.get("InstanceNumber"), None)
    return SliceGeometry(series_uid=str(ds.get("SeriesInstanceUID", "")), rows=int(ds.get("Rows") or 0),
                         columns=int(ds.get("Columns") or 0),
                         orientation=tuple(orientation) if len(orientation) == 6 else None,
                         position=tuple(position) if len(position) == 3 else None,
                         instance=int(instance) + index if instance is not None else None)


def _refuse_burned_in(ds: Dataset) -> None:
    if str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES":
        raise DicomRefused("The DICOM file declares text burned into its pixels (Burned In Annotation = YES), "
                           "which can show who the patient is. Export the images without burned-in "
                           "annotations.", "burned_in_annotation")


def acquisition_facts(ds: Dataset, index: int, frame_count: int) -> dict:
    """Clinically useful, non-identifying facts of one frame, read from the de-identified dataset."""
    facts = {
        "modality": _text(ds.get("Modality")),
        "series_description": _text(ds.get("SeriesDescription")),
        "sequence_name": _text(ds.get("SequenceName")),
        "slice_thickness": first_number(frame_value(ds, index, "PixelMeasuresSequence", "SliceThickness"), None),
        "pixel_spacing": numbers(frame_value(ds, index, "PixelMeasuresSequence", "PixelSpacing")),
        "magnetic_field_strength": first_number(ds.get("MagneticFieldStrength"), None),
        "repetition_time": first_number(
            frame_value(ds, index, "MRTimingAndRelatedParametersSequence", "RepetitionTime"), None),
        "echo_time": first_number(ds.get("EchoTime"), None),
        "patient_sex": _text(ds.get("PatientSex")),  # present only with BRAINSCAN_DICOM_KEEP_SEX_AGE
        "patient_age": _text(ds.get("PatientAge")),
        "frame": f"{index + 1} of {frame_count}" if frame_count > 1 else None,
    }
    return {name: value for name, value in facts.items() if value not in (None, "", [])}


def _text(value) -> str:
    return str(value).strip() if value is not None else ""
