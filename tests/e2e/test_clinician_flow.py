"""A clinician's session in Chromium, against the live server and a real Celery worker.

Log in, submit two good files and a bad one (the bad one is named with its reason, the others go
through), watch the status change to completed without a reload, use the heatmap controls with the
keyboard, record a reading, print the report to PDF, log out; an anonymous visitor is sent to the
login page; the worklist and the main pages work at tablet size; axe-core finds no WCAG A/AA issue.
"""

from __future__ import annotations

import base64
import csv
import io
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from diagnosis import services
from diagnosis.models import AuditEvent, Prediction, Reading, Study
from tests.e2e.conftest import (ARTIFACTS, LAPTOP, TABLET, axe_violations, paused, save_small_png, shoot)
from tests.factories import PASSWORD, PatientFactory, StudyFactory, UserFactory, phantom_bytes
from tests.workers import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]
GOOD_FILES = [("slice-axial-12.png", "image/png", lambda: phantom_bytes(11, True)),
              ("slice-axial-13.jpg", "image/jpeg", lambda: phantom_bytes(12, True, "JPEG"))]
NOT_AN_IMAGE = b"Patient notes, exported as text and renamed by mistake.\n"


def submitted(clinician, patient, *slices: tuple[int, bool]) -> Study:
    """A study submitted through the service, as the form does; the worker picks it up."""
    uploads = [SimpleUploadedFile(f"slice-{seed}.png", phantom_bytes(seed, tumor), content_type="image/png")
               for seed, tumor in slices]
    return services.submit_study(user=clinician, patient=patient, uploads=uploads).study


def completed(*studies: Study, worker) -> None:
    for study in studies:
        wait_for(lambda: Study.objects.filter(pk=study.pk, status=Study.Status.COMPLETED).exists(), timeout=90,
                 message=f"study {study.short_id} to complete; worker log:\n{worker.log()[-3000:]}")


def log_in(page, base_url: str, username: str) -> None:
    page.goto(base_url + "/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")
    page.wait_for_url(base_url + "/")


def no_horizontal_scroll(page) -> bool:
    return page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")


def assert_same_layout(page) -> None:
    """Every page: the header, the disclaimer right under it, and the footer."""
    assert page.locator(".site-header .brand").is_visible()
    disclaimer = page.locator(".disclaimer")
    assert disclaimer.is_visible() and "does not replace a radiologist's reading" in disclaimer.inner_text()
    assert disclaimer.bounding_box()["y"] < 150
    assert page.locator(".site-footer").count() == 1
    assert no_horizontal_scroll(page)


def drop_files(page, selector: str, files: list[tuple[str, str, bytes]]) -> None:
    """Drag files onto an element the way a browser delivers a drop from the desktop."""
    transfer = page.evaluate_handle("""(files) => {
        const transfer = new DataTransfer();
        for (const f of files) {
            const bytes = Uint8Array.from(atob(f.data), c => c.charCodeAt(0));
            transfer.items.add(new File([bytes], f.name, {type: f.type}));
        }
        return transfer;
    }""", [{"name": n, "type": t, "data": base64.b64encode(d).decode()} for n, t, d in files])
    page.dispatch_event(selector, "dragenter", {"dataTransfer": transfer})
    assert "dragging" in page.get_attribute(selector, "class")
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


def tab_until(page, selector: str, limit: int = 12) -> None:
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"{selector} was not reached with the Tab key")


def focus_ring(page) -> str:
    return page.evaluate("() => { const s = getComputedStyle(document.activeElement); "
                         "return s.outlineStyle + ' ' + s.outlineWidth; }")


def pdf_text_and_first_page(path) -> tuple[str, int]:
    import pypdfium2

    document = pypdfium2.PdfDocument(str(path))
    text = "\n".join(document[i].get_textpage().get_text_range() for i in range(len(document)))
    save_small_png(document[0].render(scale=1.4).to_pil(), ARTIFACTS / "report-print.png")
    return text, len(document)


