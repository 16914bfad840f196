"""A study's AI result as a DICOM Comprehensive 3D SR (TID 1500 Measurement Report), built with highdicom.

One builder for the API (`GET /api/v1/studies/{id}/dicom-sr/`) and the study page's download link. The
report belongs to the DICOM study of the de-identified copies BrainScan stored (their UIDs, patient and
study attributes: the pseudonymous code, never the original identity) and holds one measurement group per
DICOM image (a frame of a multi-frame file is referenced by its number):

    Measurement Report (TID 1500), observer: the BrainScan device; procedure: imaging procedure
      Image Library: the source instances
      Imaging Measurements
        Measurement Group (TID 1501) "Image N": tracking id and UID, finding type neoplasm, site brain,
          algorithm name and version (TID 4019), source image (SOP class, SOP instance, frame)
          neoplasm: present / absent (tumor / no_tumor), or indeterminate when the image cannot be assessed
          probability of brain tumor (UCUM "1") and the decision threshold, when the image was assessed
          image quality check: the gate's code and message, when it was not
        A series is summed up instead of listed: one group "Series" (the most suspicious region's mean
          probability, the threshold, the counts of slices, assessed and suspicious slices, and the region's
          slices as its source images), then one group per suspicious slice and the region's peak.

Codes are SNOMED CT and DCM where the standard has one, else BrainScan's private scheme 99BRAINSCAN (declared
in the Coding Scheme Identification Sequence). UIDs are derived from the study, images and predictions, so the
same result always gives the same instance.
"""

from __future__ import annotations

import io
import logging
import uuid
from collections import defaultdict

import pydicom
from django.core.files.storage import default_storage
from django.http import HttpResponse
from highdicom import sr as hsr
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence as DicomSequence
from pydicom.sr.codedict import codes

from diagnosis import audit
from diagnosis import selectors as diagnosis_selectors
from diagnosis.models import AuditEvent, Prediction, Study
from integrations import selectors
from ml.predictor import TUMOR

log = logging.getLogger(__name__)
logging.getLogger("highdicom").setLevel(logging.WARNING)  # not a line per module copied into every report
MEDIA_TYPE = "application/dicom"
SCHEME = "99BRAINSCAN"
ALGORITHM = "BrainScan brain tumor CNN"
PROBABILITY = hsr.CodedConcept(value="TUMOR_PROB", scheme_designator=SCHEME, meaning="Probability of brain tumor")
THRESHOLD = hsr.CodedConcept(value="THRESHOLD", scheme_designator=SCHEME, meaning="Decision threshold")
QUALITY = hsr.CodedConcept(value="QUALITY", scheme_designator=SCHEME, meaning="Image quality check")
SERIES_NUMBER = 9100


class NoStructuredReport(Exception):
    """There is no SR of this study (the message says why)."""


class NoDicomImages(NoStructuredReport):
    pass


class NotReady(NoStructuredReport):
    pass


def _uid(*parts) -> str:
    """A UID derived from `parts` (a name-based UUID under the 2.25 root): the same parts, the same UID."""
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, 'urn:brainscan:sr:' + '/'.join(map(str, parts))).int}"


def build(study: Study) -> bytes:
    """The study's DICOM SR as the bytes of a DICOM file; raises NoDicomImages or NotReady."""
    study = diagnosis_selectors.study_with_results(study)
    images = [(image, prediction) for image, prediction in selectors.assessed_images(study) if image.dicom]
    if not images:
        raise NoDicomImages("This study has no DICOM images, so it has no DICOM SR.")
    if study.status not in selectors.REPORTED or not any(prediction for _, prediction in images):
        raise NotReady("The DICOM SR is available once the assessment is complete (or the study could not be "
                       "assessed).")
    sources, frames = _sources(images)
    first = next(iter(sources.values()))
    # An SR belongs to one DICOM study: images uploaded from another DICOM study stay out of it.
    kept = [(image, p) for image, p in images if p is not None
            and sources[image.dicom.name].StudyInstanceUID == first.StudyInstanceUID]
    evidence = [ds for ds in sources.values() if ds.StudyInstanceUID == first.StudyInstanceUID]
    groups = [_group(study, image, prediction, sources[image.dicom.name], frames[image.pk])
              for image, prediction in selectors.reported_images(study, kept)]
    result = selectors.study_result(study, images)
    if result and result.get("series"):
        groups.insert(0, _series_group(study, result, kept, sources, frames))
    if not groups:
        raise NotReady("No image of the study's DICOM series has been assessed yet.")
    versions = sorted({prediction.model_version for _, prediction in kept})
    observer = hsr.ObservationContext(observer_device_context=hsr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hsr.DeviceObserverIdentifyingAttributes(
            uid=_uid("device", *versions), name="BrainScan", manufacturer_name="BrainScan",
            model_name=", ".join(versions)[:64])))
    try:
        report = hsr.MeasurementReport(observation_context=observer, procedure_reported=codes.cid100.ImagingProcedure,
                                       imaging_measurements=groups, referenced_images=evidence)
    except (AttributeError, KeyError, ValueError, TypeError):  # an instance the image library cannot describe
        log.warning("DICOM SR of study %s: built without an image library", study.pk, exc_info=True)
        report = hsr.MeasurementReport(observation_context=observer, procedure_reported=codes.cid100.ImagingProcedure,
                                       imaging_measurements=groups)
    document = hsr.Comprehensive3DSR(
        evidence=evidence, content=report[0], series_instance_uid=_uid(study.pk, "series"),
        series_number=SERIES_NUMBER, sop_instance_uid=_uid(study.pk, *(p.pk for _, p in kept)), instance_number=1,
        manufacturer="BrainScan", series_description="BrainScan AI assessment (decision support)",
        is_complete=True, is_final=True, is_verified=False)
    scheme = Dataset()
    scheme.CodingSchemeDesignator = SCHEME
    scheme.CodingSchemeName = "BrainScan local codes"
    scheme.CodingSchemeResponsibleOrganization = "BrainScan"
    document.CodingSchemeIdentificationSequence = DicomSequence([scheme])
    buffer = io.BytesIO()
    document.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _sources(images: list) -> tuple[dict[str, Dataset], dict]:
    """The stored de-identified DICOM files (read once each), and each image's frame number in its file."""
    sources: dict[str, Dataset] = {}
    frames, seen = {}, defaultdict(int)
    for image, _ in images:  # in position order: the frames of one file in their order
        name = image.dicom.name
        if name not in sources:
            try:
                with default_storage.open(name, "rb") as handle:
                    sources[name] = pydicom.dcmread(handle, stop_before_pixels=True)
            except (FileNotFoundError, InvalidDicomError) as error:
                raise NoDicomImages("The study's DICOM file is no longer stored.") from error
        seen[name] += 1
        frames[image.pk] = seen[name]
    return sources, frames


