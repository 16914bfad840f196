"""DICOM SR exports: a study submitted as a real DICOM file (de-identified on the way in) gets a Comprehensive
3D SR (TID 1500) that references the de-identified instances, read back with pydicom and highdicom and, when
the DICOM standard's tables are on the machine, checked by dicom-validator; the API and the study page
serve the same builder's output, to those allowed to see the study."""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse
from pydicom.sr.codedict import codes
from pydicom.uid import Comprehensive3DSRStorage
from pydicom.multival import MultiValue
from pydicom.valuerep import validate_value

from diagnosis import services
from diagnosis.models import AuditEvent, Study
from tests.api.helpers import error_of
from tests.factories import StudyFactory
from tests.integrations.conftest import VERSION, finish
from tests.privacy.samples import (IDENTIFYING_WORDS, MR_SMALL_SOP_UID, MR_SMALL_STUDY_UID, dicom_upload,
                                   identifiable_mr, multiframe_mr, to_bytes)

# The de-identified patient name is the pseudonymous code, one component: highdicom would rather have two.
pytestmark = pytest.mark.filterwarnings("ignore:The string .* is unlikely to represent the intended person name")
# Where dicom-validator keeps the DICOM standard's tables (it downloads them on first use, which needs the
# internet): its default folder, or DICOM_VALIDATOR_STANDARD.
STANDARD = Path(os.environ.get("DICOM_VALIDATOR_STANDARD", Path.home() / "dicom-validator"))


def submit(user, patient, dataset) -> Study:
    """A study submitted through the service, as the upload form and the API do (its task is never sent here)."""
    return services.submit_study(user=user, patient=patient, uploads=[dicom_upload(dataset)]).study


def sr_url(study) -> str:
    return f"/api/v1/studies/{study.pk}/dicom-sr/"


def stored_copy(study) -> pydicom.Dataset:
    image = study.images.first()
    with default_storage.open(image.dicom.name, "rb") as handle:
        return pydicom.dcmread(handle)


def read_sr(content: bytes) -> tuple[pydicom.Dataset, hd.sr.Comprehensive3DSR]:
    """Read the file back strictly: every value valid for its VR (pydicom), and the document and its content
    tree parsed and checked by highdicom."""
    dataset = pydicom.dcmread(io.BytesIO(content))
    for element in dataset.iterall():
        values = element.value if isinstance(element.value, MultiValue) else [element.value]
        for value in values:
            if isinstance(value, str):  # text, codes, UIDs, dates and times (numbers are parsed when read)
                validate_value(element.VR, value, pydicom.config.RAISE)
    assert dataset.file_meta.MediaStorageSOPClassUID == dataset.SOPClassUID
    return dataset, hd.sr.Comprehensive3DSR.from_dataset(dataset)


@pytest.fixture
def dicom_study(media_root, clinician_a, patient_a) -> Study:
    return finish(submit(clinician_a, patient_a, identifiable_mr()), [0.87])


def test_the_sr_references_the_deidentified_instance_and_carries_the_result(api_a, dicom_study, patient_a):
    response = api_a.get(sr_url(dicom_study))
    assert response.status_code == 200 and response["Content-Type"] == "application/dicom"
    assert response["Content-Disposition"].startswith('attachment; filename="study-')
    dataset, document = read_sr(response.content)
    source = stored_copy(dicom_study)

    assert dataset.SOPClassUID == Comprehensive3DSRStorage and dataset.Modality == "SR"
    assert source.SOPInstanceUID != MR_SMALL_SOP_UID and source.StudyInstanceUID != MR_SMALL_STUDY_UID
    assert dataset.StudyInstanceUID == source.StudyInstanceUID  # the de-identified study, not the original
    assert dataset.PatientID == patient_a.code
    assert dataset.CompletionFlag == "COMPLETE" and dataset.VerificationFlag == "UNVERIFIED"
    evidence = dataset.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID

    report = document.content
    assert isinstance(report, hd.sr.MeasurementReport)
    [group] = report.get_image_measurement_groups()
    [image] = group.source_images
    assert image.referenced_sop_instance_uid == source.SOPInstanceUID
    assert image.referenced_sop_class_uid == source.SOPClassUID
    probability, threshold = group.get_measurements()
    assert probability.value == pytest.approx(0.87) and threshold.value == pytest.approx(0.6)
    [finding] = group.get_qualitative_evaluations()
    assert finding.name == codes.SCT.Neoplasm and finding.value == codes.SCT.Present
    texts = {item.ConceptNameCodeSequence[0].CodeValue: item.TextValue
             for item in group[0].ContentSequence if item.ValueType == "TEXT"}
    assert texts["111001"] == "BrainScan brain tumor CNN" and texts["111003"] == VERSION  # TID 4019

    raw = response.content.decode("latin-1")
    assert not [word for word in IDENTIFYING_WORDS if word in raw]
    event = AuditEvent.objects.get(action=AuditEvent.Action.STUDY_EXPORTED)
    assert event.details == {"format": "dicom-sr"} and event.via == "api" and event.object_id == str(dicom_study.pk)


def test_the_same_result_gives_the_same_instance(api_a, dicom_study):
    first, _ = read_sr(api_a.get(sr_url(dicom_study)).content)
    second, _ = read_sr(api_a.get(sr_url(dicom_study)).content)
    assert first.SOPInstanceUID == second.SOPInstanceUID and first.SeriesInstanceUID == second.SeriesInstanceUID