def test_clinician_submits_watches_reads_prints_and_logs_out(live_server, worker, open_page, tmp_path):
    clinician = UserFactory(username="dr.mensah")
    patient = PatientFactory(care_team=[clinician])
    earlier = [submitted(clinician, PatientFactory(care_team=[clinician]), (seed, tumor))
               for seed, tumor in ((3, True), (4, False), (5, True))]
    completed(*earlier, worker=worker)
    bad_file = tmp_path / "notes-scan.png"
    bad_file.write_bytes(NOT_AN_IMAGE)
    page, watch = open_page(LAPTOP)
    base = live_server.url

    # Log in and see the worklist.
    page.goto(base + "/")
    assert page.url.startswith(base + "/login/")
    assert_same_layout(page)
    shoot(page, "login")
    log_in(page, base, clinician.username)
    assert page.get_by_role("heading", name="Worklist").is_visible()
    assert page.locator("table.worklist tbody tr").count() == 3
    assert_same_layout(page)
    shoot(page, "worklist")

    # New study: two good files dropped, a bad one chosen with the file picker.
    page.get_by_role("link", name="New study").first.click()
    page.get_by_label("Patient").select_option(label=patient.code)
    drop_files(page, "#dropzone", [(name, kind, make()) for name, kind, make in GOOD_FILES])
    page.set_input_files("#id_images", str(bad_file))
    rows = page.locator("#file-list li")
    assert rows.count() == 3
    assert page.evaluate("() => document.getElementById('id_images').files.length") == 3
    assert_same_layout(page)

    # The form works from the keyboard, with a visible focus ring.
    page.get_by_label("Patient").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.id") == "id_images"
    tab_until(page, "#submit-button")
    assert focus_ring(page).startswith("solid 3px")
    shoot(page, "new-study", full_page=True)

    with paused(worker):
        page.keyboard.press("Enter")
        outcome = page.locator("#upload-outcome")
        outcome.wait_for(state="visible")
        assert "created with 2 files" in outcome.inner_text()
        bad_row = page.locator('#file-list li[data-filename="notes-scan.png"]')
        assert "Not added: The file is not a JPEG, PNG, DICOM, NIfTI or .zip file" in bad_row.inner_text()
        for name, _, _ in GOOD_FILES:
            assert "Added to the study" in page.locator(f'#file-list li[data-filename="{name}"]').inner_text()
        assert page.evaluate("() => document.getElementById('progress-bar').value") == 100
        assert page.locator("#submit-button").is_hidden()
        assert page.evaluate("() => document.activeElement.id") == "open-study"
        shoot(page, "new-study-result", full_page=True)
        study = Study.objects.get(patient=patient)
        assert study.images.count() == 2

        page.locator("#open-study").click()
        page.wait_for_url(f"{base}/studies/{study.pk}/")
        assert page.locator("#status-badge").inner_text().strip() == "Queued"
        assert "notes-scan.png was not added" in page.locator(".messages").inner_text()
        page.evaluate("() => { window.sameDocument = true; }")
        shoot(page, "study-queued")

    # The worker resumes; the page follows without a reload.
    page.locator("#result-badge").wait_for(timeout=90_000)
    assert page.evaluate("() => window.sameDocument") is True
    assert page.locator("#status-badge").inner_text().strip() == "Completed"
    assert "The analysis is complete." in page.locator("#status-announcer").inner_text()
    page.wait_for_function("() => [...document.querySelectorAll('.overlay-stack img')]"
                           ".every(img => img.complete && img.naturalWidth > 0)")
    study.refresh_from_db()
    prediction = Prediction.objects.filter(image__study=study).order_by("image__position").first()
    first = page.locator(".image-result").first
    assert prediction.model_version in first.locator(".model-version").inner_text()
    assert "threshold" in first.locator("svg.meter-bar").get_attribute("aria-label")
    assert first.locator(".meter-number").inner_text() == f"{prediction.probability * 100:.1f}%"
    shoot(page, "study-completed", full_page=True)

    # Heatmap: reached with the Tab key, toggled and made fainter with the keyboard.
    heatmap, toggle, opacity = (first.locator("img.heatmap"), first.get_by_label("Show heatmap"),
                                first.get_by_label("Opacity"))
    assert heatmap.is_visible()
    page.locator("#print-button").focus()
    tab_until(page, f"#{toggle.get_attribute('id')}")
    assert focus_ring(page).startswith("solid 3px")
    page.keyboard.press("Space")
    assert heatmap.is_hidden() and opacity.is_disabled()
    page.keyboard.press("Space")
    assert heatmap.is_visible() and opacity.is_enabled()
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.id") == opacity.get_attribute("id")
    for _ in range(3):
        page.keyboard.press("ArrowLeft")
    assert first.locator("output").inner_text() == "60%"
    assert heatmap.evaluate("(img) => getComputedStyle(img).opacity") == "0.6"

    # Texture features against the model card's typical ranges, unfolded from the keyboard.
    tab_until(page, "details.features summary", limit=4)  # the first image's, right after its controls
    page.keyboard.press("Enter")
    feature_rows = first.locator("details.features tbody tr")
    assert feature_rows.count() == 13
    assert first.locator("details.features svg.range-strip").count() == 13
    shoot(first, "study-features")

    # The clinician's reading.
    reading = page.locator("#reading")
    reading.get_by_label("Agree", exact=True).check()
    reading.get_by_label("Final finding").select_option(label="Tumor")
    reading.get_by_label("Comment (optional)").fill("Enhancing lesion, right frontal; refer to neuro-oncology.")
    reading.get_by_role("button", name="Record my reading").click()
    page.wait_for_url(f"{base}/studies/{study.pk}/#reading")
    assert "agrees with the model" in page.locator("#reading .readings").inner_text()
    assert Reading.objects.filter(study=study, clinician=clinician, agrees_with_model=True, finding="tumor").exists()
    assert AuditEvent.objects.filter(action=AuditEvent.Action.READING_RECORDED, actor=clinician,
                                     object_id=str(study.pk)).exists()
    shoot(page.locator("#reading"), "study-reading")

    # The printed report: folded tables open for printing, and the PDF holds the result, not the controls.
    page.evaluate("() => window.dispatchEvent(new Event('beforeprint'))")
    assert page.locator("details.features:not([open])").count() == 0
    page.evaluate("() => window.dispatchEvent(new Event('afterprint'))")
    assert page.locator("details.features[open]").count() == 0  # folded again, as before printing
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    report = ARTIFACTS / "study-report.pdf"
    page.pdf(path=str(report), format="A4")
    text, pages = pdf_text_and_first_page(report)
    for expected in (f"Study {study.short_id}", patient.code, "Decision support only", "tumor probability",
                     "threshold", prediction.model_version, "Mean brightness", "Typical range",
                     "agrees with the model", "Reviewed by"):
        assert expected in text, f"{expected!r} missing from the printed report"
    for absent in ("Record my reading", "Log out", "Print report", "Show heatmap", "Download image"):
        assert absent not in text, f"{absent!r} should not be printed"
    assert 2 <= pages <= 8

    # Log out.
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(base + "/login/")
    assert AuditEvent.objects.filter(action=AuditEvent.Action.LOGOUT, actor=clinician).exists()
    watch.assert_clean()


