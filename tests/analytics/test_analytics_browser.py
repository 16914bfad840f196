"""The analytics pages in Chromium: no CSP violation or script error, images load, the montage reshuffles."""

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import Client

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def test_pages_work_under_the_strict_csp(live_server, chromium_path, clinician_a, phantom_folder):
    call_command("build_analytics", data=str(phantom_folder), seed=5, verbosity=0)
    client = Client()
    client.force_login(clinician_a)
    session = client.cookies[settings.SESSION_COOKIE_NAME].value
    # Django's ORM must not run once Playwright's event loop is up, so everything above comes first.
    from playwright.sync_api import sync_playwright

    problems = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=ARGS)
        context = browser.new_context()
        context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": session, "url": live_server.url}])
        page = context.new_page()
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(str(error)))
        for path in ("/analytics/", "/analytics/model/", "/analytics/monitoring/"):
            page.goto(live_server.url + path)
            page.evaluate("document.querySelectorAll('img[loading=lazy]').forEach(i => i.loading = 'eager')")
            page.wait_for_load_state("networkidle")
            page.wait_for_function("[...document.images].every(i => i.complete)")
            broken = page.evaluate("[...document.images].filter(i => i.naturalWidth === 0).map(i => i.src)")
            assert not broken, f"{path}: {broken}"
        page.goto(live_server.url + "/analytics/")
        before = page.eval_on_selector_all("[data-montage] img", "images => images.map(i => i.src)")
        page.click("[data-reshuffle]")
        after = page.eval_on_selector_all("[data-montage] img", "images => images.map(i => i.src)")
        captions = page.eval_on_selector_all("[data-montage] span", "spans => spans.map(s => s.textContent)")
        assert page.url == live_server.url + "/analytics/"  # reshuffled in place, no reload
        assert before != after  # six of a pool of six per label: another order (1 in 518,400 to repeat)
        assert set(captions) <= {"notumor", "glioma", "meningioma"}
        browser.close()
    assert not problems, problems
