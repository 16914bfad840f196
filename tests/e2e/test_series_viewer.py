"""A whole series through the browser: a 150-slice DICOM series (512 x 512, 16-bit) uploaded in one go from
the form, assessed by a real worker into 150 slice results, then scrolled in the viewer with the wheel, the
keys, the slider and the probability strip, at laptop and tablet size."""

from __future__ import annotations

import re

import pytest

from diagnosis.models import Prediction, Study
from tests.privacy.samples import series_files
from tests.e2e.conftest import LAPTOP, TABLET, shoot
from tests.e2e.test_clinician_flow import log_in
from tests.factories import PatientFactory, UserFactory
from tests.workers import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]
SLICES = 150


@pytest.fixture(scope="module")
def worker_env():
    return {"BRAINSCAN_MAX_SLICES": "400"}


def test_a_150_slice_series_is_uploaded_assessed_once_per_slice_and_scrolled(live_server, worker, open_page, tmp_path):
    clinician = UserFactory(username="dr.okafor")
    patient = PatientFactory(care_team=[clinician])
    folder = tmp_path / "series"
    folder.mkdir()
    for n, (_, data) in enumerate(series_files(SLICES, size=512)):
        (folder / f"IM{(n * 7919) % 10007:05d}").write_bytes(data)  # names say nothing of the order
    page, watch = open_page(LAPTOP)
    base = live_server.url
    log_in(page, base, clinician.username)
    page.goto(base + "/studies/new/")
    page.get_by_label("Patient").select_option(label=patient.code)
    page.set_input_files("#id_images", sorted(str(path) for path in folder.iterdir()))
    assert page.locator("#file-list li").count() == SLICES
    page.locator("#submit-button").click()
    # Every file was added, so the form opens the study. Correctness, not speed (benchmarks.series times it).
    page.wait_for_url(re.compile(re.escape(base) + r"/studies/[0-9a-f-]{36}/$"), timeout=400_000)
    study = Study.objects.get(patient=patient)
    assert page.url == f"{base}/studies/{study.pk}/"
    assert study.series and study.images.count() == SLICES
    wait_for(lambda: Study.objects.filter(pk=study.pk, status=Study.Status.COMPLETED).exists(), 300,
             message=f"the series to complete; worker log:\n{worker.log()[-3000:]}")
    predictions = Prediction.objects.filter(image__study=study)
    assert predictions.count() == SLICES and predictions.values("image").distinct().count() == SLICES

    page.reload()
    viewer = page.locator("[data-series-viewer]")
    viewer.wait_for()
    caption = page.locator("[data-slice-caption]")
    slider = page.locator("[data-slice-slider]")
    start = int(slider.input_value())
    viewer.focus()
    page.keyboard.press("ArrowDown")
    assert int(slider.input_value()) == min(start + 1, SLICES)
    page.keyboard.press("Home")
    assert slider.input_value() == "1" and caption.inner_text().startswith("Slice 1 of 150")
    page.locator("[data-stage]").hover()
    for _ in range(5):
        page.mouse.wheel(0, 120)
    wait_for(lambda: slider.input_value() == "6", 5, message="the wheel to scroll five slices")
    page.keyboard.press("End")
    assert slider.input_value() == str(SLICES)
    page.locator("[data-jump-peak]").click()
    peak = Study.objects.get(pk=study.pk).region["peak"]
    assert slider.input_value() == str(peak + 1)
    assert page.locator("[data-strip] rect").count() > SLICES  # bars, the current slice, runs
    canvas_has_pixels = page.evaluate("""() => { const c = document.querySelector('[data-scan-canvas]');
        return c.width > 0 && c.getContext('2d').getImageData(c.width / 2, c.height / 2, 1, 1).data[3] > 0; }""")
    assert canvas_has_pixels
    shoot(page, "series-viewer", full_page=True)
    watch.assert_clean()

    tablet, tablet_watch = open_page(TABLET)
    log_in(tablet, base, clinician.username)
    tablet.goto(f"{base}/studies/{study.pk}/")
    tablet.locator("[data-series-viewer]").wait_for()
    width = tablet.evaluate("() => document.documentElement.scrollWidth")
    assert width <= TABLET["width"], "the viewer must fit a tablet without scrolling sideways"
    shoot(tablet, "series-viewer-tablet", full_page=True)
    tablet_watch.assert_clean()