def _reference(source: Dataset, frame: int) -> hsr.SourceImageForMeasurementGroup:
    multiframe = int(source.get("NumberOfFrames", 1) or 1) > 1
    return hsr.SourceImageForMeasurementGroup(referenced_sop_class_uid=source.SOPClassUID,
                                              referenced_sop_instance_uid=source.SOPInstanceUID,
                                              referenced_frame_numbers=[frame] if multiframe else None)


def _series_group(study: Study, result: dict, images: list, sources: dict, frames: dict):
    """The series' result: its most suspicious region, with that region's slices as source images."""
    region = result["region"]
    algorithm = hsr.AlgorithmIdentification(name=ALGORITHM, version=result["model_version"])

    def number(value: str, meaning: str, amount: float) -> hsr.Measurement:
        return hsr.Measurement(name=hsr.CodedConcept(value=value, scheme_designator=SCHEME, meaning=meaning),
                               value=float(amount), unit=codes.UCUM.NoUnits)

    finding = codes.SCT.Present if result["label"] == TUMOR else codes.SCT.Absent
    return hsr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hsr.TrackingIdentifier(uid=_uid(study.pk, "series", "tracking"), identifier="Series"),
        finding_type=codes.SCT.Neoplasm, finding_sites=[hsr.FindingSite(anatomic_location=codes.SCT.Brain)],
        algorithm_id=algorithm,
        measurements=[
            hsr.Measurement(name=PROBABILITY, value=float(result["probability"]), unit=codes.UCUM.NoUnits,
                            algorithm_id=algorithm),
            hsr.Measurement(name=THRESHOLD, value=float(result["threshold"]), unit=codes.UCUM.NoUnits),
            number("SLICES", "Slices in the series", result["slices"]),
            number("ASSESSED", "Slices assessed", result["assessed"]),
            number("SUSPICIOUS", "Slices at or above the threshold", result["suspicious_slices"]),
            number("WINDOW", "Slices averaged in the region's score", region["window"]),
            number("PEAK", "Most suspicious slice (from 1)", region["peak"] + 1),
        ],
        qualitative_evaluations=[hsr.QualitativeEvaluation(name=codes.SCT.Neoplasm, value=finding)],
        source_images=[_reference(sources[image.dicom.name], frames[image.pk]) for image, _ in images
                       if region["first"] <= image.position <= region["last"]])


def _group(study: Study, image, prediction: Prediction, source: Dataset, frame: int):
    algorithm = hsr.AlgorithmIdentification(name=ALGORITHM, version=prediction.model_version)
    reference = _reference(source, frame)
    if prediction.usable:
        finding = codes.SCT.Present if prediction.label == TUMOR else codes.SCT.Absent
        measurements = [
            hsr.Measurement(name=PROBABILITY, value=float(prediction.probability), unit=codes.UCUM.NoUnits,
                            algorithm_id=algorithm),
            hsr.Measurement(name=THRESHOLD, value=float(prediction.threshold), unit=codes.UCUM.NoUnits),
        ]
        evaluations = [hsr.QualitativeEvaluation(name=codes.SCT.Neoplasm, value=finding)]
    else:
        measurements = []
        reason = hsr.CodedConcept(value=(prediction.quality_code or "rejected")[:16], scheme_designator=SCHEME,
                                  meaning=(prediction.quality_message or "Cannot be assessed")[:64])
        evaluations = [hsr.QualitativeEvaluation(name=codes.SCT.Neoplasm, value=codes.SCT.Indeterminate),
                       hsr.QualitativeEvaluation(name=QUALITY, value=reason)]
    return hsr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hsr.TrackingIdentifier(uid=_uid(study.pk, image.pk, "tracking"),
                                                   identifier=f"Image {image.position + 1}"),
        finding_type=codes.SCT.Neoplasm, finding_sites=[hsr.FindingSite(anatomic_location=codes.SCT.Brain)],
        algorithm_id=algorithm, measurements=measurements or None, qualitative_evaluations=evaluations,
        source_images=[reference])


def dicom_sr_response(request, study: Study, *, via: str) -> HttpResponse:
    """Build the SR, audit the export and send it as a download: the API and the study page alike."""
    content = build(study)
    audit.record(AuditEvent.Action.STUDY_EXPORTED, request=request, obj=study, patient_code=study.patient.code,
                 via=via, details={"format": "dicom-sr"})
    response = HttpResponse(content, content_type=MEDIA_TYPE)
    response["Content-Disposition"] = f'attachment; filename="study-{study.short_id}-ai-report.dcm"'
    response["Cache-Control"] = "private, no-store"
    return response
