"""Whole series: the DICOM files of one series, a .zip of them, a multi-frame file or a NIfTI volume become one
study in anatomical order; the worker assesses it in chunks, resumably, and gives its most suspicious region."""

from __future__ import annotations

import io
import zipfile

import nibabel
import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from diagnosis import services
from diagnosis.inference import get_predictor
from diagnosis.models import Prediction, Study
from ml.phantoms import make_phantom
from tests.privacy.samples import series_files

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media_root")]
SLICES = 7  # series_files' default


def dicom_files(count: int = SLICES) -> list[SimpleUploadedFile]:
    return [SimpleUploadedFile(f"{n}.dcm", data) for n, (_, data) in enumerate(series_files(count))]


def submit(user, patient, uploads):
    return services.submit_study(user=user, patient=patient, uploads=uploads).study


def test_dicom_files_of_one_series_are_ordered_by_position_not_by_name(clinician_a, patient_a):
    files = series_files()
    shuffled = [files[i] for i in (4, 0, 6, 2, 1, 5, 3)]
    uploads = [SimpleUploadedFile(f"IM{n:04d}.dcm", data) for n, (_, data) in enumerate(shuffled)]
    study = submit(clinician_a, patient_a, uploads)
    assert study.series and study.images.count() == SLICES
    stored_z = [image.acquisition.get("frame") for image in study.images.order_by("position")]
    import pydicom
    positions = [float(pydicom.dcmread(io.BytesIO(image.dicom.read())).ImagePositionPatient[2])
                 for image in study.images.order_by("position")]
    assert positions == sorted(positions) and stored_z == [None] * SLICES


def test_a_zip_of_a_series_is_read_member_by_member(clinician_a, patient_a):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for n, (_, data) in enumerate(series_files()):
            archive.writestr(f"DICOM/{SLICES - n}.dcm", data)
    study = submit(clinician_a, patient_a, [SimpleUploadedFile("series.zip", buffer.getvalue())])
    assert study.series and study.images.count() == SLICES


def test_a_nifti_volume_is_a_series(clinician_a, patient_a):
    volume = np.stack([make_phantom(60 + k, tumor=k == 3, size=96) for k in range(5)], axis=-1) * 1000
    data = nibabel.Nifti1Image(volume.astype(np.int16), np.diag([1, 1, 3, 1])).to_bytes()
    study = submit(clinician_a, patient_a, [SimpleUploadedFile("brain.nii", data)])
    assert study.series and study.images.count() == 5
    assert set(study.images.values_list("source_format", flat=True)) == {"NIFTI"}


def test_mixed_series_are_refused_and_nothing_is_stored(clinician_a, patient_a, media_root):
    first, second = series_files(3), series_files(3)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for n, (_, data) in enumerate(first + second):
            archive.writestr(f"{n}.dcm", data)
    with pytest.raises(services.NothingUsable, match="2 different series"):
        submit(clinician_a, patient_a, [SimpleUploadedFile("two.zip", buffer.getvalue())])
    assert not Study.objects.exists() and not list(media_root.rglob("*.png"))


def test_a_series_over_the_slice_limit_is_refused(clinician_a, patient_a, settings):
    settings.MAX_SLICES = 4
    with pytest.raises(services.NothingUsable, match="at most 4"):
        submit(clinician_a, patient_a, [SimpleUploadedFile(f"{n}.dcm", data) for n, (_, data) in
                                        enumerate(series_files(5))])