def test_anonymous_visitor_of_a_study_lands_on_the_login_page(live_server, open_page):
    clinician = UserFactory(username="dr.okafor")
    study = StudyFactory(patient=PatientFactory(care_team=[clinician]), submitted_by=clinician, images=1)
    page, watch = open_page(LAPTOP)
    study_url = f"{live_server.url}/studies/{study.pk}/"
    page.goto(study_url)
    assert page.url == f"{live_server.url}/login/?next=/studies/{study.pk}/"
    assert "Log in to open that page." in page.inner_text("main")
    page.get_by_label("Username").fill(clinician.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(study_url)
    assert page.get_by_role("heading", name=f"Study {study.short_id}").is_visible()
    watch.assert_clean()


def test_upload_page_holds_back_large_files_renames_twins_and_lets_files_be_removed(live_server, open_page, settings,
                                                                                    tmp_path):
    settings.MAX_UPLOAD_BYTES = 1_048_576
    clinician = UserFactory(username="dr.haddad")
    patient = PatientFactory(care_team=[clinician])
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    twins = [tmp_path / "a" / "slice.png", tmp_path / "b" / "slice.png"]
    twins[0].write_bytes(phantom_bytes(41, True))
    twins[1].write_bytes(phantom_bytes(42, False))
    large = tmp_path / "large.png"
    large.write_bytes(phantom_bytes(43, True) + bytes(1_200_000))
    page, watch = open_page(LAPTOP)
    log_in(page, live_server.url, clinician.username)
    page.goto(live_server.url + "/studies/new/")
    page.get_by_label("Patient").select_option(label=patient.code)
    page.set_input_files("#id_images", [str(path) for path in (*twins, large)])
    names = page.locator("#file-list li .file-name").all_inner_texts()
    assert names == ["slice.png", "slice (2).png", "large.png"]
    large_row = page.locator('#file-list li[data-filename="large.png"]')
    assert "Larger than 1.0 MB: it will not be sent" in large_row.inner_text()
    large_row.get_by_role("button", name="Remove large.png").press("Enter")
    assert page.locator("#file-list li").count() == 2
    assert page.evaluate("() => document.getElementById('id_images').files.length") == 2
    page.get_by_role("button", name="Submit for analysis").click()
    page.wait_for_url(re.compile(r"/studies/[0-9a-f-]{36}/$"))
    study = Study.objects.get(patient=patient)
    assert study.images.count() == 2
    watch.assert_clean()


def test_worklist_triage_search_export_and_main_pages_on_a_tablet(live_server, worker, open_page):
    clinician = UserFactory(username="dr.lindqvist")
    patients = [PatientFactory(care_team=[clinician]) for _ in range(3)]
    studies = [submitted(clinician, patients[0], (21, False)),
               submitted(clinician, patients[1], (22, True), (23, True)),
               submitted(clinician, patients[2], (24, False), (25, True))]
    completed(*studies, worker=worker)
    by_probability = sorted(Study.objects.filter(pk__in=[s.pk for s in studies]), key=lambda s: -s.probability)
    page, watch = open_page(TABLET)
    base = live_server.url
    log_in(page, base, clinician.username)
    assert_same_layout(page)
    assert page.locator(".site-nav").bounding_box()["y"] < 40  # one header row at 768 px

    # Triage order: likely positives first.
    page.get_by_label("Order").select_option("triage")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url("**order=triage**")
    first_row = page.locator("table.worklist tbody tr").first
    assert by_probability[0].patient.code in first_row.inner_text()
    shoot(page, "tablet-worklist")

    # Search by part of a patient code.
    code = by_probability[-1].patient.code
    page.get_by_label("Patient code").fill(code[2:7].lower())
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url("**q=**")
    assert page.locator("table.worklist tbody tr").count() == 1
    page.get_by_role("link", name="Clear").click()
    page.wait_for_url(base + "/")

    # Export of a selection.
    boxes = page.locator('table.worklist tbody input[name="id"]')
    assert page.locator("#export-button").inner_text() == "Export all 3 listed to CSV"
    boxes.nth(0).check()
    boxes.nth(2).check()
    assert page.locator("#export-button").inner_text() == "Export 2 selected to CSV"
    assert page.evaluate("() => document.getElementById('select-all').indeterminate") is True
    assert page.evaluate("() => { const box = document.querySelector('.table-scroll'); "
                         "return box.scrollWidth <= box.clientWidth; }"), "the worklist is wider than a tablet"
    with page.expect_download() as download:
        page.locator("#export-button").click()
    exported = list(csv.DictReader(io.StringIO(open(download.value.path(), encoding="utf-8").read())))
    chosen = {boxes.nth(0).get_attribute("value"), boxes.nth(2).get_attribute("value")}
    assert {row["study"] for row in exported} == chosen

    # The other main pages at tablet size.
    page.get_by_role("link", name="New study").first.click()
    assert_same_layout(page)
    shoot(page, "tablet-new-study")
    page.goto(f"{base}/studies/{by_probability[0].pk}/")
    page.wait_for_function("() => [...document.querySelectorAll('.overlay-stack img')]"
                           ".every(img => img.complete && img.naturalWidth > 0)")
    assert_same_layout(page)
    shoot(page, "tablet-study")
    watch.assert_clean()


def test_pages_have_no_wcag_violations_found_by_axe(live_server, worker, open_page, axe_source):
    clinician = UserFactory(username="dr.axe")
    patient = PatientFactory(care_team=[clinician])
    study = submitted(clinician, patient, (31, True))
    completed(study, worker=worker)
    page, watch = open_page(LAPTOP)
    base = live_server.url
    page.goto(base + "/login/")
    found = {"login": axe_violations(page, axe_source)}
    log_in(page, base, clinician.username)
    found["worklist"] = axe_violations(page, axe_source)
    page.goto(base + "/studies/new/")
    found["new study"] = axe_violations(page, axe_source)
    page.goto(f"{base}/studies/{study.pk}/")
    page.locator("details.features summary").click()
    found["study"] = axe_violations(page, axe_source)
    assert {name: issues for name, issues in found.items() if issues} == {}
    watch.assert_clean()
