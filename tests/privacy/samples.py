"""DICOM test files: pydicom's bundled samples (no network) with identifying values written in first."""

from __future__ import annotations

import io

import numpy as np
import pydicom
from django.core.files.uploadedfile import SimpleUploadedFile
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from ml.phantoms import make_phantom

# Written into the sample before upload; none of them may appear in anything stored, returned or logged.
IDENTIFYING = {
    "PatientName": "Quillfeather^Zebedee",
    "PatientID": "MRN40417733",
    "PatientBirthDate": "19470312",
    "PatientAddress": "4 Marigold Row, Oxbridge",
    "OtherPatientIDs": "NHS4857773456",
    "InstitutionName": "Saint Brigid Infirmary",
    "InstitutionAddress": "12 Wharfside Lane, Oxbridge",
    "ReferringPhysicianName": "Vanterpool^Ottoline",
    "PerformingPhysicianName": "Blackwood^Hortensia",
    "OperatorsName": "Thackeray^Percival",
    "AccessionNumber": "ACC77120934",
    "StationName": "OXMRISTATION7",
    "DeviceSerialNumber": "SN99100231",
    "StudyID": "STUDY88122",
    "StudyDescription": "BRAIN for Quillfeather",
    "SeriesDescription": "AX T1 FLAIR Zebedee 20240101",
    "ImageComments": "Scanned for Ottoline Vanterpool",
}
# What to search for: every distinctive word of the values above.
IDENTIFYING_WORDS = ["Quillfeather", "Zebedee", "40417733", "19470312", "Marigold", "4857773456", "Brigid",
                     "Infirmary", "Wharfside", "Vanterpool", "Ottoline", "Blackwood", "Hortensia", "Thackeray",
                     "Percival", "77120934", "OXMRISTATION7", "99100231", "STUDY88122", "Oxbridge", "PrivateBlob"]
MR_SMALL_STUDY_UID = "1.3.6.1.4.1.5962.1.2.4.20040826185059.5457"
MR_SMALL_SOP_UID = "1.3.6.1.4.1.5962.1.1.4.1.1.20040826185059.5457"
MR_SMALL_STUDY_DATE = "20040826"


def mr_small() -> Dataset:
    return pydicom.dcmread(get_testdata_file("MR_small.dcm", download=False))


def identifiable_mr(**overrides) -> Dataset:
    """MR_small's header with a patient's identity written everywhere the profile must clean, around a
    128 x 128 phantom slice: MR_small's own 64 x 64 pixels are not a brain, and the quality gate says so."""
    ds = mr_small()
    ds.Rows = ds.Columns = 128
    ds.PixelData = np.rint(make_phantom(1, True, 128) * 1200).astype("<i2").tobytes()
    for keyword, value in {**IDENTIFYING, **overrides}.items():
        setattr(ds, keyword, value)
    block = ds.private_block(0x0099, "ACME hospital", create=True)
    block.add_new(0x01, "LO", "PrivateBlob Quillfeather")
    region = Dataset()
    region.CodeValue, region.CodingSchemeDesignator, region.CodeMeaning = "T-A0100", "SRT", "Brain"
    region.add_new(0x00401101, "SQ", Sequence())  # Person Identification Code Sequence, empty
    region.add_new(0x0040A123, "PN", "Zebedee^Quillfeather")  # Person Name nested in a kept sequence
    ds.AnatomicRegionSequence = Sequence([region])
    ds.add_new(0x60000022, "LO", "Overlay for Quillfeather")  # Overlay Description
    ds.preamble = b"Quillfeather".ljust(128, b"\0")
    return ds


def to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def dicom_upload(ds: Dataset | bytes, name: str = "Quillfeather_Zebedee_MRI.dcm") -> SimpleUploadedFile:
    data = ds if isinstance(ds, bytes) else to_bytes(ds)
    return SimpleUploadedFile(name, data, content_type="application/dicom")


def synthetic_mr(pixels: np.ndarray, **attributes) -> Dataset:
    """A minimal MR file around `pixels` (uint16 or int16, (rows, cols) or (frames, rows, cols))."""
    frames = pixels.shape[0] if pixels.ndim == 3 else 1
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "MR"
    ds.Rows, ds.Columns = pixels.shape[-2:]
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if pixels.dtype == np.int16 else 0
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def multiframe_mr(frames: int) -> Dataset:
    """MR_small's slice repeated `frames` times, each frame a little brighter than the one before."""
    ds = mr_small()
    pixels = np.frombuffer(ds.PixelData, dtype="<i2").reshape(ds.Rows, ds.Columns)  # explicit VR little endian
    stack = np.stack([pixels + 10 * index for index in range(frames)]).astype("<i2")
    ds.NumberOfFrames = frames
    ds.PixelData = stack.tobytes()
    return ds


MARKER = "ZQXMARKER"
TEXT_VRS = {"PN", "LO", "SH", "LT", "ST", "UT", "UC", "UR", "AE", "CS"}
# Code strings the file cannot be read without: a marker there makes it unreadable, so nothing is stored.
UNMARKED = {"SpecificCharacterSet", "PhotometricInterpretation"}


def _code_item(value: str = "T-A0100") -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "SRT", "Brain"
    return item


def marked_mr() -> Dataset:
    """MR_small (a real MR file) with MARKER written into every text attribute it has, at any depth, and into
    the ones the security test found leaking (code meanings and text in nested sequences, the body part,
    manufacturer, model, coils, contrast agent)."""
    ds = mr_small()
    ds.BodyPartExamined = "BRAIN"
    ds.Manufacturer, ds.ManufacturerModelName = "SIEMENS", "Avanto"
    ds.ReceiveCoilName = ds.TransmitCoilName = "Head 12"
    ds.ContrastBolusAgent = "Gadovist"
    ds.PositionReferenceIndicator = "NA"
    context = Dataset()
    context.ValueType = "TEXT"
    context.ConceptNameCodeSequence = Sequence([_code_item("121071")])
    context.TextValue = "note"
    ds.AcquisitionContextSequence = Sequence([context])
    ds.AnatomicRegionSequence = Sequence([_code_item()])
    ds.ProcedureCodeSequence = Sequence([_code_item("24727-0")])
    ds.file_meta.SourceApplicationEntityTitle = "SCANNER1"
    _mark(ds)
    _mark(ds.file_meta)
    return ds


def _mark(ds: Dataset) -> None:
    for element in ds:
        if element.VR == "SQ":
            for item in element.value:
                _mark(item)
        elif element.VR in TEXT_VRS and element.keyword not in UNMARKED:
            element.value = {"PN": f"{MARKER}^Zebedee", "UR": f"http://{MARKER.lower()}.example/"}.get(
                element.VR, MARKER if element.VR in ("CS", "SH", "AE") else f"scan of {MARKER} patient")


def series_files(count: int = 7, series_uid: str | None = None, size: int = 128) -> list[tuple[float, bytes]]:
    """(z, DICOM bytes) of one axial series, slice z a phantom whose lesion shows on slices 2 to 4."""
    series_uid, study_uid = series_uid or generate_uid(), generate_uid()
    files = []
    for k in range(count):
        pixels = np.rint(make_phantom(40 + k, tumor=2 <= k <= 4, size=size) * 2000).astype(np.uint16)
        ds = synthetic_mr(pixels, StudyInstanceUID=study_uid, SeriesInstanceUID=series_uid,
                          ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
                          ImagePositionPatient=[0, 0, 5.0 * k], InstanceNumber=count - k)  # numbers run backwards
        files.append((5.0 * k, to_bytes(ds)))
    return files