def test_the_worker_assesses_in_chunks_resumes_and_keeps_each_slice_once(clinician_a, patient_a, settings):
    settings.INFERENCE_CHUNK = 3
    study = submit(clinician_a, patient_a, dicom_files())
    predictor = get_predictor()

    class DiesAfterTwoChunks:
        version, threshold, series_window = predictor.version, predictor.threshold, predictor.series_window
        calls = 0

        def assess(self, slices, **options):
            DiesAfterTwoChunks.calls += 1
            if DiesAfterTwoChunks.calls > 2:
                raise SystemExit("worker killed")
            return predictor.assess(slices, **options)

    import diagnosis.services.assessment as assessment

    real = assessment.get_predictor
    assessment.get_predictor = DiesAfterTwoChunks
    try:
        with pytest.raises(SystemExit):
            services.assess_study(str(study.pk), delivery="message-1")
    finally:
        assessment.get_predictor = real
    assert Prediction.objects.filter(image__study=study).count() == 6  # two chunks stored, the run died
    assert services.assess_study(str(study.pk), delivery="message-1").startswith("completed")  # the redelivery
    study.refresh_from_db()
    predictions = Prediction.objects.filter(image__study=study)
    assert study.status == Study.Status.COMPLETED and predictions.count() == SLICES
    assert len(set(predictions.values_list("image_id", flat=True))) == SLICES
    assert study.region["window"] == min(predictor.series_window, SLICES)
    assert study.suspicious_slices == sum(p.usable and p.probability >= p.threshold for p in predictions)


def test_the_page_shows_the_series(client_a, clinician_a, patient_a):
    study = submit(clinician_a, patient_a, dicom_files())
    services.assess_study(str(study.pk))
    page = client_a.get(f"/studies/{study.pk}/").content.decode()
    assert 'id="series-data"' in page and "data-series-viewer" in page and "Jump to the most suspicious slice" in page
    status = client_a.get(f"/studies/{study.pk}/status/").json()
    assert status["progress"] == {"done": SLICES, "total": SLICES}


def zipped(files: list[tuple[float, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for n, (_, data) in enumerate(files):
            archive.writestr(f"{n}.dcm", data)
    return buffer.getvalue()


def test_the_api_takes_a_zipped_series_and_pages_through_its_slices(clinician_a, patient_a):
    from tests.api.helpers import token_client

    api = token_client(clinician_a)
    response = api.post("/api/v1/studies/", {"patient": patient_a.code,
                                             "image": SimpleUploadedFile("series.zip", zipped(series_files()))},
                        format="multipart")
    assert response.status_code == 202, response.json()
    study_id = response.json()["id"]
    queued = api.get(f"/api/v1/studies/{study_id}/").json()
    assert (queued["series"], queued["slices"], queued["progress"]) == (True, SLICES, {"done": 0, "total": SLICES})
    services.assess_study(study_id)

    detail = api.get(f"/api/v1/studies/{study_id}/").json()
    assert detail["status"] == "completed" and detail["progress"] == {"done": SLICES, "total": SLICES}
    assert detail["images"] == []  # a series is paged through slices_url
    region = detail["prediction"]["region"]
    assert region["first"] <= region["peak"] <= region["last"]
    assert region["score"] == detail["prediction"]["probability"]
    rows, url = [], detail["slices_url"] + "?page_size=3"
    while url:
        page = api.get(url).json()
        assert len(page["results"]) <= 3
        rows += page["results"]
        url = page["next"]
    assert [row["position"] for row in rows] == list(range(SLICES))
    for row in rows:
        assert set(row) == {"id", "position", "image_url", "probability", "label", "quality", "heatmap_url"}
        assert row["quality"]["status"] == "ok" and 0 <= row["probability"] <= 1
        assert row["label"] == ("tumor" if row["probability"] >= detail["prediction"]["threshold"] else "no_tumor")
        assert api.get(row["heatmap_url"]).status_code == 200
    assert detail["prediction"]["suspicious_slices"] == sum(row["label"] == "tumor" for row in rows)


def test_only_the_care_team_pages_through_the_slices(clinician_a, clinician_b, admin_user, patient_a):
    from tests.api.helpers import token_client

    study = submit(clinician_a, patient_a, [SimpleUploadedFile("series.zip", zipped(series_files(3)))])
    expected = {clinician_a: 200, clinician_b: 404, admin_user: 200, None: 401}
    for user, status in expected.items():
        assert token_client(user).get(f"/api/v1/studies/{study.pk}/slices/").status_code == status