def multiframe_study(user, patient, frames: int) -> Study:
    """A study whose images are the frames of one stored multi-frame DICOM file (as submit_study stores them)."""
    study = StudyFactory(patient=patient, submitted_by=user, images=frames)
    name = default_storage.save(f"studies/{study.pk}/frames.dcm", ContentFile(to_bytes(multiframe_mr(frames))))
    study.images.update(dicom=name, source_format="DICOM")
    return study


def test_frames_of_a_multiframe_file_and_unassessable_images(api_a, media_root, clinician_a, patient_a):
    study = finish(multiframe_study(clinician_a, patient_a, 3), [0.2, "rejected", 0.7])
    dataset, document = read_sr(api_a.get(sr_url(study)).content)
    groups = document.content.get_image_measurement_groups()
    assert [g.source_images[0].referenced_frame_numbers for g in groups] == [[1], [2], [3]]
    assert groups[0].get_qualitative_evaluations()[0].value == codes.SCT.Absent
    refused = groups[1]
    assert refused.get_measurements() == []
    verdict, quality = refused.get_qualitative_evaluations()
    assert verdict.value == codes.SCT.Indeterminate and quality.value.value == "not_brain_mri"
    assert quality.value.meaning == "This does not look like a brain MRI slice."
    assert groups[2].get_qualitative_evaluations()[0].value == codes.SCT.Present
    assert dataset.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == "99BRAINSCAN"


def test_a_study_without_dicom_images_has_no_sr(api_a, patient_a, clinician_a):
    study = finish(StudyFactory(patient=patient_a, submitted_by=clinician_a))
    response = api_a.get(sr_url(study))
    assert response.status_code == 404 and response["Content-Type"] == "application/json"
    assert error_of(response) == {"code": "not_found", "message": "This study has no DICOM images, so it has no "
                                                                  "DICOM SR."}


def test_before_the_assessment_the_sr_is_not_ready(api_a, media_root, clinician_a, patient_a):
    study = submit(clinician_a, patient_a, identifiable_mr())
    response = api_a.get(sr_url(study))
    assert response.status_code == 409 and error_of(response)["code"] == "invalid_state"


def test_others_get_404_and_anonymous_401(api_b, api_anonymous, dicom_study):
    assert error_of(api_b.get(sr_url(dicom_study)))["code"] == "not_found"
    response = api_anonymous.get(sr_url(dicom_study))
    assert response.status_code == 401 and error_of(response)["code"] == "not_authenticated"
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.STUDY_EXPORTED).exists()


def test_the_study_page_links_to_the_same_report(client_a, client_b, anonymous, api_a, dicom_study):
    page = client_a.get(reverse("study-detail", args=[dicom_study.pk])).content.decode()
    link = reverse("study-dicom-sr", args=[dicom_study.pk])
    assert page.count(f'href="{link}"') == 1
    response = client_a.get(link)
    assert response.status_code == 200 and response["Content-Type"] == "application/dicom"
    from_page, _ = read_sr(response.content)
    from_api, _ = read_sr(api_a.get(sr_url(dicom_study)).content)
    assert from_page.SOPInstanceUID == from_api.SOPInstanceUID
    assert AuditEvent.objects.filter(action=AuditEvent.Action.STUDY_EXPORTED, via="web",
                                     details__format="dicom-sr").count() == 1
    assert client_b.get(link).status_code == 404
    assert anonymous.get(link).status_code == 302  # to the login page


def test_no_link_before_completion_or_without_dicom(client_a, media_root, clinician_a, patient_a):
    queued = submit(clinician_a, patient_a, identifiable_mr())
    assert "DICOM SR" not in client_a.get(reverse("study-detail", args=[queued.pk])).content.decode()
    png = finish(StudyFactory(patient=patient_a, submitted_by=clinician_a))
    assert "DICOM SR" not in client_a.get(reverse("study-detail", args=[png.pk])).content.decode()
    assert client_a.get(reverse("study-dicom-sr", args=[png.pk])).status_code == 404


def test_the_sr_passes_dicom_validator(api_a, dicom_study, tmp_path):
    """dicom-validator checks the file against the IOD tables of the DICOM standard. It reads them from JSON it
    makes from the standard's DocBook, downloaded from dicom.nema.org on first use: without the internet (and
    without a copy made elsewhere) there is nothing to check against, so the test is skipped then."""
    from dicom_validator.spec_reader.edition_reader import EditionReader
    from dicom_validator.validator.iod_validator import IODValidator

    reader = EditionReader(STANDARD)
    edition = reader.get_edition("local") if (STANDARD / EditionReader.json_filename).exists() else None
    if edition is None or not reader.json_files_exist(edition):
        pytest.skip(f"dicom-validator needs the DICOM standard's tables, which it downloads on first use; none are "
                    f"at {STANDARD} and this machine has no internet (run `validate_iods` once with internet, or set "
                    "DICOM_VALIDATOR_STANDARD)")
    dataset = pydicom.dcmread(io.BytesIO(api_a.get(sr_url(dicom_study)).content))
    result = IODValidator(dataset, reader.load_dicom_info(edition), log_level=logging.WARNING).validate()
    assert result.errors == 0, result.module_errors
