"""A series in the exports: FHIR and DICOM SR sum it up (its most suspicious region, counts of slices) and list
only the suspicious slices and the peak, so that a 400-slice volume gives a report a receiver can read."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from fhir.resources.R4B.observation import Observation

from diagnosis import services
from diagnosis.models import Prediction, Study
from tests.integrations.test_dicom_sr import read_sr
from tests.integrations.test_fhir import contained, report_of
from tests.privacy.samples import series_files

pytestmark = pytest.mark.filterwarnings("ignore:The string .* is unlikely to represent the intended person name")
SLICES = 7


@pytest.fixture
def series_study(media_root, clinician_a, patient_a) -> Study:
    uploads = [SimpleUploadedFile(f"{n}.dcm", data) for n, (_, data) in enumerate(series_files(SLICES))]
    study = services.submit_study(user=clinician_a, patient=patient_a, uploads=uploads).study
    services.assess_study(str(study.pk))
    study.refresh_from_db()
    assert study.series and study.status == Study.Status.COMPLETED, study.error
    return study


def reported_positions(study: Study) -> list[int]:
    """The slices an export lists one by one: the suspicious ones and the region's peak."""
    predictions = Prediction.objects.filter(image__study=study).select_related("image")
    return sorted(p.image.position for p in predictions
                  if p.usable and (p.probability >= p.threshold or p.image.position == study.region["peak"]))


def test_fhir_sums_up_the_series_and_lists_its_suspicious_slices(api_a, series_study):
    report = report_of(api_a.get(f"/api/v1/studies/{series_study.pk}/fhir/"))
    summary, *slices = contained(report, Observation)
    region = series_study.region
    assert summary.id == "series" and report.result[0].reference == "#series"
    assert float(summary.valueQuantity.value) == pytest.approx(series_study.probability, abs=1e-6)
    components = {c.code.coding[0].code: c for c in summary.component}
    assert components["slices"].valueInteger == SLICES
    assert components["suspicious-slices"].valueInteger == series_study.suspicious_slices
    assert (components["region-first"].valueInteger, components["region-peak"].valueInteger,
            components["region-last"].valueInteger) == (region["first"] + 1, region["peak"] + 1, region["last"] + 1)
    assert [int(o.id.split("-")[1]) - 1 for o in slices] == reported_positions(series_study)
    assert "most suspicious region, slices" in report.conclusion
    assert f"{series_study.suspicious_slices} of {SLICES} assessed slice(s)" in report.conclusion


def test_the_sr_sums_up_the_series_with_the_region_as_its_source_images(api_a, series_study):
    response = api_a.get(f"/api/v1/studies/{series_study.pk}/dicom-sr/")
    assert response.status_code == 200
    _, document = read_sr(response.content)
    groups = document.content.get_planar_roi_measurement_groups() + \
        document.content.get_image_measurement_groups()
    summary = next(g for g in groups if g.tracking_identifier == "Series")
    region = series_study.region
    assert len(summary.source_images) == region["last"] - region["first"] + 1
    assert len(groups) == 1 + len(reported_positions(series_study))
    names = {m.name.meaning: m.value for m in summary.get_measurements()}
    assert names["Slices in the series"] == SLICES
    assert float(names["Probability of brain tumor"]) == pytest.approx(series_study.probability, abs=1e-6)
