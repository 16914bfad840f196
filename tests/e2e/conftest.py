"""Browser tests: Debian's Chromium driven by Playwright against the live test server and a real worker.

Screenshots and the printed report go to test-artifacts/e2e/ (git-ignored); the README shows the copies
committed in docs/screenshots/. axe-core, the accessibility checker, is fetched from the npm registry
once into .cache/ (git-ignored); without npm or the registry that one check is skipped with the reason.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import tarfile
from contextlib import contextmanager
from pathlib import Path

import pytest
from PIL import Image

from tests.workers import ROOT, Worker

ARTIFACTS = ROOT / "test-artifacts" / "e2e"
AXE_VERSION = "4.14.1"
AXE_FILE = ROOT / ".cache" / f"axe-core-{AXE_VERSION}" / "axe.min.js"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
LAPTOP = {"width": 1366, "height": 768}
TABLET = {"width": 768, "height": 1024}


@pytest.fixture(scope="module")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright, pytest.MonkeyPatch.context() as patch:
        # Playwright's sync API keeps an asyncio loop running in this thread while it is open; the tests'
        # own database calls (and the database flush after each test) are still plain synchronous calls.
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")
        chromium = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()



@contextmanager
def paused(worker: Worker):
    """Freeze the worker (SIGSTOP) so a study waits in the queue until the block ends."""
    os.killpg(worker.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(worker.process.pid, signal.SIGCONT)


class PageWatch:
    """Collects what must never happen on a page: CSP violations, script errors, failed requests."""

    def __init__(self, page):
        self.problems: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"script error: {error}"))
        page.on("requestfailed", self._request_failed)

    def _request_failed(self, request):
        if request.failure != "net::ERR_ABORTED":  # a load cut short by navigating on is not a fault
            self.problems.append(f"request failed: {request.url} {request.failure}")

    def _console(self, message):
        if message.type == "error" or "Content Security Policy" in message.text:
            self.problems.append(f"console {message.type}: {message.text}")

    def assert_clean(self):
        assert self.problems == [], "\n".join(self.problems)


@pytest.fixture
def open_page(browser):
    """open_page(viewport) -> (page, watch); every context is closed after the test."""
    contexts = []

    def open_(viewport=LAPTOP):
        context = browser.new_context(viewport=viewport, locale="en-GB", timezone_id="UTC")
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        return page, PageWatch(page)

    yield open_
    for context in contexts:
        context.close()


def shoot(target, name: str, **options) -> Path:
    """Save a screenshot (of a page or one element) as a small palette PNG under test-artifacts/e2e/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    save_small_png(Image.open(io.BytesIO(target.screenshot(**options))), path)
    return path


def save_small_png(image: Image.Image, path: Path) -> None:
    image.convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(
        path, optimize=True)


@pytest.fixture(scope="session")
def axe_source() -> str:
    """The axe-core script, fetched once with `npm pack` (pinned) into the git-ignored .cache/."""
    if not AXE_FILE.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is not installed, so axe-core cannot be fetched for the accessibility check")
        AXE_FILE.parent.mkdir(parents=True, exist_ok=True)
        result = subprocess.run([npm, "pack", f"axe-core@{AXE_VERSION}", "--silent", "--pack-destination",
                                 str(AXE_FILE.parent)], capture_output=True, text=True, timeout=120)
        tarball = AXE_FILE.parent / f"axe-core-{AXE_VERSION}.tgz"
        if result.returncode != 0 or not tarball.exists():
            pytest.skip(f"axe-core could not be fetched from the npm registry: {result.stderr.strip()[-300:]}")
        with tarfile.open(tarball) as archive:
            AXE_FILE.write_bytes(archive.extractfile("package/axe.min.js").read())
        tarball.unlink()
    return AXE_FILE.read_text()


def axe_violations(page, axe_source: str) -> list[str]:
    """WCAG 2.x A and AA violations axe-core finds on the page as it is now."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        # Evaluated through the DevTools protocol, so the page's CSP (script-src 'self') does not apply.
        page.evaluate(f"() => {{ {axe_source}\n; window.axe = axe; }}")
    result = page.evaluate("""() => axe.run(document, {
        runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]},
        resultTypes: ["violations"]})""")
    return [f"{v['id']} ({v['impact']}): {v['help']} -> " + "; ".join(n["target"][0] for n in v["nodes"][:4])
            for v in result["violations"]]
