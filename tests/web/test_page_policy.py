"""Every page keeps the layout and the Content-Security-Policy: no inline script or style attribute anywhere."""

import re

import pytest
from django.urls import reverse

from tests.factories import StudyFactory

pytestmark = pytest.mark.django_db
INLINE_STYLE = re.compile(r"<[^>]+\sstyle\s*=", re.IGNORECASE)
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\ssrc=)[^>]*>", re.IGNORECASE)
INLINE_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.IGNORECASE)


def pages(study) -> dict[str, str]:
    image = study.images.first()
    return {
        "worklist": reverse("worklist"), "new study": reverse("study-new"),
        "study": reverse("study-detail", args=[study.pk]), "panel": reverse("study-panel", args=[study.pk]),
        "not found": "/no-such-page/", "filtered worklist": reverse("worklist") + "?q=zz&order=triage",
        "image": reverse("study-image", args=[study.pk, image.pk]),
    }


def test_every_page_is_csp_clean_and_shares_the_layout(client_a, completed_study):
    for name, url in pages(completed_study).items():
        response = client_a.get(url)
        assert response.status_code in (200, 404), name
        assert "script-src 'self'" in response["Content-Security-Policy"], name
        if not response["Content-Type"].startswith("text/html"):
            continue
        html = response.content.decode()
        assert not INLINE_STYLE.search(html), f"inline style on the {name} page"
        assert not INLINE_SCRIPT.search(html), f"inline script on the {name} page"
        assert not INLINE_HANDLER.search(html), f"inline event handler on the {name} page"
        if name != "panel":
            assert 'class="disclaimer"' in html and "does not replace a" in html, name
            assert 'class="site-header"' in html and 'class="site-footer"' in html, name
            assert 'href="#main"' in html, name


def test_login_page_shares_the_layout_and_disclaimer(anonymous):
    html = anonymous.get(reverse("login")).content.decode()
    assert 'class="disclaimer"' in html and '<label for="id_username">' in html
    assert not INLINE_STYLE.search(html) and not INLINE_SCRIPT.search(html)


def test_images_have_alt_text(client_a, completed_study):
    html = client_a.get(reverse("study-detail", args=[completed_study.pk])).content.decode()
    for tag in re.findall(r"<img\b[^>]*>", html):
        assert re.search(r'\salt="[^"]*"', tag), tag
    assert len(re.findall(r'alt="MRI slice', html)) == 2


def test_every_form_control_has_a_label(client_a, completed_study, clinician_a, patient_a):
    StudyFactory(patient=patient_a, submitted_by=clinician_a, images=0)
    for url in (reverse("worklist"), reverse("study-new"), reverse("study-detail", args=[completed_study.pk])):
        html = client_a.get(url).content.decode()
        labelled = set(re.findall(r'<label[^>]*\sfor="([^"]+)"', html))
        for control in re.findall(r"<(?:input|select|textarea)\b[^>]*>", html):
            if re.search(r'type="(hidden|submit)"', control):
                continue
            ident = re.search(r'\sid="([^"]+)"', control)
            labelled_for = ident is not None and ident.group(1) in labelled
            assert labelled_for or "aria-label=" in control or _inside_label(html, control), f"{url}: {control}"


def _inside_label(html: str, control: str) -> bool:
    start = html.index(control)
    opened, closed = html.rfind("<label", 0, start), html.rfind("</label>", 0, start)
    return opened > closed
